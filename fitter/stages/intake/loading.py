"""Read a user's photo into an 8-bit RGB array, refusing anything unusable with one clear line.

Every decoder failure becomes `BadImageError`: PIL's plugins raise OSError, SyntaxError, ValueError,
struct.error, EOFError, ZeroDivisionError, MemoryError and more for damaged files.

One pixel limit, `intake.max_pixels`: the image size is checked from the header before any pixel is
decoded, and PIL's own decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`, 89.5 MP by default, which
also guards frames and sub-images that plugins size while decoding) is set to the same limit for the
duration of the decode and restored afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from common.errors import BadImageError
from fitter.config import IntakeConfig

log = logging.getLogger("headfit")
BYTES_PER_PIXEL_CAP = 8
"""A file larger than max_pixels x this (16-bit RGBA, uncompressed) cannot be a photo we accept."""
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass
class LoadedImage:
    rgb: np.ndarray
    """(H, W, 3) uint8, upright (EXIF orientation applied), transparency composited on grey."""
    alpha: np.ndarray | None
    """(H, W) float32 in [0, 1] when the input had real transparency, else None."""
    sha256: str
    format: str
    mode: str
    exif_orientation: int
    warnings: list[str] = field(default_factory=list)


def read_input_bytes(path: Path, cfg: IntakeConfig) -> bytes:
    """The file's bytes, after checking it is a readable, non-empty regular file of sane size."""
    if not path.exists():
        raise BadImageError(f"image not found: {path}")
    if path.is_dir():
        raise BadImageError(f"image path is a directory, not a file: {path}")
    try:
        size = path.stat().st_size
        if size == 0:
            raise BadImageError(f"image file is empty: {path}")
        if size > cfg.max_pixels * BYTES_PER_PIXEL_CAP + (1 << 20):
            raise BadImageError(f"image file is too large ({size} bytes): {path}")
        return path.read_bytes()
    except OSError as exc:
        raise BadImageError(f"cannot read image {path}: {exc.strerror or exc}") from None


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def pil_pixel_limit(max_pixels: int) -> Iterator[None]:
    """PIL's decompression-bomb limit set to `max_pixels` while the block runs (one decode at a time)."""
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def too_many_pixels(name: str, max_pixels: int, size: str = "too many") -> BadImageError:
    return BadImageError(f"{name} has {size} pixels, more than intake.max_pixels={max_pixels}")


def decode_image(data: bytes, name: str, cfg: IntakeConfig) -> LoadedImage:
    """Decode, check the size limits, orient and convert to RGB (+ alpha hint)."""
    try:
        with warnings.catch_warnings(), pil_pixel_limit(cfg.max_pixels):
            warnings.simplefilter("ignore")  # PIL warns about damaged metadata; stderr stays one line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, name, cfg)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        count = re.search(r"\((\d+) pixels\)", str(exc))  # PIL: "Image size (N pixels) exceeds limit of ..."
        raise too_many_pixels(name, cfg.max_pixels, count[1] if count else "too many") from None
    except Exception as exc:  # any decoder failure is a bad file, never a traceback
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise BadImageError(f"cannot decode image {name}: {detail[:200]}") from None


def _decode(data: bytes, name: str, cfg: IntakeConfig) -> LoadedImage:
    try:
        im = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise BadImageError(f"{name} is not an image file (or a format that cannot be read)") from None
    w, h = im.size
    if w * h > cfg.max_pixels:  # PIL's guard in open() refuses this first; kept for plugins that skip it
        raise too_many_pixels(name, cfg.max_pixels, f"{w}x{h}")
    if min(w, h) < cfg.min_short_side:
        raise BadImageError(f"{name} is {w}x{h}: the short side must be at least intake.min_short_side={cfg.min_short_side} px")
    fmt = im.format or "unknown"
    im.load()
    orientation = _exif_orientation(im)
    notes: list[str] = []
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as exc:  # a broken EXIF block should not lose an otherwise good photo
        notes.append(f"EXIF orientation could not be applied ({type(exc).__name__}); using the stored orientation")
    mode = im.mode
    rgb, alpha = _to_rgb(im, cfg.background)
    return LoadedImage(rgb, alpha, sha256_of(data), fmt, mode, orientation, notes)


def _exif_orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _to_rgb(im: Image.Image, background: float) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit RGB plus an alpha array when the image has transparency that is actually used."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _high_depth_to_uint8(np.asarray(im))
        return np.repeat(gray[:, :, None], 3, axis=2), None
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if not has_alpha:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8)), None
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[:, :, 3]
    if alpha.min() > 0.98:
        return np.ascontiguousarray((rgba[:, :, :3] * 255.0 + 0.5).astype(np.uint8)), None
    rgb = rgba[:, :, :3] * alpha[:, :, None] + background * (1.0 - alpha[:, :, None])
    return np.ascontiguousarray((rgb * 255.0 + 0.5).astype(np.uint8)), alpha


def _high_depth_to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit or 32-bit grey to 8 bits: float images in [0, 1] scale by 255, integers above 255 by 1/257."""
    v = values.astype(np.float64)
    if values.dtype.kind == "f":
        v = np.nan_to_num(v, nan=0.0, posinf=1.0, neginf=0.0)
        v = v * 255.0 if v.max(initial=0.0) <= 1.0 else v
    elif v.max(initial=0.0) > 255:
        v = v / 257.0
    return np.clip(v + 0.5, 0, 255).astype(np.uint8)
