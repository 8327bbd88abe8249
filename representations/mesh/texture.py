"""Texture images and the UV-to-pixel convention (see `core.py`: v = 0 is the bottom row)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def texture_to_uint8(texture: torch.Tensor) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (H, W, 3) uint8, rounded to nearest."""
    array = texture.detach().float().clamp(0.0, 1.0).cpu().numpy()
    return np.round(array * 255.0).astype(np.uint8)


def texture_to_image(texture: torch.Tensor) -> Image.Image:
    return Image.fromarray(texture_to_uint8(texture), mode="RGB")


def texture_from_image(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """A PIL image (any mode) -> (H, W, 3) float in [0, 1], row 0 at the top; alpha is dropped."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).to(device)


def uv_to_pixel(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 2) uv -> (..., 2) continuous pixel coordinates (x right, y down; texel (i, j) spans
    x in [j, j+1), y in [i, i+1))."""
    return torch.stack([uv[..., 0] * width, (1.0 - uv[..., 1]) * height], dim=-1)


def uv_to_grid(uv: torch.Tensor) -> torch.Tensor:
    """(..., 2) uv -> (..., 2) coordinates for `torch.nn.functional.grid_sample(align_corners=False)`
    on a (N, C, H, W) texture whose row 0 is the top."""
    return torch.stack([uv[..., 0] * 2.0 - 1.0, 1.0 - uv[..., 1] * 2.0], dim=-1)
