"""Diffusion texturing with an analytic prior whose data is a known texture rendered through the mesh:
progressive inpainting paints the planted colours, refinement pulls a corrupted texture back."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.errors import StopRequested
from fitter.config import Config
from fitter.context import RunContext
from fitter.stages.texture.inpaint import InpaintSettings, InpaintView, progressive_inpaint, render_view
from fitter.stages.texture.refine import Reference, RefineSettings, RefineStep, TextureLogits
from fitter.stages.texture.refine_losses import StructureLoss
from fitter.training.checkpoint import TrainState
from fitter.training.loop import TrainLoop
from guidance.inpaint import BlendedInpainter, InpaintConfig, ddim_timesteps
from guidance.sdedit import GuidedPrior, PriorConfig, sdedit_target
from representations.cameras import Camera, OrbitView
from representations.mesh import UnwrapOptions, icosphere, unwrap_uv
from representations.render import Rasterizer, dilate_into_gutters, render, texel_surface

SIZE = 256


class PixelCodec:
    """Latents are the image itself, scaled to [-1, 1]."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2.0 - 1.0

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents + 1.0) * 0.5).clamp(0.0, 1.0)


class PlantedDenoiser:
    """ε that makes x̂0 exactly ``target`` (1, C, h, w) at every timestep: a prior whose only datum is the target."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod
        self.target: torch.Tensor | None = None

    def predict(self, z_t, t, text, identity, control):
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (z_t - a.sqrt() * self.target) / (1.0 - a).sqrt()


def alphas() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def scene():
    mesh = unwrap_uv(icosphere(subdivisions=3, radius=0.8), SIZE, UnwrapOptions(padding=2))
    surface = texel_surface(mesh.verts, mesh.faces, mesh.uv, mesh.uv_faces, SIZE)
    p = surface.position
    colour = 0.5 + 0.3 * torch.stack([torch.sin(2.0 * p[..., 0]), torch.cos(1.5 * p[..., 1]), torch.sin(1.7 * p[..., 2] + 0.5)], dim=-1)
    truth = dilate_into_gutters(colour * surface.valid[..., None], surface.valid)
    denoiser = PlantedDenoiser(alphas())
    prior = GuidedPrior(PriorConfig(), denoiser, PixelCodec(), lambda prompts: torch.zeros(len(prompts), 77, 8), alphas())
    return mesh, surface, truth, denoiser, prior


def plant(denoiser: PlantedDenoiser, mesh, truth: torch.Tensor, camera: Camera, background: float = 1.0) -> None:
    settings = InpaintSettings(background=background)
    image = render_view(mesh, camera, truth, torch.ones(truth.shape[:2]), settings)["rgb"]
    denoiser.target = PixelCodec().encode(image.permute(2, 0, 1)[None])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10.0 * math.log10(float(((a - b) ** 2).mean()))


def test_ddim_timesteps_run_from_t_start_to_clean():
    ts = ddim_timesteps(950, 20)
    assert len(ts) == 21 and ts[0] == 950 and ts[-2] == 0 and ts[-1] == -1 and ts == sorted(ts, reverse=True)


def test_inpainting_fills_the_uncovered_region_with_the_planted_colours(scene):
    mesh, surface, truth, denoiser, prior = scene
    front = surface.valid & (surface.position[..., 2] > 0.3)
    start = torch.where(front[..., None], truth, torch.full_like(truth, 0.5))
    inpainter = BlendedInpainter(prior, InpaintConfig(t_start=950, steps=6))

    def generate(view: InpaintView) -> torch.Tensor:
        plant(denoiser, mesh, truth, view.camera)
        return inpainter.inpaint(view.image, view.keep, view.azimuth, torch.randn(512), view.control)

    views = [OrbitView(a, e, 3.8, 30.0) for a, e in ((90, -15), (-90, -15), (180, -15), (0, 45), (0, -60), (135, 45), (-135, 45))]
    result = progressive_inpaint(mesh, surface, start, front.float(), views, generate, InpaintSettings(gen_size=128, erode_px=2))
    painted = surface.valid & ~front & (result.coverage > 0)
    assert float(painted.sum()) > 0.9 * float((surface.valid & ~front).sum())
    assert psnr(result.texture[painted], truth[painted]) >= 30.0
    assert torch.equal(result.texture[front], start[front])  # covered texels are never repainted
    assert sum(v["texels"] > 0 for v in result.views) >= 5


def test_inpainting_keeps_the_kept_pixels_exactly(scene):
    _, _, _, denoiser, prior = scene
    image = torch.rand(1, 3, 32, 32)
    keep = torch.zeros(1, 1, 32, 32)
    keep[..., :16] = 1.0
    denoiser.target = PixelCodec().encode(torch.full_like(image, 0.25))
    out = BlendedInpainter(prior, InpaintConfig(steps=4)).inpaint(image, keep, 0.0)
    assert torch.equal(out[..., :16], image[..., :16])
    assert torch.allclose(out[..., 16:], torch.full_like(out[..., 16:], 0.25), atol=1e-4)


def test_sdedit_target_recovers_the_datum(scene):
    _, _, _, denoiser, prior = scene
    datum = torch.rand(1, 3, 16, 16)
    denoiser.target = PixelCodec().encode(datum)
    out = sdedit_target(prior, torch.rand(1, 3, 16, 16), torch.tensor([150]), torch.Generator().manual_seed(0), [0.0])
    assert torch.allclose(out, datum, atol=1e-4)


def test_refinement_pulls_a_corrupted_texture_back(scene, tmp_path):
    mesh, surface, truth, denoiser, prior = scene
    p = surface.position
    corrupted = (truth + 0.2 * torch.stack([torch.cos(3 * p[..., 1])] * 3, dim=-1)).clamp(0.05, 0.95)
    front = Camera.orbit(0.0, 0.0, 3.8, 30.0, 64)
    ref = render(mesh.verts, mesh.faces, front, ("rgb", "mask"), uv=mesh.uv, uv_faces=mesh.uv_faces, texture=truth)

    def target(image, t, camera, control):
        plant(denoiser, mesh, truth, camera)
        return sdedit_target(prior, image, torch.tensor([t]), None, [0.0], None, control)

    settings = RefineSettings(render_size=64, lambda_perceptual=1.0)
    logits = TextureLogits(corrupted)
    rng = np.random.default_rng(0)
    step = RefineStep(settings, mesh, logits, target, Reference(ref["rgb"], ref["mask"], front), StructureLoss(), rng, Rasterizer("torch"))
    probes = [OrbitView(a, 10.0, 3.0, 35.0).camera(64) for a in (0, 90, 180, -90)]
    before = views_psnr(mesh, logits().detach(), truth, probes)
    cfg = Config()
    cfg.run.checkpoint_every = 1000
    state = TrainState({"texture": logits}, {"texture": torch.optim.AdamW(logits.parameters(), lr=0.1)}, rng)
    TrainLoop(RunContext(cfg, tmp_path, torch.device("cpu")), "texture", "refine", state, 40, step).run()
    after = views_psnr(mesh, logits().detach(), truth, probes)
    assert after > before + 6.0 and after > 23.0, (before, after)  # MSE down more than 4x
    assert {"loss_sdedit_sse", "loss_perceptual", "loss_ref_l1", "loss_tv"} <= set(state.history)


def views_psnr(mesh, texture: torch.Tensor, truth: torch.Tensor, cameras: list[Camera]) -> float:
    values = []
    for camera in cameras:
        kwargs = dict(uv=mesh.uv, uv_faces=mesh.uv_faces, backend="torch")
        a = render(mesh.verts, mesh.faces, camera, ("rgb", "mask"), texture=texture, **kwargs)
        b = render(mesh.verts, mesh.faces, camera, ("rgb",), texture=truth, **kwargs)
        inside = a["mask"][..., 0] > 0.5
        values.append(psnr(a["rgb"][inside], b["rgb"][inside]))
    return float(np.mean(values))


def test_refinement_resumes_exactly(scene, tmp_path):
    mesh, surface, truth, denoiser, prior = scene
    front = Camera.orbit(0.0, 0.0, 3.8, 30.0, 32)
    ref = render(mesh.verts, mesh.faces, front, ("rgb", "mask"), uv=mesh.uv, uv_faces=mesh.uv_faces, texture=truth)

    def target(image, t, camera, control):
        denoiser.target = PixelCodec().encode(image.flip(-1))  # any datum that depends on the view
        return sdedit_target(prior, image, torch.tensor([t]), None, [0.0], None, control)

    def refine(resume: bool, stop_at: int | None, seed: int = 0) -> torch.Tensor:
        torch.manual_seed(seed)
        cfg = Config()
        cfg.run.checkpoint_every = 2
        ctx = RunContext(cfg, tmp_path, torch.device("cpu"), resume=resume)
        logits = TextureLogits(truth.flip(seed))
        rng = np.random.default_rng(seed)
        state = TrainState({"texture": logits}, {"texture": torch.optim.AdamW(logits.parameters(), lr=0.05)}, rng)
        step = RefineStep(RefineSettings(render_size=32, lambda_perceptual=1.0), mesh, logits, target,
                          Reference(ref["rgb"], ref["mask"], front), StructureLoss(), rng, Rasterizer("torch"))

        def stop_then_step(i: int):
            if i == stop_at:
                ctx.stop.requested = True
            return step(i)

        TrainLoop(ctx, "texture", "refine", state, 7, stop_then_step).run()
        return logits.logits.detach().clone()

    whole = refine(False, None)
    with pytest.raises(StopRequested):
        refine(False, 3)  # asked during step 3: it finishes, then the loop saves and stops before step 4
    assert torch.load(tmp_path / "texture" / "refine.pt", weights_only=True)["step"] == 4
    assert torch.equal(refine(True, None, seed=1), whole)  # other seeds and start: only the checkpoint makes them equal
