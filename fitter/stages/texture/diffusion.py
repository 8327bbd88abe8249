"""Texture mode `diffusion`: photo projection → progressive inpainting → refinement → SR → dilation.

1. The projection texture (`fitter.stages.texture.layers.projection_layers`) is the start; the direct and
   mirrored photo confidences are its coverage (the hair/back and the smooth fill count as unknown).
2. Progressive inpainting (`fitter.stages.texture.inpaint`) along `trajectory_*` with blended-latent DDIM
   (`guidance.inpaint`), or an inpainting UNet when `inpaint_model` is set. Saved to
   `texture/inpainted.pt` (+ `.png`) so that `--resume` goes straight to refinement.
3. Refinement (`fitter.stages.texture.refine`) in the training loop `texture/refine` (checkpoints, exact
   resume, NaN rollback, Ctrl-C).
4. Optional super-resolution (`fitter.stages.texture.super_resolution`), then dilation across UV seams.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common import atomic
from fitter.config import TextureConfig
from fitter.context import RunContext
from fitter.stages.texture.inpaint import InpaintResult, InpaintView, progressive_inpaint
from fitter.stages.texture.layers import SubjectPhoto, projection_layers
from fitter.stages.texture.refine import Reference, RefineStep, TextureLogits
from fitter.stages.texture.refine_losses import perceptual_loss
from fitter.stages.texture.super_resolution import resize_valid, upscale_texture
from fitter.training.checkpoint import TrainState
from fitter.training.loop import TrainLoop
from guidance.control import camera_azimuth
from guidance.inpaint import BlendedInpainter, MaskConditionedUNet
from guidance.models import effective_models_config, load_identity_adapter
from guidance.models.bundle import load_options
from guidance.models.loading import load_unet
from guidance.models.sources import resolve
from guidance.registry import ModelSpec
from guidance.sdedit import GuidedPrior, load_texture_prior, sdedit_target
from guidance.weights import unpickle_plain
from representations.cameras import Camera, OrbitView
from representations.mesh import Mesh
from representations.render import Rasterizer
from representations.render.texel import dilate_into_gutters

log = logging.getLogger("headfit")


def diffusion_texture(ctx: RunContext, mesh: Mesh, subject: SubjectPhoto, cfg: TextureConfig) -> tuple[torch.Tensor, dict]:
    """The final texture (T', T', 3) in [0, 1] and the stage statistics (see module docstring)."""
    layers = projection_layers(mesh, subject, cfg)
    identity = identity_embedding(ctx, cfg)
    prior = load_texture_prior(ctx.cfg.models, cfg.prior, ctx.device, cfg.precision, identity=identity is not None,
                               prompt=ctx.cfg.prompt + cfg.prompt_suffix)
    start = torch.clamp(sum(layers.confidences[k] for k in ("direct", "mirrored") if k in layers.confidences), 0.0, 1.0)
    inpainted = inpainted_texture(ctx, mesh, layers, start * layers.surface.valid, prior, identity, cfg)
    texture = refine_texture(ctx, mesh, inpainted.texture, subject, prior, identity, cfg)
    valid = layers.surface.valid
    if cfg.sr_model:
        texture = upscale_texture(texture, cfg.sr_model)
        valid = resize_valid(valid, texture.shape[0])
    texture = dilate_into_gutters(texture.clamp(0.0, 1.0), valid)
    stats = dict(layers.stats, mode="diffusion", identity_tokens=identity is not None, output_resolution=int(texture.shape[0]),
                 painted_fraction=covered_fraction(inpainted.coverage, layers.surface.valid),
                 inpaint_views=inpainted.views, lpips=bool(cfg.lpips_weights))
    return texture.float(), stats


def covered_fraction(coverage: torch.Tensor, valid: torch.Tensor) -> float:
    return float(((coverage > 0) & valid).sum()) / max(int(valid.sum()), 1)


def identity_embedding(ctx: RunContext, cfg: TextureConfig) -> torch.Tensor | None:
    """(512,) ArcFace embedding (`Subject.arcface_embedding`); None when identity tokens are off or there is none."""
    if not cfg.identity:
        return None
    embedding = ctx.subject.arcface_embedding(ctx.cfg.models)
    return None if embedding is None else torch.from_numpy(embedding).float()


def trajectory(cfg: TextureConfig) -> list[OrbitView]:
    return [OrbitView(a, e, cfg.trajectory_radius, cfg.trajectory_fov_deg) for a, e in zip(cfg.trajectory_azimuths, cfg.trajectory_elevations)]


def build_inpainter(ctx: RunContext, prior: GuidedPrior, cfg: TextureConfig, identity: torch.Tensor | None) -> BlendedInpainter:
    """Blended-latent DDIM on the prior, or on the inpainting UNet of `inpaint_model` (same text, VAE, control)."""
    if not cfg.inpaint_model:
        return BlendedInpainter(prior, cfg.inpaint.ddim, seed=ctx.cfg.run.seed)
    models = effective_models_config(ctx.cfg.models)
    spec = ModelSpec("SD1.5 inpainting UNet", "fit.texture.inpaint_model", cfg.inpaint_model, "unet/config.json")
    unet = load_unet(resolve(spec, models.cache_dir), load_options(models, ctx.device, cfg.precision))
    if identity is not None:
        load_identity_adapter(unet, models, cfg.prior.ip_scale)
    conditioned = MaskConditionedUNet(unet)
    base = prior.guidance.denoiser
    denoiser = type(base)(conditioned, base.controlnet, cfg.prior.ip_scale, cfg.prior.control_scale)
    inpaint_prior = GuidedPrior(prior.cfg, denoiser, prior.codec, prior.guidance.text, prior.alphas_cumprod, prompt=prior.prompt)
    return BlendedInpainter(inpaint_prior, cfg.inpaint.ddim, conditioned, seed=ctx.cfg.run.seed)


def inpainted_texture(ctx: RunContext, mesh: Mesh, layers: Any, coverage: torch.Tensor, prior: GuidedPrior,
                      identity: torch.Tensor | None, cfg: TextureConfig) -> InpaintResult:
    """Step 2; reloaded from `texture/inpainted.pt` on `--resume` when it is there."""
    path = ctx.stage_dir("texture") / "inpainted.pt"
    if ctx.resume and path.is_file():
        saved = unpickle_plain(path)
        log.info("texture: inpainting reloaded from %s", path)
        return InpaintResult(saved["texture"], saved["coverage"], saved["views"])
    inpainter = build_inpainter(ctx, prior, cfg, identity)
    device = ctx.device

    def generate(view: InpaintView) -> torch.Tensor:
        ident = None if identity is None else identity.to(device)
        return inpainter.inpaint(view.image.to(device), view.keep.to(device), view.azimuth, ident, view.control.to(device)).cpu()

    result = progressive_inpaint(mesh, layers.surface, layers.texture, coverage, trajectory(cfg), generate, cfg.inpaint)
    atomic.write_torch(path, {"texture": result.texture, "coverage": result.coverage, "views": result.views})
    preview = (result.texture.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    atomic.write_with(path.with_suffix(".png"), lambda tmp: Image.fromarray(preview).save(tmp, format="PNG"))
    log.info("texture: inpainted %d views, %.1f%% of the texels painted", sum(v["texels"] > 0 for v in result.views),
             100 * covered_fraction(result.coverage, layers.surface.valid))
    return result


def reference_at(subject: SubjectPhoto, size: int) -> Reference:
    """The photo, its mask and camera at size² (area-resampled)."""
    image = F.interpolate(subject.image.permute(2, 0, 1)[None], size=(size, size), mode="area")[0].permute(1, 2, 0)
    mask = F.interpolate(subject.mask[None, None], size=(size, size), mode="area")[0].permute(1, 2, 0)
    return Reference(image, mask, subject.camera.resized(size))


def refine_texture(ctx: RunContext, mesh: Mesh, texture: torch.Tensor, subject: SubjectPhoto, prior: GuidedPrior,
                   identity: torch.Tensor | None, cfg: TextureConfig) -> torch.Tensor:
    """Step 3: the `refine` training loop; returns the refined texture (T, T, 3) on the CPU."""
    device = ctx.device
    logits = TextureLogits(texture).to(device)
    optimizer = torch.optim.AdamW(logits.parameters(), lr=cfg.refine.lr)
    state = TrainState({"texture": logits}, {"texture": optimizer}, np.random.default_rng(ctx.cfg.run.seed + 7))
    ident = None if identity is None else identity.to(device)

    def target(image: torch.Tensor, t: int, camera: Camera, control: torch.Tensor) -> torch.Tensor:
        return sdedit_target(prior, image, torch.tensor([t], device=device), None, [camera_azimuth(camera)], ident, control,
                             steps=cfg.refine.ddim_steps)

    ref = reference_at(subject, cfg.refine.render_size)
    step = RefineStep(cfg.refine, mesh.to(device), logits, target,
                      Reference(ref.image.to(device), ref.mask.to(device), ref.camera),
                      perceptual_loss(cfg.lpips_weights, device, ctx.cfg.models.pickle_allowed("lpips")), state.rng, Rasterizer("auto"))
    TrainLoop(ctx, "texture", "refine", state, cfg.refine.steps, step).run()
    return logits().detach().cpu()
