"""Reference hash-grid encoding in plain torch (CPU and CUDA), vectorised over levels."""

from __future__ import annotations

import torch

from .config import PRIMES, LevelLayout


class _GatherBlend(torch.autograd.Function):
    """out[n, l] = Σ_c weights[n, l, c] · table[idx[n, l, c]].

    Written by hand because autograd's embedding backward on CPU is ~3x slower than ``index_add_``
    into the flat table, which is also deterministic on CPU (``index_put_(accumulate=True)`` is not).
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        n, levels, corners = idx.shape
        feats = table.index_select(0, idx.reshape(-1)).view(n, levels, corners, table.shape[1])
        ctx.save_for_backward(table, idx, weights)
        return (feats * weights[..., None]).sum(2)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        table, idx, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            contrib = (grad_out[:, :, None, :] * weights[..., None]).reshape(-1, table.shape[1])
            grad_table = torch.zeros_like(table).index_add_(0, idx.reshape(-1), contrib)
        if ctx.needs_input_grad[2]:
            feats = table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])
            grad_weights = (feats * grad_out[:, :, None, :]).sum(-1)
        return grad_table, None, grad_weights


def _corner_pairs(cell: torch.Tensor, axis: int) -> torch.Tensor:
    """(N, L', 2) lower/upper integer coordinate along ``axis`` of each point's cell."""
    return cell[..., axis, None] + torch.tensor([0, 1], device=cell.device)


def _broadcast_xyz(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Views of three (N, L', 2) tensors that broadcast to (N, L', 2z, 2y, 2x)."""
    n, levels = x.shape[:2]
    return x.view(n, levels, 1, 1, 2), y.view(n, levels, 1, 2, 1), z.view(n, levels, 2, 1, 1)


def _dense_index(cell: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
    """(N, L', 2, 2, 2) row-major (x fastest) indices of the cell corners; ``res`` is (L',)."""
    x, y, z = _broadcast_xyz(*(_corner_pairs(cell, a) for a in range(3)))
    res = res.view(1, -1, 1, 1, 1)
    return x + y * res + z * res * res


def _hashed_index(cell: torch.Tensor) -> torch.Tensor:
    """(N, L', 2, 2, 2) spatial hashes of the cell corners.

    int64 products keep the low 32 bits identical to tcnn's wrapping uint32 arithmetic, and hashed
    levels have power-of-two sizes, so the later ``% size`` matches too.
    """
    x, y, z = _broadcast_xyz(*(_corner_pairs(cell, a) * p for a, p in enumerate(PRIMES)))
    return x ^ y ^ z


def _trilinear_weights(frac: torch.Tensor) -> torch.Tensor:
    """(N, L, 2, 2, 2) corner weights from (N, L, 3) fractional cell positions."""
    pairs = [torch.stack([1 - frac[..., a], frac[..., a]], -1) for a in range(3)]
    x, y, z = _broadcast_xyz(*pairs)
    return x * y * z


def hash_encode(x01: torch.Tensor, table: torch.Tensor, layout: LevelLayout) -> torch.Tensor:
    """Encode points.

    x01: (N, 3) in [0, 1]; table: (E, F) with E = ``layout.entries``.  Returns (N, L·F), level-major
    (the F features of level 0 first).  Differentiable w.r.t. ``table`` and ``x01``.
    """
    n, levels, nd = x01.shape[0], len(layout.scales), layout.n_dense
    dev = x01.device
    scales = torch.tensor(layout.scales, dtype=x01.dtype, device=dev)
    pos = x01[:, None, :] * scales[:, None] + 0.5
    cell_f = torch.floor(pos).detach()
    frac = pos - cell_f
    cell = cell_f.long()
    res = torch.tensor(layout.resolutions[:nd], device=dev)
    idx = torch.cat([_dense_index(cell[:, :nd], res), _hashed_index(cell[:, nd:])], 1)
    sizes = torch.tensor(layout.sizes, device=dev).view(1, levels, 1, 1, 1)
    offsets = torch.tensor(layout.offsets[:-1], device=dev).view(1, levels, 1, 1, 1)
    idx = (idx % sizes + offsets).view(n, levels, 8)
    weights = _trilinear_weights(frac).view(n, levels, 8).to(table.dtype)
    return _GatherBlend.apply(table, idx, weights).reshape(n, levels * table.shape[1])
