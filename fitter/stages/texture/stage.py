"""Stage `texture`: UVs and a texture for the fitted geometry.

Reads `geometry/mesh.ply`, `subject/` (photo, mask, camera, landmarks) and the prior's fitted head (`prior/`,
which texels are scalp); writes
`texture/head.obj` (+ `.mtl`, `.png`), `texture/texture.json` (coverage numbers, the estimated lighting) and,
with `albedo` (default), `texture/albedo.png`: the texture with the face's SH lighting divided out
(`fitter/stages/texture/lighting.py`).
Mode `projection` (`fitter/stages/texture/layers.py`): the photo projected where the surface faces the
camera within `max_angle_deg` (fading out over `feather_deg`), the face mirrored onto its hidden half; where
the photo is silent a smooth fill pulled towards the subject's skin and hair colours, with the visible skin's
fine texture on skin and hair strands quilted from the photo's hair on hair (`fitter/stages/texture/synthesis.py`);
dilation across UV seams.
Mode `diffusion` (`fitter/stages/texture/diffusion.py`): the projection as the start, then progressive
inpainting along a camera trajectory, SDEdit refinement, optional super-resolution, dilation.
"""

from __future__ import annotations

import logging

import torch

from common import atomic
from common.errors import UserError
from fitter.config import TextureConfig
from fitter.context import RunContext
from fitter.stages.init.parametric import PRIOR_FIT, prior_head_file
from fitter.stages.texture.diffusion import diffusion_texture
from fitter.stages.texture.layers import SubjectPhoto, projection_layers
from fitter.stages.texture.lighting import albedo_from_photo
from representations.mesh import Mesh, UVUnwrapError, read_mesh, save_obj, unwrap_uv

log = logging.getLogger("headfit")


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.fit.texture
    mesh = unwrap(read_mesh(ctx.out / "geometry" / "mesh.ply"), cfg)
    subject = subject_photo(ctx)
    if cfg.mode == "diffusion":
        texture, stats = diffusion_texture(ctx, mesh, subject, cfg)
    else:
        texture, stats = projection_texture(mesh, subject, cfg, ctx.cfg.run.seed)
    out = ctx.stage_dir("texture")
    save_obj(mesh.replace(texture=texture), out / "head.obj")
    if cfg.albedo:
        albedo, lighting = albedo_from_photo(mesh, subject, texture, ctx.cfg.run.seed)
        stats.update(lighting)
        if albedo is not None:
            atomic.write_png(out / "albedo.png", albedo.cpu().numpy())
    atomic.write_json(out / "texture.json", stats)
    log.info("texture: %dx%d, %s", cfg.resolution, cfg.resolution,
             ", ".join(f"{100 * v:.1f}% {k.removesuffix('_fraction')}" for k, v in stats.items() if k.endswith("_fraction")))


def unwrap(mesh: Mesh, cfg: TextureConfig) -> Mesh:
    try:
        return unwrap_uv(mesh, cfg.resolution, cfg.unwrap)
    except UVUnwrapError as exc:
        raise UserError(f"UV unwrap failed: {exc}; try a different fit.texture.unwrap.max_faces") from None


def subject_photo(ctx: RunContext) -> SubjectPhoto:
    init_textured = ctx.out / "init" / "textured.obj"
    return SubjectPhoto.of(ctx.subject, read_mesh(init_textured) if init_textured.is_file() else None, parametric_head(ctx))


def parametric_head(ctx: RunContext) -> Mesh | None:
    """The prior stage's fitted head (the one the init used), None when the prior did not run."""
    if not (ctx.out / "prior" / PRIOR_FIT).is_file():
        return None
    return read_mesh(prior_head_file(ctx.out / "prior"))


def projection_texture(mesh: Mesh, subject: SubjectPhoto, cfg: TextureConfig, seed: int) -> tuple[torch.Tensor, dict]:
    layers = projection_layers(mesh, subject, cfg)
    return layers.texture, layers.stats
