"""The prior fit's loss terms, one small function each (weights: `prior.lambda_*`).

Each takes a batch of B parameter sets' predictions. Each `loss_*` but the sparsity returns residuals r (B, m) whose
squared sum is the term's value (`value`), so that the Levenberg-Marquardt solver of fit.py can use their Jacobian;
the sparsity returns its value (B,), the L1 norm, linear on [0, 1]. Image terms are in pixels of the 512² crop, so
the landmark terms read as mean squared pixel errors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SILHOUETTE_TOLERANCE_PX = 1.0
"""Distances outside the mask up to this count as inside: the mask's own edge is that uncertain (and a vertex on
the edge of a head's own mask samples about half a pixel of the distance map)."""
CEPHALIC_BAND = (0.75, 0.85)
"""Cephalic index (the skull's greatest breadth over its greatest length, above the brows) of most adults: a photo
from the front fixes the breadth but says little about the length. `loss_cephalic`'s default; the fit takes its band
from `prior.cephalic_band`, which sits inside this range."""
DEPTH_SCALE_RANGE = (0.5, 2.0)
"""MediaPipe's relative depth is trusted up to a scale in this range (the best one is taken at each step)."""


def value(residuals: Tensor) -> Tensor:
    """(B,) a term's value from its residuals (B, m)."""
    return residuals.square().sum(-1)


def loss_landmarks(predicted: Tensor, target: Tensor) -> Tensor:
    """Projected landmarks (B, N, 2) against the photo's (N, 2): value = mean squared 2D distance (px²)."""
    return (predicted - target).flatten(1) / math.sqrt(len(target))


def loss_iris(predicted: Tensor, target: Tensor) -> Tensor:
    """The 10 iris points (each eye's centre and four rim points), as `loss_landmarks`."""
    return loss_landmarks(predicted, target)


def depth_scale(predicted_px: Tensor, target_z: Tensor) -> Tensor:
    """The scale in `DEPTH_SCALE_RANGE` that best maps centred MediaPipe z (N,) onto the centred predicted depths (N,),
    both in pixels (no gradient)."""
    pred, target = predicted_px.detach(), target_z - target_z.mean()
    return ((pred - pred.mean()) @ target / target.square().sum().clamp(min=1e-9)).clamp(*DEPTH_SCALE_RANGE)


def loss_landmark_depth(predicted_depth: Tensor, target_z: Tensor, target_mean_depth: float, focal: float, scale: Tensor) -> Tensor:
    """Depth of the landmarks (B, N) (view-axis, world units), in pixels at their distance (times ``focal`` / mean depth):

    * relative: centred, against MediaPipe's centred relative z (N,) times ``scale`` (`depth_scale`: MediaPipe's z
      is trusted up to a scale); value: mean squared difference (px²);
    * absolute: the mean depth against ``target_mean_depth``, the intake's world landmarks' (they sit at the
      canonical layout's distance, which is what fixes the world's scale: without it a larger head farther away
      would look the same); value: the squared offset (px²).
    """
    mean_depth = predicted_depth.mean(-1, keepdim=True)
    to_px = focal / target_mean_depth
    relative = ((predicted_depth - mean_depth) * to_px - scale * (target_z - target_z.mean())) / math.sqrt(len(target_z))
    return torch.cat([relative, (mean_depth - target_mean_depth) * to_px], dim=-1)


def loss_silhouette(outside_px: Tensor, num_vertices: int) -> Tensor:
    """One-sided silhouette (see targets.py): the distances (B, M) (px) of the vertices that project outside the photo's mask
    to it, less `SILHOUETTE_TOLERANCE_PX`; value: their squared sum over ``num_vertices`` (all of the head's), so a
    tenth of the head 2 px outside weighs as much as every landmark 0.63 px off."""
    return (outside_px - SILHOUETTE_TOLERANCE_PX).clamp(min=0) / math.sqrt(num_vertices)


def loss_cephalic(cranium: Tensor, band: tuple[float, float] = CEPHALIC_BAND) -> Tensor:
    """Skull points (B, N, 3) in the head's own frame (x across, y up, z forward): their x extent over their z
    extent, residual (B, 1) its distance to ``band`` (0 inside)."""
    breadth = cranium[..., 0].amax(1) - cranium[..., 0].amin(1)
    length = (cranium[..., 2].amax(1) - cranium[..., 2].amin(1)).clamp_min(1e-6)
    ratio = breadth / length
    return (torch.relu(ratio - band[1]) + torch.relu(band[0] - ratio))[:, None]


def loss_shape_prior(phenotype: Tensor, centre: Tensor, local: Tensor) -> Tensor:
    """The phenotype's (B, 6) distance from its centre and the local changes (B, K) (all in ranges of about 1)."""
    return torch.cat([phenotype - centre, local], dim=-1)


def loss_pose_prior(neck: Tensor, head: Tensor) -> Tensor:
    """Neck and head rotations (B, 3) each (rad): the similarity carries the head's pose, the bones bend little."""
    return torch.cat([neck, head], dim=-1)


def loss_expression_sparsity(facial: Tensor) -> Tensor:
    """L1 of the facial actions (B, 52) (all in [0, 1]): few actions, each no stronger than the photo needs."""
    return facial.abs().sum(-1)
