"""Narrow-band tet grids: only the cubes near a surface, found coarse-to-fine.

A dense 512 grid would have ~134M tets.  Instead the SDF is evaluated at the centres of a coarse
grid's cubes, cubes that cannot reach the band are dropped, the rest are split in 8, and so on; at
the finest level a cube is kept when one of its corners is within the band or its corners change
sign.  Only cubes of the final band (and their shared vertices) are ever materialised.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .grid import CORNERS, TetGrid, cube_corners, lattice_to_world, tets_from_cubes

SdfFn = Callable[[torch.Tensor], torch.Tensor]
"""(N, 3) float32 world points → (N,) signed distances, negative inside."""

LIPSCHITZ_SLACK = 1.5
"""Coarse culling assumes |∇sdf| ≤ this; learned SDFs are only roughly unit-gradient."""


@torch.no_grad()
def eval_chunked(sdf_fn: SdfFn, points: torch.Tensor, chunk: int = 2**17) -> torch.Tensor:
    """(N,) ``sdf_fn`` over (N, 3) points in chunks, without autograd."""
    if points.shape[0] == 0:
        return points.new_zeros(0)
    return torch.cat([sdf_fn(points[i : i + chunk]).reshape(-1) for i in range(0, points.shape[0], chunk)])


def _coarse_start(resolution: int, coarse_res: int) -> int:
    res = resolution
    while res % 2 == 0 and res > coarse_res:
        res //= 2
    return res


def band_cubes(
    sdf_fn: SdfFn, resolution: int, bound: float, band: float, coarse_res: int = 32,
    max_cubes: int = 8_000_000, device: torch.device | str = "cpu",
) -> np.ndarray:
    """(C, 3) int64 lower corners of the resolution-``resolution`` cubes within ``band`` grid spacings of the surface."""
    band_world = band * 2.0 * bound / resolution
    res = _coarse_start(resolution, coarse_res)
    axis = np.arange(res, dtype=np.int64)
    cubes = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    while res < resolution:
        spacing = 2.0 * bound / res
        centres = torch.from_numpy(((cubes + 0.5) * spacing - bound).astype(np.float32)).to(device)
        reach = LIPSCHITZ_SLACK * 0.5 * math.sqrt(3.0) * spacing + band_world
        cubes = cubes[(eval_chunked(sdf_fn, centres).abs() < reach).cpu().numpy()]
        cubes = (2 * cubes[:, None, :] + CORNERS[None]).reshape(-1, 3)
        res *= 2
        if cubes.shape[0] > max_cubes:
            raise RuntimeError(
                f"narrow band needs over {max_cubes} cubes at resolution {res}: the SDF has no thin "
                "surface yet (fit it first) or the band is too wide"
            )
    ijk, corner_ids = cube_corners(cubes, resolution)
    sdf = eval_chunked(sdf_fn, lattice_to_world(ijk, resolution, bound).to(device)).cpu()[torch.from_numpy(corner_ids)]
    near = (sdf.abs() < band_world).any(1)
    crossing = (sdf < 0).any(1) & (sdf >= 0).any(1)
    return cubes[(near | crossing).numpy()]


def band_grid(
    sdf_fn: SdfFn, resolution: int, bound: float = 1.0, band: float = 3.0, coarse_res: int = 32,
    max_cubes: int = 8_000_000, device: torch.device | str = "cpu",
) -> TetGrid:
    """Tet grid of the cubes within ``band`` grid spacings of the zero level set of ``sdf_fn``."""
    cubes = band_cubes(sdf_fn, resolution, bound, band, coarse_res, max_cubes, device)
    ijk, tets = tets_from_cubes(cubes, resolution)
    return TetGrid(lattice_to_world(ijk, resolution, bound), torch.from_numpy(tets), resolution, bound)
