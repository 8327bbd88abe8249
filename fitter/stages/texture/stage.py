"""Stage `texture`: UVs and a texture for the fitted geometry.

Reads `geometry/mesh.ply` and `subject/` (photo, mask, camera, landmarks); writes
`texture/head.obj` (+ `.mtl`, `.png`) and `texture/texture.json` (coverage numbers).
Mode `projection`: the photo projected where it is seen, the face mirrored onto its hidden half, a
smooth fill over the surface for the rest, dilation across UV seams.
Mode `diffusion` (`fitter/stages/texture/diffusion.py`): the projection as the start, then progressive
inpainting along a camera trajectory, SDEdit refinement, optional super-resolution, dilation.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from fitter.config import TextureConfig
from fitter.context import RunContext
from common.errors import UserError
from fitter.stages.texture.diffusion import diffusion_texture
from fitter.stages.texture.layers import projection_layers
from common import atomic
from representations.cameras import Camera
from representations.mesh import Mesh, UnwrapOptions, UVUnwrapError, read_mesh, save_obj, unwrap_uv

log = logging.getLogger("headfit")


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.fit.texture
    mesh = unwrap(read_mesh(ctx.out / "geometry" / "mesh.ply"), cfg)
    subject = load_subject_images(ctx)
    if cfg.mode == "diffusion":
        texture, stats = diffusion_texture(ctx, mesh, subject, cfg)
    else:
        texture, stats = projection_texture(mesh, subject, cfg, ctx.cfg.run.seed)
    out = ctx.stage_dir("texture")
    save_obj(mesh.replace(texture=texture), out / "head.obj")
    atomic.write_json(out / "texture.json", stats)
    log.info("texture: %dx%d, %s", cfg.resolution, cfg.resolution,
             ", ".join(f"{100 * v:.1f}% {k.removesuffix('_fraction')}" for k, v in stats.items() if k.endswith("_fraction")))


def unwrap(mesh: Mesh, cfg: TextureConfig) -> Mesh:
    options = UnwrapOptions(resolution=cfg.resolution, padding=cfg.uv_padding, max_faces=cfg.max_faces, timeout_s=cfg.xatlas_timeout_s)
    try:
        return unwrap_uv(mesh, options)
    except UVUnwrapError as exc:
        raise UserError(f"UV unwrap failed: {exc}; try a different fit.texture.max_faces") from None


def load_subject_images(ctx: RunContext) -> dict:
    subject = ctx.subject_dir
    image = np.asarray(Image.open(subject / "image.png").convert("RGB"), dtype=np.float32) / 255.0
    mask = np.asarray(Image.open(subject / "mask.png").convert("L"), dtype=np.float32) / 255.0
    camera = Camera.from_dict(ctx.read_json("subject/camera.json"))
    landmarks = ctx.read_json("subject/landmarks.json")
    init_textured = ctx.out / "init" / "textured.obj"
    return {
        "init_textured": read_mesh(init_textured) if init_textured.is_file() else None,
        "image": torch.from_numpy(image),
        "mask": torch.from_numpy(mask),
        "camera": camera.resized(image.shape[1], image.shape[0]),
        "landmarks_px": np.asarray(landmarks["landmarks"], dtype=np.float64)[:, :2] * (image.shape[0] / landmarks.get("crop_size", image.shape[0])),
        "landmarks_world": np.asarray(landmarks["world"], dtype=np.float64),
    }


def projection_texture(mesh: Mesh, subject: dict, cfg: TextureConfig, seed: int) -> tuple[torch.Tensor, dict]:
    layers = projection_layers(mesh, subject, cfg)
    return layers.texture, layers.stats
