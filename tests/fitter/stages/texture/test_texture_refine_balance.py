"""Texture refinement's loss terms pull with comparable strength at the hero settings, so none is silently off.

Before issue 16 the SDEdit term was 0.1·mean((x − y)²): with the authors' λ values (copied with their
sum-based formula) its gradient was ~10⁵ times smaller than the reference and perceptual terms', and
the texture TV (a mean, λ 5e-4) ~10⁷ times smaller. Only the size of a term relative to the others says
whether it acts, and that size depends on the image size, so this runs the first two refinement steps
(one SDEdit step, one reference step) at the hero render size (512²) and texture size (1024²), with the
hero λ values and perceptual term read from `configs/portrait3d.yaml`, on a UV sphere and an analytic
target instead of a diffusion model: the "denoised view" is the render of a ground-truth texture, and
the texture being refined is that texture plus a smooth perturbation (RMS error ≈ 0.04 in [0, 1], what
an SDEdit edit from t < 200 changes).

Bounds (‖∂loss/∂logits‖ of each configured term):
* the data terms (SDEdit SSE, perceptual, reference L1) pairwise within DATA_RATIO = 100×. Measured here:
  SDEdit 0.68, perceptual 0.11, reference 0.28 (max/min 6; 3–27 for perturbations of RMS 0.01–0.1): the
  authors tuned their λs so that these terms all act. The old 0.1·MSE gives 1.7e-6, 1.6e5× below the
  reference term, so the bound fails it by three orders of magnitude.
* the regulariser TV within ANY_RATIO = 1e4× of every term: measured 1.4e-3 (~500× below SDEdit), as the
  authors' λ 5e-4 on Σ squared differences of the render makes it; the old TV of the texture (a mean)
  gives 3.9e-8, 1.7e7× below.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fitter.config import REPO_ROOT, load_config
from fitter.stages.texture.refine import Reference, RefineStep, TextureLogits
from fitter.stages.texture.refine_losses import perceptual_loss
from representations.cameras import Camera
from representations.mesh import UnwrapOptions, icosphere, unwrap_uv
from representations.render import Rasterizer, dilate_into_gutters, render, texel_surface

DATA_RATIO = 100.0
ANY_RATIO = 1.0e4
DATA_TERMS = ("loss_sdedit_sse", "loss_perceptual", "loss_ref_l1")


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def first_steps():
    """(settings, the losses of steps 0 and 1, the texture logits) at the hero settings."""
    cfg = load_config(REPO_ROOT / "configs" / "portrait3d.yaml")
    texture_cfg, settings = cfg.fit.texture, cfg.fit.texture.refine
    size, side = texture_cfg.resolution, settings.render_size
    assert (size, side) == (1024, 512)  # the sizes the bounds are about
    mesh = unwrap_uv(icosphere(subdivisions=3, radius=0.8), size, UnwrapOptions(padding=2))
    surface = texel_surface(mesh.verts, mesh.faces, mesh.uv, mesh.uv_faces, size)
    p = surface.position
    colour = 0.5 + 0.3 * torch.stack([torch.sin(2.0 * p[..., 0]), torch.cos(1.5 * p[..., 1]), torch.sin(1.7 * p[..., 2] + 0.5)], dim=-1)
    truth = dilate_into_gutters(colour * surface.valid[..., None], surface.valid)
    coarse = torch.randn(1, 3, size // 16, size // 16, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")[0].permute(1, 2, 0)
    logits = TextureLogits((truth + 0.08 * smooth).clamp(0.02, 0.98))

    def on_background(camera: Camera) -> torch.Tensor:
        out = render(mesh.verts, mesh.faces, camera, ("rgb", "mask"), uv=mesh.uv, uv_faces=mesh.uv_faces, texture=truth)
        return out["rgb"] * out["mask"] + settings.background * (1.0 - out["mask"]), out["mask"]

    def target(image: torch.Tensor, t: int, camera: Camera, control: torch.Tensor) -> torch.Tensor:
        return on_background(camera)[0].permute(2, 0, 1)[None]

    front = Camera.orbit(0.0, 0.0, 3.8, 30.0, side)
    photo, mask = on_background(front)
    step = RefineStep(settings, mesh, logits, target, Reference(photo, mask, front), perceptual_loss(texture_cfg.lpips_weights),
                      np.random.default_rng(cfg.run.seed + 7), Rasterizer("torch"))
    return settings, {**step(0), **step(1)}, logits


def grad_norm(loss: torch.Tensor, logits: TextureLogits) -> float:
    logits.zero_grad()
    loss.backward(retain_graph=True)
    return float(logits.logits.grad.norm())


def test_every_configured_term_pulls_with_comparable_strength(first_steps):
    settings, losses, logits = first_steps
    configured = {f"loss_{name.removeprefix('lambda_')}" for name in vars(settings) if name.startswith("lambda_") and getattr(settings, name) > 0}
    assert configured == set(losses) and set(DATA_TERMS) <= configured
    norms = {name: grad_norm(loss, logits) for name, loss in losses.items()}
    for a, b in itertools.combinations(norms, 2):
        bound = DATA_RATIO if {a, b} <= set(DATA_TERMS) else ANY_RATIO
        assert max(norms[a], norms[b]) <= bound * min(norms[a], norms[b]), (a, b, norms)


def test_the_old_mean_squared_sdedit_term_would_fail_the_bound(first_steps):
    """The stand-in tells the formulas apart at this size: 0.1·mean((x − y)²), as before issue 16, is far outside DATA_RATIO."""
    settings, losses, logits = first_steps
    # With e = x − y over N = 3·S² values, d/dx of λ·mean(e²) is 2λe/N and of λ·½Σe² it is λe (B = 1):
    # the same direction, N/2 times smaller.
    old = grad_norm(losses["loss_sdedit_sse"], logits) * 2.0 / (3 * settings.render_size**2)
    assert grad_norm(losses["loss_ref_l1"], logits) > 1000 * DATA_RATIO * old
