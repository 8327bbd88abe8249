"""The reference-map step: `subject/normal.png` and `subject/depth.png` for the geometry stage.

Runs after the intake and before init (`Pipeline.run`), from `reference.source`:
  generate   ID-aware normal/depth-adapted SD + canny ControlNet (fitter/stages/reference/generate.py)
  user       maps aligned with the original photo, warped into the crop (fitter/stages/reference/user.py)
  estimator  a diffusers Marigold normals pipeline, models.normal_estimator
             (fitter/stages/reference/estimate_normals.py), and/or a transformers depth-estimation model,
             models.depth_estimator (fitter/stages/reference/estimate_depth.py): normal.png, depth.png or both
  none       no maps; maps this step wrote earlier are removed, maps put in subject/ by hand stay.
Output conventions are fitter/stages/reference/view.py's: normals in the OpenGL camera frame of the reference
crop, RGB = (n + 1) / 2 (8-bit), black outside subject/mask.png; depth 16-bit grey, larger =
farther, normalised to [1, 65535] inside the mask and 0 outside. Pixels inside the mask with no
normal (black in the source) take the nearest valid normal.

Model output conventions, in one place (`MODEL_NORMAL_SIGNS`, `depth_from_model_image`):
  normal-adapted SD (HumanNorm): trained on threestudio `normal_type: camera` renders — camera-frame
  normals in threestudio's OpenGL-style camera (x right, y up, z towards the viewer) as (n + 1) / 2 on
  black (HumanNorm's nvdiff_rasterizer and humannorm-geometry-head.yaml): our file convention, so
  the signs are (1, 1, 1).
  depth-adapted SD (HumanNorm): trained on 1 / clip-space depth normalised to [0, 1] over the head,
  0 outside: near = bright. We store 1 − grey (larger = farther), affine in depth to within the
  head's relative depth range.

Files are written atomically; `subject/reference.json` (written last) records the source, the
settings fingerprint and each file's sha256. A rerun whose fingerprint (subject files, reference
settings, models, prompt, seed, user-map contents) and files match reuses the maps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fitter.config import Config, as_dict
from common.digests import file_sha256
from common.errors import OutputError
from common import atomic

log = logging.getLogger("headfit")
REFERENCE_JSON = "reference.json"
MAP_FILES = {"normal": "normal.png", "depth": "depth.png"}
MODEL_NORMAL_SIGNS = (1.0, 1.0, 1.0)
"""Signs taking the normal-adapted SD's decoded (2c − 1) into our OpenGL camera frame (see docstring)."""
MODEL_FIELDS = {
    "generate": ("normal_sd", "depth_sd", "controlnet_canny", "ip_adapter", "ip_adapter_weight", "arcface"),
    "estimator": ("normal_estimator", "depth_estimator"),
    "user": (),
}


def fingerprint(cfg: Config, subject: dict) -> str:
    """Hash of everything that changes the maps: subject files, reference settings, models, prompt, seed."""
    source = cfg.reference.source
    models = {name: getattr(cfg.models, name) for name in MODEL_FIELDS.get(source, ())}
    from fitter.stages.reference.user import user_map_paths

    user = {kind: file_sha256(Path(p)) for kind, p in user_map_paths(cfg).items()} if source == "user" else {}
    payload = [subject.get("input_sha256"), subject.get("files"), as_dict(cfg.reference), cfg.models.preset, models,
               subject.get("prompt"), cfg.run.seed, user]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reusable(subject_dir: Path, digest: str) -> bool:
    try:
        record = json.loads((subject_dir / REFERENCE_JSON).read_text())
        files = record["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return record.get("fingerprint") == digest and bool(files) and all(file_sha256(subject_dir / n) == h for n, h in files.items())


# --- conversions to our file conventions ---------------------------------------------------------
def subject_mask(subject_dir: Path, size: int) -> np.ndarray:
    """(S, S) bool foreground of subject/mask.png."""
    mask = np.asarray(Image.open(subject_dir / "mask.png").convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32)
    return mask > 127.5


def fill_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, C) values with every invalid pixel replaced by its nearest valid pixel's value."""
    if valid.all() or not valid.any():
        return values
    from scipy.ndimage import distance_transform_edt

    _, (rows, cols) = distance_transform_edt(~valid, return_indices=True)
    return values[rows, cols]


