"""The reference view as the fitting stages use it: camera, mask, landmarks and, when present,
the reference normal and depth maps, all at one render resolution.

File conventions (written by the intake or by the reference-map step, read here):
`reference/normal.png` — camera-space unit normals of the reference view in the OpenGL camera frame
(x right, y up, z towards the viewer), stored as RGB = (n + 1) / 2; black outside the head
(`guidance.normal_encoding.REFERENCE_FILES`).
`reference/depth.png` — 8- or 16-bit grey, larger = farther, meaningful only up to scale and shift
(the depth losses align them); values outside the mask are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image

from fitter.context import RunContext
from guidance.normal_encoding import REFERENCE_FILES, decode
from representations.cameras import Camera


@dataclass
class Reference:
    camera: Camera
    mask: torch.Tensor  # (H, W, 1) in [0, 1]
    landmarks: torch.Tensor  # (N, 3) world
    landmark_pixels: torch.Tensor  # (N, 2) at this resolution
    landmark_depth: torch.Tensor  # (N,) view-axis depth
    view_dir: torch.Tensor  # (3,) unit, from the head towards the camera
    normal: Optional[torch.Tensor] = None  # (H, W, 3) camera-space
    depth: Optional[torch.Tensor] = None  # (H, W, 1) relative


def _read_grey(path, size: int) -> np.ndarray:
    image = Image.open(path)
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1)
    peak = 65535.0 if array.max() > 255 else 255.0
    return np.array(Image.fromarray((array / peak).astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))


def load_reference(ctx: RunContext, size: int) -> Reference:
    device = ctx.device
    camera = ctx.subject.camera(size)
    mask = ctx.subject.mask(size, smooth=True).to(device)[..., None]
    world = ctx.subject.landmarks_world
    pixels, depth = camera.project(world)
    view_dir = camera.position / np.linalg.norm(camera.position)
    normal = depth_map = None
    maps = ctx.out / "reference"
    if (maps / "normal.png").is_file():
        rgb = np.asarray(Image.open(maps / "normal.png").convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        normal = decode(torch.from_numpy(rgb).permute(2, 0, 1), REFERENCE_FILES)[0].to(device)
    if (maps / "depth.png").is_file():
        depth_map = torch.from_numpy(_read_grey(maps / "depth.png", size)).to(device, torch.float32)[..., None]
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return Reference(camera, mask, as_t(world), as_t(pixels), as_t(depth), as_t(view_dir), normal, depth_map)
