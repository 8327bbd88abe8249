"""Hash-grid encoding: torch backend against a naive per-point loop, gradcheck, tcnn parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from representations.hashgrid import HashGridConfig, HashGridEncoding, HashGridMLP, level_layout, tcnn_available

SMALL = HashGridConfig(levels=4, features=2, log2_table=10, base_res=4, per_level_scale=2.0, hidden=16, layers=1)
PRIMES = (1, 2654435761, 805459861)


def naive_encode(points: torch.Tensor, params: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:
    """Per point, per level, per corner: the Instant-NGP definition written out with Python ints."""
    table_size = 2**cfg.log2_table
    lo, hi = -torch.ones(3), torch.ones(3)  # the encoding's default box, bound = 1
    rows, offset = [], 0
    levels = []
    for level in range(cfg.levels):
        # tcnn's definition, float32 throughout: exp2f(l · log2 b) · N_min − 1
        growth = np.exp2(np.float32(level) * np.float32(math.log2(cfg.scale)))
        scale = float(growth * np.float32(cfg.base_res) - np.float32(1))
        res = math.ceil(scale) + 1
        size = min(-(-res**3 // 8) * 8, table_size)
        levels.append((scale, res, size, offset, res**3 <= size))
        offset += size
    for p in points:
        x01 = ((p - lo.to(p.dtype)) / (hi - lo).to(p.dtype)).clamp(0, 1)
        feats = []
        for scale, res, size, offset, dense in levels:
            pos = [x01[d] * scale + 0.5 for d in range(3)]
            base = [math.floor(float(v.detach())) for v in pos]
            frac = [pos[d] - base[d] for d in range(3)]
            acc = [0.0] * cfg.features
            for corner in range(8):
                c = [base[d] + ((corner >> d) & 1) for d in range(3)]
                w = 1.0
                for d in range(3):
                    w = w * (frac[d] if (corner >> d) & 1 else 1 - frac[d])
                if dense:
                    index = c[0] + c[1] * res + c[2] * res * res
                else:
                    index = ((c[0] * PRIMES[0]) ^ (c[1] * PRIMES[1]) ^ (c[2] * PRIMES[2])) & 0xFFFFFFFF
                entry = offset + index % size
                for f in range(cfg.features):
                    acc[f] = acc[f] + w * params[entry * cfg.features + f]
            feats += acc
        rows.append(torch.stack(feats))
    return torch.stack(rows)


def test_layout_matches_instant_ngp_defaults():
    cfg = HashGridConfig()
    layout = level_layout(cfg)
    assert cfg.scale == pytest.approx(1.447, abs=1e-3)
    assert layout.resolutions[0] == 16 and layout.resolutions[-1] == 4096
    assert all(r**3 <= 2**19 for r in layout.resolutions[: layout.n_dense])
    assert all(r**3 > 2**19 for r in layout.resolutions[layout.n_dense :])
    assert set(layout.sizes[layout.n_dense :]) == {2**19}
    assert layout.n_dense == 5


@pytest.mark.parametrize("cfg", [SMALL, HashGridConfig(levels=6, log2_table=12)])
def test_torch_matches_naive_values_and_gradients(cfg):
    layout = level_layout(cfg)
    assert 0 < layout.n_dense < cfg.levels  # both dense and hashed levels are exercised
    gen = torch.Generator().manual_seed(1)
    enc = HashGridEncoding(cfg, backend="torch", seed=3)
    with torch.no_grad():
        enc.params.uniform_(-1, 1, generator=gen)
    points = torch.rand(40, 3, generator=gen) * 2.2 - 1.1  # a few fall outside the box (clamped)
    weights = torch.randn(40, cfg.out_dim, generator=gen)

    pts_fast = points.clone().requires_grad_()
    fast = enc(pts_fast)
    (fast * weights).sum().backward()

    params = enc.params.detach().clone().requires_grad_()
    pts_slow = points.clone().requires_grad_()
    slow = naive_encode(pts_slow, params, cfg)
    (slow * weights).sum().backward()

    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc.params.grad, params.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pts_fast.grad, pts_slow.grad, atol=1e-3, rtol=1e-4)
    assert params.grad.abs().sum() > 0


def test_gradcheck_float64():
    enc = HashGridEncoding(SMALL, backend="torch").double()
    with torch.no_grad():
        enc.params.uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    points = (torch.rand(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 1.8 - 0.9)
    points.requires_grad_()
    params = enc.params.detach().clone().requires_grad_()

    def f(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        from representations.hashgrid import hash_encode

        return hash_encode(enc.normalise(x), table.view(-1, SMALL.features), enc.layout)

    assert torch.autograd.gradcheck(f, (points, params), eps=1e-6, atol=1e-5)


def test_init_is_small_seeded_and_outputs_shapes():
    a, b = HashGridMLP(4, SMALL, seed=5), HashGridMLP(4, SMALL, seed=5)
    assert a.encoding.params.abs().max() <= SMALL.init_range
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    out = a(torch.rand(7, 3))
    assert out.shape == (7, 4) and torch.isfinite(out).all()
    assert a.encoding.active_backend() == "torch"
    assert list(a.encoding.state_dict()) == ["params"]


def test_unknown_backend_rejected():
    with pytest.raises(ValueError):
        HashGridEncoding(SMALL, backend="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not tcnn_available(), reason="needs CUDA and tinycudann")
def test_tcnn_matches_torch_on_cuda():
    cfg = HashGridConfig(levels=16, log2_table=19)
    torch_enc = HashGridEncoding(cfg, backend="torch").cuda()
    tcnn_enc = HashGridEncoding(cfg, backend="tcnn").cuda()
    with torch.no_grad():
        torch_enc.params.uniform_(-1, 1)
        tcnn_enc.params.copy_(torch_enc.params)
    points = torch.rand(4096, 3, device="cuda") * 2 - 1
    weights = torch.randn(4096, cfg.out_dim, device="cuda")
    out_t, out_c = torch_enc(points), tcnn_enc(points)
    (out_t * weights).sum().backward()
    (out_c * weights).sum().backward()
    # Points sitting exactly on a cell boundary may round differently; compare robustly.
    close = (out_t - out_c).abs().amax(1) < 1e-4
    assert close.float().mean() > 0.999
    diff = (tcnn_enc.params.grad - torch_enc.params.grad).norm() / torch_enc.params.grad.norm()
    assert diff < 1e-3
