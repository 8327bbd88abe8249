"""A signed distance field sampled on a cube grid, read back by trilinear interpolation.

Every init kind hands its shape to the geometry stage in this form (`init/sdf.npz`), so the
geometry stage needs no knowledge of how the init was made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from common import atomic


class GridSDF:
    """values: (N, N, N) with values[i, j, k] at (x_i, y_j, z_k), the axes spanning [-bound, bound]."""

    def __init__(self, values: torch.Tensor, bound: float):
        self.values = values.float()
        self.bound = float(bound)
        self._volume = self.values.permute(2, 1, 0)[None, None]  # grid_sample wants (D=z, H=y, W=x)

    @classmethod
    def from_function(cls, sdf: Callable[[torch.Tensor], torch.Tensor], resolution: int, bound: float) -> "GridSDF":
        axis = torch.linspace(-bound, bound, resolution, dtype=torch.float32)
        points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        with torch.no_grad():
            values = torch.cat([sdf(chunk) for chunk in points.split(1 << 18)])
        return cls(values.reshape(resolution, resolution, resolution), bound)

    @property
    def resolution(self) -> int:
        return int(self.values.shape[0])

    def closed(self) -> "GridSDF":
        """The same field made positive on the box faces, so its zero set is a closed surface."""
        values = self.values.clone()
        for axis in range(3):
            index = [slice(None)] * 3
            for end in (0, -1):
                index[axis] = end
                values[tuple(index)] = values[tuple(index)].clamp_min(2.0 * self.bound / (self.resolution - 1))
        return GridSDF(values, self.bound)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Trilinear SDF at points (..., 3); points outside the box take the value at its border."""
        volume = self._volume.to(points.device)
        grid = (points.float() / self.bound).reshape(1, 1, 1, -1, 3)
        out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.reshape(points.shape[:-1]).to(points.dtype)

    def save(self, path: Path) -> None:
        atomic.write_npz(path, values=self.values.numpy().astype(np.float32), bound=np.float32(self.bound))

    @classmethod
    def load(cls, path: Path) -> "GridSDF":
        with np.load(path, allow_pickle=False) as data:
            return cls(torch.from_numpy(data["values"]), float(data["bound"]))
