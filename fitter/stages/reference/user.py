"""`reference.source=user`: normal/depth maps aligned with the ORIGINAL photo, warped into the crop.

Checked before any work (`check_user_maps`): each given file must be readable (PNG/TIFF/… 8- or
16-bit, via OpenCV) and exactly as large as the photo as the user sees it (EXIF orientation
applied). Then (`warp_user_maps`) each map goes through the intake's `crop_from_input` transform
(`Subject.crop_from_input`) scaled to `reference.size`, with bilinear/cubic resampling and black outside the
photo. The crop may be rolled against the photo (the head's in-plane tilt is removed): a roll by R
of the image turns camera-frame normals by the same angle about the view axis, so the warped
normals' (x, y) are turned too (exact for a roll about the principal point, a close approximation
elsewhere).

Normal colour: RGB = (n + 1) / 2 with black = no data. `reference.user_normal_convention`:
``opengl`` — x right, y up, z towards the viewer (our file convention, and what Blender/threestudio
camera-space renders give); ``opencv`` — x right, y down, z away from the viewer (the frame of most
OpenCV/COLMAP-based estimators): y and z are negated on reading.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.errors import UserError
from fitter.config import Config
from fitter.stages.intake.warp import scale_of, warp_image

CONVENTION_SIGNS = {"opengl": (1.0, 1.0, 1.0), "opencv": (1.0, -1.0, -1.0)}
"""Signs that take a user normal's (x, y, z) into the OpenGL camera frame."""
NO_DATA = 8.0 / 255.0
"""A normal pixel whose channels are all below this is 'no data' (black)."""


def photo_size(image_path: Path) -> tuple[int, int] | None:
    """(width, height) of the photo as shown (EXIF orientation applied); None when unreadable here
    (the intake then reports the photo itself)."""
    from PIL import Image

    try:
        with Image.open(image_path) as im:
            w, h = im.size
            orientation = int(im.getexif().get(0x0112, 1))
    except Exception:  # PIL raises many types for broken files; the intake's check names the problem
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_map(path: str | Path, kind: str) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1] (RGB order) of an 8- or 16-bit image; UserError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"reference {kind} map not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype not in (np.uint8, np.uint16) or raw.ndim not in (2, 3):
        raise UserError(f"cannot read the reference {kind} map {path} (expected an 8- or 16-bit PNG/TIFF image)")
    peak = 65535.0 if raw.dtype == np.uint16 else 255.0
    image = raw.astype(np.float32) / peak
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB) if image.shape[2] >= 3 else image[..., 0]
    return image


def user_map_paths(cfg: Config) -> dict[str, str]:
    r = cfg.reference
    return {kind: p for kind, p in (("normal", r.normal_path), ("depth", r.depth_path)) if p}


def check_user_maps(cfg: Config, image_path: Path) -> dict[str, np.ndarray]:
    """Read and size-check the user maps (reference.source=user) before any work; {} otherwise."""
    if cfg.reference.source != "user":
        return {}
    size = photo_size(Path(image_path))
    maps = {}
    for kind, path in user_map_paths(cfg).items():
        image = read_map(path, kind)
        if kind == "normal" and image.ndim != 3:
            raise UserError(f"reference normal map {path} must be an RGB image, not grey")
        h, w = image.shape[:2]
        if size is not None and (w, h) != size:
            raise UserError(f"reference {kind} map {path} is {w}x{h} but the photo is {size[0]}x{size[1]}: "
                            "user maps must be aligned with the original photo, same size")
        maps[kind] = image
    return maps


def normals_from_colours(rgb: np.ndarray, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """OpenGL camera-frame unit normals (H, W, 3) and a validity mask (H, W) of RGB (H, W, 3) in [0, 1]."""
    normals = (rgb * 2.0 - 1.0) * np.asarray(CONVENTION_SIGNS[convention], dtype=np.float32)
    valid = rgb.max(axis=-1) > NO_DATA
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    return normals / np.maximum(norm, 1e-6), valid


def crop_matrix(crop_from_input: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """3x3 map from photo pixels to the size x size reference crop."""
    return np.diag([size / crop_size, size / crop_size, 1.0]) @ np.asarray(crop_from_input, dtype=np.float64)


def roll_normals(normals: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Turn (…, 3) OpenGL camera-frame normals by the in-plane rotation of the image map ``m``."""
    rot = m[:2, :2] / scale_of(m)
    flip = np.diag([1.0, -1.0])  # image y points down, camera y up
    turned = normals.copy()
    turned[..., :2] = normals[..., :2] @ (flip @ rot @ flip).T
    return turned


def warp_normals(rgb: np.ndarray, m: np.ndarray, size: int, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (S, S, 3) in the crop's camera frame and their validity (S, S) from photo-aligned RGB."""
    normals, valid = normals_from_colours(rgb, convention)
    warped = warp_image(np.ascontiguousarray(normals * valid[..., None], dtype=np.float32), m, size, background=0.0)
    coverage = warp_image(valid.astype(np.float32), m, size, background=0.0)
    norm = np.linalg.norm(warped, axis=-1, keepdims=True)
    return roll_normals(warped / np.maximum(norm, 1e-6), m), (coverage > 0.5) & (norm[..., 0] > 0.5)


def warp_user_maps(maps: dict[str, np.ndarray], crop_from_input: np.ndarray, crop_size: int, size: int,
                   convention: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'normal': (normals (S, S, 3), valid), 'depth': (depth (S, S), valid)} in the size² crop, from the
    photo-aligned maps and the intake's (3, 3) photo-to-crop map for a ``crop_size`` crop (`Subject.crop_from_input`)."""
    m = crop_matrix(crop_from_input, crop_size, size)
    out = {}
    if "normal" in maps:
        out["normal"] = warp_normals(maps["normal"], m, size, convention)
    if "depth" in maps:
        grey = maps["depth"] if maps["depth"].ndim == 2 else maps["depth"].mean(axis=-1)
        inside = warp_image(np.ones_like(grey, dtype=np.float32), m, size, background=0.0) > 0.5
        out["depth"] = (warp_image(np.ascontiguousarray(grey, dtype=np.float32), m, size, background=0.0), inside)
    return out
