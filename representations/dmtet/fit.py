"""Training samples for fitting a learned SDF to an analytic shape or to a mesh."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch
import trimesh

from .mesh_sdf import mesh_signed_distance

Target = Callable[[torch.Tensor], torch.Tensor] | trimesh.Trimesh
"""An analytic SDF (N, 3) → (N,), negative inside, or a (closed) triangle mesh."""


class SdfSampler(Protocol):
    def __call__(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 3) float32 points and their (n,) target signed distances."""


def analytic_sampler(sdf: Callable[[torch.Tensor], torch.Tensor], bound: float, generator: torch.Generator) -> SdfSampler:
    """Half uniform points in the box, half the points nearest the surface out of 4n uniform ones."""

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pool = (torch.rand(4 * n, 3, generator=generator) * 2 - 1) * bound
        with torch.no_grad():
            values = sdf(pool).reshape(-1).float()
        near = values.abs().argsort()[: n // 2]
        uniform = torch.randperm(4 * n, generator=generator)[: n - n // 2]
        chosen = torch.cat([near, uniform])
        return pool[chosen], values[chosen]

    return sample


def mesh_sampler(mesh: trimesh.Trimesh, bound: float, generator: torch.Generator, pool_size: int = 200_000) -> SdfSampler:
    """Minibatches from a fixed pool: surface points jittered at two scales, plus uniform points.

    Signed distances are computed once for the whole pool (the expensive part).
    """
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    n_surf = pool_size * 3 // 8
    surface, _ = trimesh.sample.sample_surface(mesh, 2 * n_surf, seed=rng)
    sigma = np.repeat([0.01 * bound, 0.05 * bound], n_surf)[:, None]
    jittered = surface + rng.normal(size=surface.shape) * sigma
    uniform = rng.uniform(-bound, bound, size=(pool_size - 2 * n_surf, 3))
    points = np.clip(np.concatenate([jittered, uniform]), -bound, bound)
    values = mesh_signed_distance(mesh, points)
    points_t, values_t = torch.from_numpy(points).float(), torch.from_numpy(values).float()

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, points_t.shape[0], (n,), generator=generator)
        return points_t[idx], values_t[idx]

    return sample


def make_sampler(target: Target, bound: float, generator: torch.Generator, pool_size: int = 200_000) -> SdfSampler:
    """Sampler for an analytic SDF or a trimesh mesh (``pool_size`` precomputed samples)."""
    if isinstance(target, trimesh.Trimesh):
        return mesh_sampler(target, bound, generator, pool_size)
    if callable(target):
        return analytic_sampler(target, bound, generator)
    raise TypeError(f"target must be a callable SDF or a trimesh.Trimesh, got {type(target).__name__}")
