"""Read a view folder into tensors at the fitting resolution.

Each view image and normal map is checked from its header before anything is decoded
(`check_view_images`): readable (structure verified, e.g. PNG checksums), at most
`intake.max_pixels` pixels (the photo's limit), and all views one size. Any decoder failure is a
one-line `UserError`.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image

from common.errors import StopRequested, UserError
from fitter.config import IntakeConfig
from fitter.stages.init.multiview.cameras import view_camera
from fitter.stages.init.multiview.presets import preset_views
from fitter.stages.init.multiview.segment import view_mask
from fitter.stages.init.multiview.views import CAMERAS_FILE, ViewSpec, check_files, image_files, read_cameras_json
from fitter.stages.intake.loading import pil_pixel_limit
from representations.cameras import Camera

DEFAULT_MAX_PIXELS = IntakeConfig().max_pixels
ERROR_DETAIL_CHARS = 200


@dataclass
class ViewSet:
    """Views ready for fitting.

    images: (N, H, W, 3) float32 in [0, 1]; masks: (N, H, W) float32 foreground in [0, 1];
    normals: per view an (H, W, 3) camera-space unit normal map or None; cameras: N `Camera`s at H x W.
    """

    specs: list[ViewSpec]
    images: torch.Tensor
    masks: torch.Tensor
    normals: list[Optional[torch.Tensor]]
    cameras: list[Camera]

    def __len__(self) -> int:
        return len(self.specs)


def view_specs(folder: Path, preset: str, azimuth: float, elevation: float, radius: float, fov_deg: float) -> list[ViewSpec]:
    """The folder's views: from `cameras.json`, or from ``preset`` (`none` = read cameras.json)."""
    if not folder.is_dir():
        raise UserError(f"init.views_dir {folder} is not a folder")
    if preset == "none":
        specs = read_cameras_json(folder)
    else:
        if (folder / CAMERAS_FILE).exists():
            raise UserError(f"{folder} has {CAMERAS_FILE} and init.views_preset={preset}: use one of them (set init.views_preset=none)")
        specs = preset_views(preset, image_files(folder), azimuth, elevation, radius, fov_deg)
    check_files(folder, specs)
    return specs


def check_view_images(folder: Path, specs: list[ViewSpec], max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """From the headers only: every view and normal map is a readable image of at most ``max_pixels``
    pixels, and the views are all one size."""
    first: Optional[tuple[str, tuple[int, int]]] = None
    for spec in specs:
        size = _header_size(folder / spec.file, max_pixels)
        if first is not None and size != first[1]:
            raise UserError(f"multi-view image {folder / spec.file} is {size[0]}x{size[1]}, "
                            f"{first[0]} is {first[1][0]}x{first[1][1]}: all views must be one size")
        first = first or (spec.file, size)
        if spec.normal_file is not None:
            _header_size(folder / spec.normal_file, max_pixels)


def _header_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header; the file's structure is verified (PNG chunk checksums, say)
    without decoding its pixels."""
    with _decoding(path, max_pixels):
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:  # PIL's guard in open() refuses this first; kept for plugins that skip it
                raise _too_many_pixels(path, max_pixels, f"{width}x{height}")
            image.verify()
    return width, height


def _too_many_pixels(path: Path, max_pixels: int, size: str) -> UserError:
    return UserError(f"multi-view image {path} has {size} pixels, more than intake.max_pixels={max_pixels}")


@contextlib.contextmanager
def _decoding(path: Path, max_pixels: int) -> Iterator[None]:
    """PIL's pixel limit set to ``max_pixels`` (as for the photo), its warnings kept off stderr, and
    whatever it raises for a damaged or hostile file (OSError, SyntaxError, struct.error, EOFError,
    ...) turned into one `UserError` line."""
    try:
        with warnings.catch_warnings(), pil_pixel_limit(max_pixels):
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (StopRequested, UserError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        count = re.search(r"\((\d+) pixels\)", str(exc))  # PIL: "Image size (N pixels) exceeds limit of ..."
        raise _too_many_pixels(path, max_pixels, count[1] if count else "too many") from None
    except Exception as exc:
        detail = " ".join(str(exc).split())[:ERROR_DETAIL_CHARS] or type(exc).__name__
        raise UserError(f"cannot read multi-view image {path}: {detail}") from None


def _read_rgba(path: Path, max_pixels: int) -> np.ndarray:
    with _decoding(path, max_pixels):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA"))


def _resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float32 (H, W) or (H, W, C) array."""
    channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[-1])]
    out = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)) for c in channels]
    return out[0] if array.ndim == 2 else np.stack(out, -1)


def load_view_set(folder: Path, specs: list[ViewSpec], size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> ViewSet:
    """Images, masks (alpha or segmenter), normal maps and cameras, resized to ``size`` rows; the
    images are checked first (`check_view_images`)."""
    check_view_images(folder, specs, max_pixels)
    images, masks, normals, cameras = [], [], [], []
    shape = None
    for spec in specs:
        rgba = _read_rgba(folder / spec.file, max_pixels)
        if shape is not None and rgba.shape[:2] != shape:
            raise UserError(f"multi-view image {folder / spec.file} is {rgba.shape[1]}x{rgba.shape[0]}, the others {shape[1]}x{shape[0]}")
        shape = rgba.shape[:2]
        height, width = size, max(1, round(size * shape[1] / shape[0]))
        mask = view_mask(rgba)
        if mask.mean() < 1e-3:
            raise UserError(f"multi-view image {folder / spec.file}: no foreground found")
        images.append(_resized(rgba[..., :3].astype(np.float32) / 255.0, width, height))
        masks.append(_resized(mask, width, height))
        normals.append(_normal_map(folder, spec, width, height, max_pixels))
        cameras.append(view_camera(spec, width, height))
    return ViewSet(specs, torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)).clamp(0, 1), normals, cameras)


def _normal_map(folder: Path, spec: ViewSpec, width: int, height: int, max_pixels: int) -> Optional[torch.Tensor]:
    if spec.normal_file is None:
        return None
    rgb = _read_rgba(folder / spec.normal_file, max_pixels)[..., :3].astype(np.float32) / 255.0
    return torch.nn.functional.normalize(torch.from_numpy(_resized(rgb, width, height) * 2.0 - 1.0), dim=-1)
