"""A rounded volume from the reference silhouette ("inflation"), for hair the template lacks.

A world point is inside when it projects inside the mask and lies within a half-thickness of the
head's centre plane. The half-thickness follows a circular profile of the distance to the mask's
edge, h = sqrt(d (2R - d)) with R the largest such distance (world units at the head's depth), so
cross-sections come out round instead of as thin sheets; it reaches less far towards the camera
than away from it, so the volume stays behind the face, which the template shapes. Rows below the
chin are left to the template's neck; the photo's borders count as outside, so hair cut off by the
crop ends there instead of running to infinity.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from representations.cameras import Camera

PAD_FRACTION = 0.25


class SilhouetteVolume:
    def __init__(self, mask: np.ndarray, camera: Camera, chin_row: float, front_ratio: float = 0.5, max_half_thickness: float = 0.85):
        """mask: (H, W) in [0, 1] seen by ``camera``; chin_row: the chin's image row at that size."""
        inside = mask > 0.5
        inside[int(np.ceil(chin_row - 0.04 * inside.shape[0])):, :] = False
        inside = ndimage.binary_opening(inside, iterations=2)
        pad = int(round(PAD_FRACTION * max(inside.shape)))
        inside = np.pad(inside, pad)
        signed_px = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
        self.camera = camera.cropped(-pad, -pad, camera.width + 2 * pad, camera.height + 2 * pad, camera.width + 2 * pad)
        self.centre_depth = float(-(camera.w2c[:3, 3])[2])  # depth of the world origin
        pixel_world = self.centre_depth / camera.fy
        self.signed = torch.from_numpy(signed_px * pixel_world).float()[None, None]
        self.radius = float(max(-self.signed.min(), 1e-6))
        self.front_ratio, self.max_half = front_ratio, max_half_thickness

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Approximate SDF (N,) of the inflated silhouette at world points (N, 3)."""
        cam = self.camera
        w2c = torch.as_tensor(cam.w2c, dtype=points.dtype, device=points.device)
        local = points @ w2c[:3, :3].T + w2c[:3, 3]
        depth = -local[:, 2]
        u = cam.cx + cam.fx * local[:, 0] / depth
        v = cam.cy - cam.fy * local[:, 1] / depth
        grid = torch.stack([u / cam.width * 2 - 1, v / cam.height * 2 - 1], dim=-1).reshape(1, 1, -1, 2)
        signed = F.grid_sample(self.signed.to(points), grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(-1)
        inner = (-signed).clamp(0.0, self.radius)
        half = (inner * (2 * self.radius - inner)).sqrt().clamp(max=self.max_half)
        behind = depth - self.centre_depth
        slab = torch.maximum(behind - half, -behind - self.front_ratio * half)
        return torch.maximum(signed, slab)