def encode_normals(normals: np.ndarray, valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 normal.png of unit normals (S, S, 3), validity (S, S) and mask (S, S)."""
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
    from fitter.stages.reference.user import NO_DATA

    normals = (image * 2.0 - 1.0) * np.asarray(MODEL_NORMAL_SIGNS, dtype=np.float32)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    return normals / np.maximum(norm, 1e-6), image.max(axis=-1) > NO_DATA


def depth_from_model_image(image: np.ndarray) -> np.ndarray:
    """(S, S) depth, larger = farther, of the depth-adapted SD's image (S, S, 3) (near = bright)."""
    return 1.0 - image.mean(axis=-1)


# --- the step -------------------------------------------------------------------------------------
def reference_crop(subject_dir: Path, size: int) -> np.ndarray:
    """(S, S, 3) uint8 RGB reference crop (image_512.png when it has that size)."""
    small = subject_dir / "image_512.png"
    if small.is_file():
        image = np.asarray(Image.open(small).convert("RGB"))
        if image.shape[0] == size:
            return image
    full = np.asarray(Image.open(subject_dir / "image.png").convert("RGB"))
    return cv2.resize(full, (size, size), interpolation=cv2.INTER_AREA if full.shape[0] > size else cv2.INTER_CUBIC)


def produce_maps(cfg: Config, subject_dir: Path, subject: dict, user_maps: dict[str, np.ndarray], device) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """{'normal.png': (S, S, 3) uint8, 'depth.png': (S, S) uint16} (only those the source gives)."""
    size, source = cfg.reference.size, cfg.reference.source
    mask = subject_mask(subject_dir, size)
    files: dict[str, np.ndarray] = {}
    if source == "generate":
        from fitter.stages.reference.generate import generate_maps

        images = generate_maps(cfg, subject_dir, reference_crop(subject_dir, size), str(subject.get("prompt") or cfg.prompt), device)
        files["normal.png"] = encode_normals(*normals_from_model_image(images["normal"]), mask)
        files["depth.png"] = encode_depth(depth_from_model_image(images["depth"]), mask, mask)
    elif source == "user":
        from fitter.stages.reference.user import warp_user_maps

        landmarks = json.loads((subject_dir / "landmarks.json").read_text())
        warped = warp_user_maps(user_maps, landmarks, size, cfg.reference.user_normal_convention)
        if "normal" in warped:
            files["normal.png"] = encode_normals(*warped["normal"], mask)
        if "depth" in warped:
            files["depth.png"] = encode_depth(*warped["depth"], mask)
    elif source == "estimator":
        crop = reference_crop(subject_dir, size)
        if cfg.models.normal_estimator:
            from fitter.stages.reference.estimate_normals import estimate_normals

            r = cfg.reference
            normals = estimate_normals(cfg.models, crop, device, steps=r.estimator_steps, ensemble=r.estimator_ensemble,
                                       resolution=r.estimator_resolution, convention=r.estimator_normal_convention, seed=cfg.run.seed)
            files["normal.png"] = encode_normals(normals, np.linalg.norm(normals, axis=-1) > 0.5, mask)
        if cfg.models.depth_estimator:
            from fitter.stages.reference.estimate_depth import estimate_depth

            files["depth.png"] = encode_depth(estimate_depth(cfg.models, crop, device), mask, mask)
    return files


def _write(subject_dir: Path, files: dict[str, np.ndarray], source: str, digest: str, wall: float) -> None:
    try:
        (subject_dir / REFERENCE_JSON).unlink(missing_ok=True)  # no stale marker over half-written maps
        for name in MAP_FILES.values():
            if name in files:
                atomic.write_png(subject_dir / name, files[name])
            else:
                (subject_dir / name).unlink(missing_ok=True)
        record = {"source": source, "fingerprint": digest, "files": {n: file_sha256(subject_dir / n) for n in files},
                  "conventions": "see fitter/stages/reference/view.py", "wall_s": round(wall, 3)}
        atomic.write_json(subject_dir / REFERENCE_JSON, record)
    except OSError as exc:
        raise OutputError(f"cannot write the reference maps in {subject_dir}: {exc.strerror or exc}") from None


def remove_generated_maps(subject_dir: Path) -> None:
    """reference.source=none: drop maps this step wrote (hand-placed maps have no reference.json)."""
    if (subject_dir / REFERENCE_JSON).is_file():
        for name in (*MAP_FILES.values(), REFERENCE_JSON):
            (subject_dir / name).unlink(missing_ok=True)
        log.info("reference: source none, removed the maps an earlier run made")


def ensure_reference_maps(cfg: Config, subject_dir: Path, subject: dict, user_maps: dict[str, np.ndarray], device) -> None:  # type: ignore[no-untyped-def]
    """Write (or reuse) subject/normal.png, depth.png and reference.json for ``cfg.reference.source``.

    ``user_maps``: what `fitter.stages.reference.user.check_user_maps` read before the intake."""
    source = cfg.reference.source
    if source == "none":
        remove_generated_maps(subject_dir)
        return
    digest = fingerprint(cfg, subject)
    if reusable(subject_dir, digest):
        log.info("reference: reusing the %s maps in %s", source, subject_dir)
        return
    t0 = time.perf_counter()
    files = produce_maps(cfg, subject_dir, subject, user_maps, device)
    _write(subject_dir, files, source, digest, time.perf_counter() - t0)
    log.info("reference: wrote %s from source %s (%.1f s)", ", ".join(files), source, time.perf_counter() - t0)
