"""Tetrahedral grids: cubes split into 6 tets sharing the cube's main diagonal.

Vertices live on the integer lattice ``ijk ∈ [0, R]^3`` and map to world points
``-bound + ijk · 2·bound/R``.  The split (Kuhn/Freudenthal) is the same in every cube, so tets of
neighbouring cubes meet face to face; every tet is positively oriented.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .cache import load_or_build

CORNERS = np.array([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=np.int64)
"""(8, 3) cube corner offsets; corner c has bits (x, y, z)."""


def _cube_templates() -> np.ndarray:
    """(6, 4) corner ids of the tets of one cube, each a monotone path 000 → 111."""
    tets = []
    for axes in itertools.permutations(range(3)):
        path = [np.zeros(3, dtype=np.int64)]
        for axis in axes:
            path.append(path[-1] + np.eye(3, dtype=np.int64)[axis])
        ids = [int(p[0] + 2 * p[1] + 4 * p[2]) for p in path]
        pts = CORNERS[ids]
        if np.linalg.det((pts[1:] - pts[0]).astype(float)) < 0:
            ids[2], ids[3] = ids[3], ids[2]
        tets.append(ids)
    return np.array(tets, dtype=np.int64)


CUBE_TETS = _cube_templates()


@dataclass
class TetGrid:
    """verts: (V, 3) float32 world positions; tets: (T, 4) int64, positively oriented."""

    verts: torch.Tensor
    tets: torch.Tensor
    resolution: int
    bound: float

    @property
    def spacing(self) -> float:
        return 2.0 * self.bound / self.resolution


def lattice_to_world(ijk: np.ndarray, resolution: int, bound: float) -> torch.Tensor:
    """(N, 3) integer lattice coordinates → (N, 3) float32 world points."""
    return torch.from_numpy(ijk.astype(np.float32) * np.float32(2.0 * bound / resolution) - np.float32(bound))


def _keys(ijk: np.ndarray, resolution: int) -> np.ndarray:
    n = resolution + 1
    return (ijk[..., 0] * n + ijk[..., 1]) * n + ijk[..., 2]


def cube_corners(cubes: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Shared corners of a set of cubes.

    cubes: (C, 3) int64 lower-corner lattice coords.  Returns the (V, 3) int64 unique corner lattice
    coords and (C, 8) int64 indices into them (corner order of ``CORNERS``).
    """
    unique, inverse = np.unique(_keys(cubes[:, None, :] + CORNERS[None], resolution), return_inverse=True)
    n = resolution + 1
    ijk = np.stack([unique // (n * n), (unique // n) % n, unique % n], 1)
    return ijk, inverse.reshape(-1, 8)


def tets_from_cubes(cubes: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) int64 vertex lattice coords and (6C, 4) int64 tets of (C, 3) cubes, vertices shared."""
    ijk, corners = cube_corners(cubes, resolution)
    return ijk, corners[:, CUBE_TETS].reshape(-1, 4)


def _build_dense(resolution: int) -> dict[str, np.ndarray]:
    axis = np.arange(resolution + 1, dtype=np.int32)
    ijk = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    cubes = np.stack(np.meshgrid(*[axis[:-1]] * 3, indexing="ij"), -1).reshape(-1, 3).astype(np.int64)
    corner_ids = _keys(cubes[:, None, :] + CORNERS[None], resolution)
    tets = corner_ids[:, CUBE_TETS].reshape(-1, 4).astype(np.int32)
    return {"ijk": ijk, "tets": tets}


def dense_lattice(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) int32 lattice coords and (6R³, 4) int32 tets of the full grid, cached on disk."""
    arrays = load_or_build(f"tetgrids/dense_r{resolution}_v1.npz", lambda: _build_dense(resolution))
    return arrays["ijk"], arrays["tets"]


def dense_grid(resolution: int, bound: float = 1.0) -> TetGrid:
    """The full tet grid of ``resolution`` cubes per axis over ``[-bound, bound]^3``."""
    ijk, tets = dense_lattice(resolution)
    return TetGrid(lattice_to_world(ijk, resolution, bound), torch.from_numpy(tets.astype(np.int64)), resolution, bound)
