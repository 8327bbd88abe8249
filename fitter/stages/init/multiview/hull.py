"""Visual hull of silhouettes as an approximate signed distance field.

Each view contributes the 2D signed distance to its silhouette at a point's projection, turned into
world units at the point's depth; the hull's field is the largest of them (negative only where
every view sees foreground). Its zero set is the visual hull with sub-pixel accuracy; its values
under-estimate the true distance, which is all an initial field needs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from representations.cameras import Camera


def silhouette_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32 signed distance in pixels to the boundary of ``mask > 0.5``, negative inside."""
    inside = mask > 0.5
    return (ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)).astype(np.float32)


def _sample(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear samples of an (H, W) image at (N, 2) pixel positions (x, y), clamped at the border."""
    h, w = image.shape
    grid = torch.from_numpy(np.stack([pixels[:, 0] * (2.0 / w) - 1.0, pixels[:, 1] * (2.0 / h) - 1.0], -1)).float()
    out = F.grid_sample(torch.from_numpy(image)[None, None], grid.view(1, 1, -1, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out.view(-1).double().numpy()


def view_distance(mask: np.ndarray, camera: Camera, points: np.ndarray) -> np.ndarray:
    """(N,) world-unit distance of (N, 3) points from one view's silhouette cone (negative inside)."""
    pixels, depth = camera.project(points)
    beyond = np.hypot(np.clip(-pixels[:, 0], 0, None) + np.clip(pixels[:, 0] - camera.width, 0, None),
                      np.clip(-pixels[:, 1], 0, None) + np.clip(pixels[:, 1] - camera.height, 0, None))
    distance_px = _sample(silhouette_distance(mask), pixels) + beyond
    return distance_px * np.maximum(depth, 1e-6) / camera.fy


def visual_hull_sdf(masks: Sequence[np.ndarray], cameras: Sequence[Camera], points: torch.Tensor) -> torch.Tensor:
    """(N,) float32 hull field at (N, 3) world points; masks are (H, W) in [0, 1] matching the cameras."""
    p = points.detach().cpu().double().numpy()
    field = np.full(len(p), -np.inf)
    for mask, camera in zip(masks, cameras):
        field = np.maximum(field, view_distance(np.asarray(mask), camera, p))
    return torch.from_numpy(field).float().to(points.device)
