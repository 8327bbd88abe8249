"""Stage `reference`: `reference/normal.png` and `reference/depth.png` for the geometry stage.

Runs after the intake, from `reference.source`:
  generate   ID-aware normal/depth-adapted SD + canny ControlNet (fitter/stages/reference/generate.py)
  user       maps aligned with the original photo, warped into the crop (fitter/stages/reference/user.py)
  estimator  a diffusers Marigold normals pipeline, models.normal_estimator
             (fitter/stages/reference/estimate_normals.py), and/or a transformers depth-estimation model,
             models.depth_estimator (fitter/stages/reference/estimate_depth.py): normal.png, depth.png or both
  none       no maps, unless maps were put in subject/ by hand (subject/normal.png, subject/depth.png):
             then those are used as they are.
Output conventions are fitter/stages/reference/view.py's: normals in the OpenGL camera frame of the reference
crop, RGB = (n + 1) / 2 (8-bit), black outside subject/mask.png; depth 16-bit grey, larger =
farther, normalised to [1, 65535] inside the mask and 0 outside. Pixels inside the mask with no
normal (black in the source) take the nearest valid normal.

Model output conventions (`normals_from_model_image`, `depth_from_model_image`):
  normal-adapted SD (HumanNorm): decoded with `guidance.normal_encoding.NORMAL_ADAPTED_SD` (signs
  (1, 1, 1): camera-frame (n + 1) / 2, x right, y up, z towards the viewer; it generates on black, as
  HumanNorm trained it and the prompt asks). The encodings of every consumer, with their sources, are
  the table in guidance/normal_encoding.py; our files are its `REFERENCE_FILES`.
  depth-adapted SD (HumanNorm): trained on 1 / clip-space depth normalised to [0, 1] over the head,
  0 outside: near = bright. We store 1 − grey (larger = farther), affine in depth to within the
  head's relative depth range.

Files are written atomically. Like every stage it ends with `reference/done.json`; its contract
(`fitter/stages/reference/contract.py`) asks for reuse, so a rerun under the same hash (subject,
reference settings, the source's models, prompt, seed, user-map contents) with intact files reuses
the maps even without `--resume`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from common import atomic
from common.errors import OutputError
from fitter.config import Config
from fitter.context import RunContext
from fitter.stages.reference.estimate_depth import estimate_depth
from fitter.stages.reference.estimate_normals import estimate_normals
from fitter.stages.reference.generate import generate_maps
from fitter.stages.reference.user import NO_DATA, check_user_maps, warp_user_maps
from fitter.subject import Subject
from guidance.normal_encoding import NORMAL_ADAPTED_SD, decode

log = logging.getLogger("headfit")
MAP_FILES = {"normal": "normal.png", "depth": "depth.png"}
MODEL_FIELDS = {
    "generate": ("normal_sd", "depth_sd", "controlnet_canny", "ip_adapter", "ip_adapter_weight", "arcface"),
    "estimator": ("normal_estimator", "depth_estimator"),
    "user": (),
}


# --- conversions to our file conventions ---------------------------------------------------------
def subject_mask(subject: Subject, size: int) -> np.ndarray:
    """(S, S) bool foreground of the subject's mask."""
    return subject.mask(size).numpy() > 0.5


def fill_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, C) values with every invalid pixel replaced by its nearest valid pixel's value."""
    if valid.all() or not valid.any():
        return values
    from scipy.ndimage import distance_transform_edt

    _, (rows, cols) = distance_transform_edt(~valid, return_indices=True)
    return values[rows, cols]


