"""Analytic signed distance functions (negative inside) for initialisation and tests."""

from __future__ import annotations

from typing import Sequence

import torch


def sphere_sdf(radius: float, centre: Sequence[float] = (0.0, 0.0, 0.0)):
    """Exact SDF of a sphere: (N, 3) → (N,)."""

    def sdf(points: torch.Tensor) -> torch.Tensor:
        return (points - points.new_tensor(centre)).norm(dim=-1) - radius

    return sdf


def ellipsoid_sdf(radii: Sequence[float], centre: Sequence[float] = (0.0, 0.0, 0.0)):
    """Approximate ellipsoid SDF ``k0 (k0 − 1) / k1`` (exact sign, distance within the radii ratio)."""

    def sdf(points: torch.Tensor) -> torch.Tensor:
        q = points - points.new_tensor(centre)
        r = points.new_tensor(radii)
        k0 = (q / r).norm(dim=-1)
        k1 = (q / (r * r)).norm(dim=-1).clamp_min(1e-12)
        return k0 * (k0 - 1.0) / k1

    return sdf
