"""Loss terms of the geometry stage. Each is small, unweighted, and named `loss_*`; the stage
multiplies it by its `lambda_*` from the config."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from representations.render.texel import sample_image

SdfFn = Callable[[Tensor], Tensor]


def loss_mask(rendered: Tensor, target: Tensor) -> Tensor:
    """MSE between an antialiased rendered mask (H, W, 1) and the reference mask (H, W, 1)."""
    return F.mse_loss(rendered, target)


def loss_landmarks_on_surface(sdf: SdfFn, landmarks: Tensor) -> Tensor:
    """The 3D landmarks (N, 3) lie on the surface: mean squared SDF there."""
    return sdf(landmarks).square().mean()


def loss_landmarks_depth(depth: Tensor, coverage: Tensor, pixels: Tensor, target_depth: Tensor) -> Tensor:
    """The rendered surface at each landmark's pixel sits at the landmark's depth.

    depth, coverage: (H, W, 1) renders; pixels (N, 2) landmark positions at that resolution;
    target_depth (N,). Landmarks whose pixel the surface does not cover yet are left to the mask
    and on-surface terms. Normalised by the target depth so the scale does not depend on distance.
    """
    seen = sample_image(coverage, pixels)[:, 0] > 0.99
    if not bool(seen.any()):
        return depth.sum() * 0.0
    rendered = sample_image(depth, pixels)[:, 0]
    return ((rendered[seen] - target_depth[seen]) / target_depth[seen]).square().mean()


def loss_symmetry(sdf: SdfFn, points: Tensor, view_dir: Tensor) -> Tensor:
    """Left-right symmetry for the side the reference view did not see.

    For each point (N, 3) and its mirror image (x -> -x), the one facing the reference camera
    better (direction ``view_dir`` (3,) from the head towards the camera) is the target, held
    fixed; the other is pulled to it. A frontal view pulls both sides towards each other weakly.
    """
    mirrored = points * points.new_tensor([-1.0, 1.0, 1.0])
    facing = F.normalize(points, dim=-1) @ view_dir
    facing_mirror = F.normalize(mirrored, dim=-1) @ view_dir
    seen_first = (facing >= facing_mirror)[:, None]
    seen = torch.where(seen_first, points, mirrored)
    unseen = torch.where(seen_first, mirrored, points)
    return (sdf(unseen) - sdf(seen).detach()).square().mean()


def loss_prior(sdf: SdfFn, prior: SdfFn, points: Tensor, band: float) -> Tensor:
    """Stay near the init where nothing else decides: SDF difference to the init, clamped to a band."""
    with torch.no_grad():
        target = prior(points).clamp(-band, band)
    return (sdf(points).clamp(-band, band) - target).square().mean()


def loss_prior_surface(sdf: SdfFn, points: Tensor, weights: Tensor) -> Tensor:
    """The surface passes through the parametric prior's skin points (N, 3) where the photo says little:
    mean squared SDF there, weighted (N,) by how little the reference view sees each point."""
    return (weights * sdf(points).square()).sum() / weights.sum().clamp_min(1e-12)


def loss_reference_normal(rendered: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """MSE between camera-space normals (H, W, 3) inside the reference mask (H, W, 1)."""
    weight = mask.expand_as(rendered)
    return ((rendered - target).square() * weight).sum() / weight.sum().clamp_min(1.0)


def loss_normal_cosine(rendered: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean 1 - cos between normals (H, W, 3) over the pixels where ``mask`` (H, W, 1) is set."""
    cos = F.cosine_similarity(rendered, target, dim=-1, eps=1e-8)[..., None]
    return ((1.0 - cos) * mask).sum() / mask.sum().clamp_min(1.0)


def _masked_values(depth: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    keep = mask[..., 0] > 0.5
    return depth[..., 0][keep], target[..., 0][keep]


def loss_reference_depth_mse(depth: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Scale/shift-aligned MSE of the rendered depth to a relative depth map, inside the mask.

    The target is known only up to an affine map, so the best scale and shift are solved in closed
    form (least squares, no gradient through them) and the residual is measured in units of the
    rendered depth's spread.
    """
    d, t = _masked_values(depth, target, mask)
    if d.numel() < 16:
        return depth.sum() * 0.0
    with torch.no_grad():
        a = torch.stack([t, torch.ones_like(t)], dim=1)
        scale, shift = torch.linalg.lstsq(a, d[:, None]).solution[:, 0]
        spread = d.std().clamp_min(1e-6)
    return ((d - (scale * t + shift)) / spread).square().mean()


def loss_reference_depth_pearson(depth: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """1 - Pearson correlation between the rendered and reference depth inside the mask."""
    d, t = _masked_values(depth, target, mask)
    if d.numel() < 16:
        return depth.sum() * 0.0
    d, t = d - d.mean(), t - t.mean()
    return 1.0 - (d * t).sum() / (d.norm() * t.norm()).clamp_min(1e-8)
