"""ISD: guidance arithmetic on stub UNets, identity gating, and analytic denoisers that know the answer."""

from __future__ import annotations

import math

import pytest
import torch

from guidance import sds
from guidance.isd import ISDConfig, ISDGuidance
from guidance.models.tiny_builders import tiny_scheduler

ALPHAS = tiny_scheduler().alphas_cumprod


pytestmark = pytest.mark.usefixtures("one_thread")


def prompt_code(prompts: list[str]) -> torch.Tensor:
    """Stub text encoder (n, 1, 1): 0 for the empty prompt, 2 for 'back view' prompts, else 1."""
    return torch.tensor([[[0.0 if not p else 2.0 if p.endswith("back view") else 1.0]] for p in prompts])


class Passthrough:
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images


class AnalyticDenoiser:
    """Exact ε̂ for data distributions that are single points: z*_cond for prompts, z*_uncond for ''."""

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor | None = None) -> None:
        self.cond, self.uncond = cond, cond if uncond is None else uncond

    def predict(self, z_t, t, text, identity, control):
        a = ALPHAS[t].view(-1, 1, 1, 1)
        target = torch.where(text[:, :1, :1].view(-1, 1, 1, 1) > 0.5, self.cond, self.uncond)
        return (z_t - a.sqrt() * target) / (1.0 - a).sqrt()


class RecordingDenoiser:
    """Returns a constant per prompt kind and records what it was called with."""

    def __init__(self, values: dict[float, torch.Tensor]) -> None:
        self.values, self.calls = values, []

    def predict(self, z_t, t, text, identity, control):
        self.calls.append({"n": z_t.shape[0], "identity": identity, "control": control, "text": text[:, 0, 0].clone()})
        return torch.stack([self.values[float(code)].expand_as(z_t[0]) for code in text[:, 0, 0]])


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    return 10.0 * math.log10(peak**2 / float(((a - b) ** 2).mean()))


def guidance(denoiser, **cfg) -> ISDGuidance:
    return ISDGuidance(ISDConfig(**cfg), denoiser, Passthrough(), prompt_code, ALPHAS)


def distil(g: ISDGuidance, z: torch.Tensor, steps: int, lr: float, azimuth: float = 0.0) -> torch.Tensor:
    z = z.clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=lr)
    for step in range(steps):
        opt.zero_grad()
        loss, _ = g.loss(z, [azimuth], step=step, latents=True)
        loss.backward()
        opt.step()
    return z.detach()


def test_analytic_denoiser_drives_a_free_latent_to_its_target():
    target = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    z = distil(guidance(AnalyticDenoiser(target)), torch.zeros_like(target), steps=120, lr=1.0)
    span = float(target.max() - target.min())
    assert psnr(z, target, span) >= 30.0


def test_cfg_pulls_toward_the_conditional_target():
    g = torch.Generator().manual_seed(2)
    cond, uncond = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    z1 = distil(guidance(AnalyticDenoiser(cond, uncond), guidance_scale=1.0), torch.zeros_like(cond), 120, 1.0)
    span = float(cond.max() - cond.min())
    assert psnr(z1, cond, span) >= 30.0 and psnr(z1, uncond, span) < 15.0
    # with s > 1 the fixed point is z_u + s·(z_c − z_u): past the conditional target, away from z_u
    z3 = distil(guidance(AnalyticDenoiser(cond, uncond), guidance_scale=3.0, grad_clip=None), torch.zeros_like(cond), 200, 0.3)
    direction = cond - uncond
    along = float(((z3 - uncond) * direction).sum() / (direction * direction).sum())
    assert along == pytest.approx(3.0, rel=0.01)
    assert (z3 - cond).norm() < (z3 - uncond).norm()


def test_analytic_denoiser_drives_a_uv_texture_through_the_renderer():
    from representations.cameras import Camera
    from representations.mesh.primitives import grid
    from representations.render import render

    mesh = grid(4, size=2.0)
    camera = Camera.orbit(0.0, 0.0, 3.0, 45.0, 32)
    gen = torch.Generator().manual_seed(3)
    coarse = torch.rand(1, 3, 4, 4, generator=gen) * 0.8 + 0.1
    target_texture = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=True)[0].permute(1, 2, 0)
    mixing, _ = torch.linalg.qr(torch.randn(4, 3, generator=gen))  # a fixed linear "VAE": orthonormal columns

    class LinearCodec:
        def encode(self, images):
            return torch.einsum("lc,nchw->nlhw", mixing, images)

    def draw(texture):
        out = render(mesh.verts, mesh.faces, camera, ("rgb", "mask"), uv=mesh.uv, uv_faces=mesh.uv_faces, texture=texture, mipmap=False)
        return out["rgb"].permute(2, 0, 1).unsqueeze(0), out["mask"][..., 0]

    target_image, mask = draw(target_texture)
    isd = ISDGuidance(ISDConfig(), AnalyticDenoiser(LinearCodec().encode(target_image)), LinearCodec(), prompt_code, ALPHAS)
    texture = torch.full((16, 16, 3), 0.5, requires_grad=True)
    opt = torch.optim.SGD([texture], lr=0.5)
    for step in range(150):
        opt.zero_grad()
        loss, _ = isd.loss(draw(texture)[0], [0.0], step=step)
        loss.backward()
        opt.step()
    image, _ = draw(texture.detach())
    fg = mask > 0.99
    assert fg.sum() > 400
    assert psnr(image[0][:, fg], target_image[0][:, fg], 1.0) >= 30.0


