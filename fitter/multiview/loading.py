"""Read a view folder into tensors at the fitting resolution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fitter.errors import UserError
from fitter.multiview.cameras import view_camera
from fitter.multiview.presets import preset_views
from fitter.multiview.segment import view_mask
from fitter.multiview.views import CAMERAS_FILE, ViewSpec, check_files, image_files, read_cameras_json
from representations.cameras import Camera


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


def _read_rgba(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"cannot read multi-view image {path}: {exc}") from None


def _resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float32 (H, W) or (H, W, C) array."""
    channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[-1])]
    out = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)) for c in channels]
    return out[0] if array.ndim == 2 else np.stack(out, -1)


def load_view_set(folder: Path, specs: list[ViewSpec], size: int) -> ViewSet:
    """Images, masks (alpha or segmenter), normal maps and cameras, resized to ``size`` rows."""
    images, masks, normals, cameras = [], [], [], []
    shape = None
    for spec in specs:
        rgba = _read_rgba(folder / spec.file)
        if shape is not None and rgba.shape[:2] != shape:
            raise UserError(f"multi-view image {folder / spec.file} is {rgba.shape[1]}x{rgba.shape[0]}, the others {shape[1]}x{shape[0]}")
        shape = rgba.shape[:2]
        height, width = size, max(1, round(size * shape[1] / shape[0]))
        mask = view_mask(rgba)
        if mask.mean() < 1e-3:
            raise UserError(f"multi-view image {folder / spec.file}: no foreground found")
        images.append(_resized(rgba[..., :3].astype(np.float32) / 255.0, width, height))
        masks.append(_resized(mask, width, height))
        normals.append(_normal_map(folder, spec, width, height))
        cameras.append(view_camera(spec, width, height))
    return ViewSet(specs, torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)).clamp(0, 1), normals, cameras)


def _normal_map(folder: Path, spec: ViewSpec, width: int, height: int) -> Optional[torch.Tensor]:
    if spec.normal_file is None:
        return None
    rgb = _read_rgba(folder / spec.normal_file)[..., :3].astype(np.float32) / 255.0
    return torch.nn.functional.normalize(torch.from_numpy(_resized(rgb, width, height) * 2.0 - 1.0), dim=-1)