def encode_normals(normals: np.ndarray, valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 normal.png (`REFERENCE_FILES`: (n + 1) / 2 on black) of unit normals (S, S, 3),
    validity (S, S) and mask (S, S)."""
    filled = fill_nearest(normals, valid & mask)
    norm = np.linalg.norm(filled, axis=-1, keepdims=True)
    rgb = (filled / np.maximum(norm, 1e-6) + 1.0) * 0.5
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8) * mask[..., None].astype(np.uint8)


def encode_depth(depth: np.ndarray, valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(S, S) uint16 depth.png (larger = farther, [1, 65535] inside the mask, 0 outside)."""
    if not mask.any():
        return np.zeros(depth.shape, np.uint16)
    d = fill_nearest(depth[..., None], valid & mask)[..., 0]
    lo, hi = float(d[mask].min()), float(d[mask].max())
    scaled = (d - lo) / max(hi - lo, 1e-12) * 65534.0 + 1.0
    return np.where(mask, np.clip(scaled, 1.0, 65535.0), 0.0).round().astype(np.uint16)


def normals_from_model_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (S, S, 3) and validity (S, S) of the normal-adapted SD's image (S, S, 3) in [0, 1]."""
    normals = decode(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1), NORMAL_ADAPTED_SD)[0]
    return normals.numpy(), image.max(axis=-1) > NO_DATA


def depth_from_model_image(image: np.ndarray) -> np.ndarray:
    """(S, S) depth, larger = farther, of the depth-adapted SD's image (S, S, 3) (near = bright)."""
    return 1.0 - image.mean(axis=-1)


# --- the step -------------------------------------------------------------------------------------
def produce_maps(cfg: Config, subject: Subject, user_maps: dict[str, np.ndarray], device) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """{'normal.png': (S, S, 3) uint8, 'depth.png': (S, S) uint16} (only those the source gives)."""
    size, source = cfg.reference.size, cfg.reference.source
    mask = subject_mask(subject, size)
    files: dict[str, np.ndarray] = {}
    if source == "generate":
        images = generate_maps(cfg, subject, subject.image_uint8(size), str(subject.prompt or cfg.prompt), device)
        files["normal.png"] = encode_normals(*normals_from_model_image(images["normal"]), mask)
        files["depth.png"] = encode_depth(depth_from_model_image(images["depth"]), mask, mask)
    elif source == "user":
        warped = warp_user_maps(user_maps, subject.crop_from_input, subject.crop_size, size, cfg.reference.user_normal_convention)
        if "normal" in warped:
            files["normal.png"] = encode_normals(*warped["normal"], mask)
        if "depth" in warped:
            files["depth.png"] = encode_depth(*warped["depth"], mask)
    elif source == "estimator":
        crop = subject.image_uint8(size)
        if cfg.models.normal_estimator:
            r = cfg.reference
            normals = estimate_normals(cfg.models, crop, device, steps=r.estimator_steps, ensemble=r.estimator_ensemble,
                                       resolution=r.estimator_resolution, convention=r.estimator_normal_convention, seed=cfg.run.seed)
            files["normal.png"] = encode_normals(normals, np.linalg.norm(normals, axis=-1) > 0.5, mask)
        if cfg.models.depth_estimator:
            files["depth.png"] = encode_depth(estimate_depth(cfg.models, crop, device), mask, mask)
    return files


def hand_placed_maps(subject_dir: Path) -> dict[str, Path]:
    """reference.source=none: maps a user put in subject/ by hand, {file name: path}."""
    return {name: subject_dir / name for name in MAP_FILES.values() if (subject_dir / name).is_file()}


def run(ctx: RunContext) -> None:
    """Write `reference/normal.png` and `depth.png` (those the source gives) for ``cfg.reference.source``."""
    cfg, out = ctx.cfg, ctx.stage_dir("reference")
    t0 = time.perf_counter()
    if cfg.reference.source == "none":
        for name, path in hand_placed_maps(ctx.subject_dir).items():
            atomic.write_bytes(out / name, path.read_bytes())
            log.info("reference: using %s, put there by hand", path)
        return
    assert ctx.image is not None, "the reference stage checks user maps against the photo"
    user_maps = check_user_maps(cfg, ctx.image)
    files = produce_maps(cfg, ctx.subject, user_maps, ctx.device)
    try:
        for name, image in files.items():
            atomic.write_png(out / name, image)
    except OSError as exc:
        raise OutputError(f"cannot write the reference maps in {out}: {exc.strerror or exc}") from None
    log.info("reference: wrote %s from source %s (%.1f s)", ", ".join(files), cfg.reference.source, time.perf_counter() - t0)