def test_classifier_free_guidance_arithmetic_on_a_stub():
    cond, uncond = torch.full((4, 2, 2), 0.3), torch.full((4, 2, 2), -0.1)
    stub = RecordingDenoiser({1.0: cond, 0.0: uncond})
    g = guidance(stub, guidance_scale=7.5)
    batch = g.view_conditioning([0.0, 100.0], None)
    eps = g.guided_noise(torch.zeros(2, 4, 2, 2), torch.tensor([10, 20]), batch, None, None)
    assert torch.allclose(eps, (uncond + 7.5 * (cond - uncond)).expand(2, -1, -1, -1))
    assert len(stub.calls) == 1 and stub.calls[0]["n"] == 4  # cond and uncond in one batched call
    assert torch.equal(stub.calls[0]["text"], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_identity_tokens_only_near_the_front():
    stub = RecordingDenoiser({1.0: torch.zeros(4, 2, 2), 0.0: torch.zeros(4, 2, 2), 2.0: torch.zeros(4, 2, 2)})
    g = guidance(stub, identity_max_azimuth=70.0)
    identity = torch.arange(8.0)
    azimuths = [0.0, 69.0, -69.5, 71.0, 180.0, 290.0]  # 290° is -70°: not < 70
    g.loss(torch.zeros(6, 4, 2, 2), azimuths, identity=identity, latents=True)
    with_id, without = stub.calls
    assert with_id["n"] == 6 and without["n"] == 6  # 3 samples each, cond + uncond
    assert torch.equal(with_id["identity"][:3, 0], identity.expand(3, -1))
    assert torch.equal(with_id["identity"][3:], torch.zeros(3, 1, 8))  # unconditional: zero embedding
    assert without["identity"] is None
    stub.calls.clear()
    g.loss(torch.zeros(2, 4, 2, 2), [0.0, 10.0], latents=True)  # no embedding given: text only
    assert len(stub.calls) == 1 and stub.calls[0]["identity"] is None


def test_perp_neg_removes_only_the_perpendicular_part():
    pos, unc = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    parallel, perpendicular = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(sds.perp_neg_guidance(pos, unc, [parallel], [1.0], 5.0), sds.classifier_free_guidance(pos, unc, 5.0))
    assert torch.allclose(sds.perp_neg_guidance(pos, unc, [perpendicular], [0.5], 2.0), torch.tensor([[2.0, -1.0]]))
    stub = RecordingDenoiser({1.0: torch.ones(4, 2, 2), 0.0: torch.zeros(4, 2, 2), 2.0: torch.zeros(4, 2, 2)})
    g = guidance(stub, perp_neg=True)
    g.guided_noise(torch.zeros(1, 4, 2, 2), torch.tensor([5]), g.view_conditioning([0.0], None), None, None)
    assert torch.equal(stub.calls[0]["text"], torch.tensor([1.0, 0.0, 2.0]))  # front view; negative: back view


def test_timesteps_schedule_weighting_and_clipping():
    t = sds.sample_timesteps(4000, 0.02, 0.5, 1000, torch.Generator().manual_seed(0))
    assert int(t.min()) == 20 and int(t.max()) == 500
    g = guidance(AnalyticDenoiser(torch.zeros(1, 4, 2, 2)), t_schedule="linear", t_range=(0.02, 0.98), t_max_end=0.5, anneal_steps=100)
    assert g.t_bounds(0) == (0.02, 0.98) and g.t_bounds(50)[1] == pytest.approx(0.74) and g.t_bounds(500)[1] == pytest.approx(0.5)
    a = torch.tensor([0.25, 0.81])
    assert torch.allclose(sds.timestep_weights(a, "sds"), 1 - a)
    assert torch.allclose(sds.timestep_weights(a, "fantasia3d"), a.sqrt() * (1 - a))
    assert torch.equal(sds.timestep_weights(a, "uniform"), torch.ones(2))
    with pytest.raises(ValueError):
        ISDConfig(weighting="nope")
    clipped = guidance(AnalyticDenoiser(torch.full((1, 4, 2, 2), 100.0)), grad_clip=0.01)
    z = torch.zeros(1, 4, 2, 2, requires_grad=True)
    clipped.loss(z, [0.0], latents=True)[0].backward()
    assert float(z.grad.abs().max()) == pytest.approx(0.01)
