"""Tri-grid features, the MLP decoder and the importance-sampled volume renderer (EG3D/PanoHead).

Coordinates here are PanoHead world coordinates (see `camera.py`). The tri-grid is three planes of
C channels × D depth slices; a point p is scaled by 2/box_warp and read by trilinear interpolation
(align_corners=False, zeros outside) from plane 0 at (x, y, z), plane 1 at (x, z, y) and plane 2 at
(y, z, x) as (W, H, D) coordinates, which is where the official plane axes put them. The features
of the three planes are averaged and decoded to a raw density σ and C features (channel 0 of the
decoder output is σ). Density for compositing is softplus(σ − 1) (MipNeRF-style midpoint rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from guidance.panohead.layers import FullyConnectedLayer

PLANE_AXES = ((0, 1, 2), (0, 2, 1), (1, 2, 0))
CROPPED_DENSITY = -1e3


def sample_trigrid(planes: Tensor, points: Tensor, box_warp: float) -> Tensor:
    """planes (N, 3, C, D, H, W), points (N, M, 3) -> features (N, 3, M, C)."""
    n, n_planes, c, d, h, w = planes.shape
    scaled = points * (2.0 / box_warp)
    grids = torch.stack([scaled[..., list(axes)] for axes in PLANE_AXES], dim=1)  # (N, 3, M, 3)
    out = F.grid_sample(planes.reshape(n * n_planes, c, d, h, w), grids.reshape(n * n_planes, 1, 1, -1, 3),
                        mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(n, n_planes, c, -1).permute(0, 1, 3, 2)


class OSGDecoder(nn.Module):
    """Mean of the plane features -> FC 64, softplus, FC (1 + out) -> σ and features."""

    def __init__(self, n_features: int, out_features: int, lr_multiplier: float = 1.0, activation: str = "sigmoid", hidden: int = 64):
        super().__init__()
        self.activation = activation
        self.net = nn.Sequential(FullyConnectedLayer(n_features, hidden, lr_multiplier=lr_multiplier), nn.Softplus(),
                                 FullyConnectedLayer(hidden, 1 + out_features, lr_multiplier=lr_multiplier))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """features (N, 3, M, C) -> sigma (N, M, 1), rgb/features (N, M, out)."""
        x = features.mean(1)
        n, m, c = x.shape
        x = self.net(x.reshape(n * m, c)).reshape(n, m, -1)
        sigma, rgb = x[..., :1], x[..., 1:]
        if self.activation == "sigmoid":
            rgb = torch.sigmoid(rgb) * (1 + 2 * 0.001) - 0.001
        elif self.activation == "lrelu":
            rgb = F.leaky_relu(rgb, 0.2) * 2 ** 0.5
        return sigma, rgb


@dataclass
class RenderOptions:
    box_warp: float = 1.0
    ray_start: Union[float, str] = 2.25
    ray_end: Union[float, str] = 3.3
    depth_resolution: int = 48
    depth_resolution_importance: int = 48
    triplane_crop: float = 0.1
    white_back: bool = False


def rays(cam2world: Tensor, intrinsics: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """OpenCV cam2world (N, 4, 4), normalised intrinsics (N, 3, 3) -> origins, unit directions (N, R², 3).

    Pixel (i, j) is sampled at its centre ((j + 0.5)/R, (i + 0.5)/R), row 0 at the top."""
    centres = (torch.arange(resolution, dtype=torch.float32, device=cam2world.device) + 0.5) / resolution
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    fx, fy, cx, cy = (intrinsics[:, a, b][:, None] for a, b in ((0, 0), (1, 1), (0, 2), (1, 2)))
    x = (u.reshape(1, -1) - cx) / fx
    y = (v.reshape(1, -1) - cy) / fy
    cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (N, R², 3)
    dirs = F.normalize(cam @ cam2world[:, :3, :3].transpose(1, 2), dim=-1)
    return cam2world[:, None, :3, 3].expand_as(dirs), dirs


def box_ray_limits(origins: Tensor, dirs: Tensor, half: float) -> tuple[Tensor, Tensor]:
    """Entry/exit distances (N, M, 1) of rays through the cube [-half, half]³ (slab method);
    rays that miss get the closest hit's range."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (-half - origins) / safe, (half - origins) / safe
    near = torch.minimum(t0, t1).amax(-1, keepdim=True)
    far = torch.maximum(t0, t1).amin(-1, keepdim=True)
    hit = far > near
    if hit.any():
        lowest, highest = near[hit].min(), near[hit].max()
        near, far = torch.where(hit, near, lowest), torch.where(hit, far, highest)
    return near, far


def stratified_depths(origins: Tensor, dirs: Tensor, options: RenderOptions, jitter: bool) -> Tensor:
    """(N, M, S, 1) sample depths between the near and far limits, jittered within each bin."""
    n, m, _ = origins.shape
    s = options.depth_resolution
    if options.ray_start == "auto" or options.ray_end == "auto":
        near, far = box_ray_limits(origins, dirs, options.box_warp / 2)
    else:
        near = torch.full((n, m, 1), float(options.ray_start), device=origins.device)
        far = torch.full((n, m, 1), float(options.ray_end), device=origins.device)
    steps = torch.linspace(0, 1, s, device=origins.device)
    depths = near[..., None, :] + (far - near)[..., None, :] * steps[:, None]
    delta = (far - near)[..., None, :] / (s - 1)
    offset = torch.rand_like(depths) if jitter else torch.full_like(depths, 0.5)
    return depths + offset * delta


def composite(colors: Tensor, sigma: Tensor, depths: Tensor, white_back: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Midpoint-rule compositing. colors (N, M, S, C), sigma/depths (N, M, S, 1) ->
    rgb (N, M, C), depth (N, M, 1), weights (N, M, S-1, 1)."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    density = F.softplus((sigma[:, :, :-1] + sigma[:, :, 1:]) / 2 - 1)
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-density * deltas)
    transmit = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2), dim=-2)[:, :, :-1]
    weights = alpha * transmit
    rgb = (weights * colors_mid).sum(-2)
    total = weights.sum(-2)
    depth = torch.nan_to_num((weights * depths_mid).sum(-2) / total, float("inf"))
    depth = depth.clamp(depths.min(), depths.max())
    if white_back:
        rgb = rgb + 1 - total
    return rgb, depth, weights


def importance_depths(depths: Tensor, weights: Tensor, count: int, jitter: bool) -> Tensor:
    """(N, M, count, 1) depths drawn from the smoothed coarse weights (inverse-CDF), no gradient."""
    with torch.no_grad():
        n, m, s, _ = depths.shape
        z = depths.reshape(n * m, s)
        w = weights.reshape(n * m, -1)[:, None]
        w = F.avg_pool1d(F.max_pool1d(w, 2, 1, padding=1), 2, 1)[:, 0] + 0.01
        bins, w = 0.5 * (z[:, :-1] + z[:, 1:]), w[:, 1:-1] + 1e-5
        cdf = torch.cat([torch.zeros_like(w[:, :1]), torch.cumsum(w / w.sum(-1, keepdim=True), -1)], -1)
        u = torch.rand(n * m, count, device=z.device) if jitter else torch.linspace(0, 1, count, device=z.device).expand(n * m, count)
        idx = torch.searchsorted(cdf, u.contiguous(), right=True)
        below, above = (idx - 1).clamp_min(0), idx.clamp_max(w.shape[1])
        cdf_lo, cdf_hi = cdf.gather(1, below), cdf.gather(1, above)
        bin_lo, bin_hi = bins.gather(1, below), bins.gather(1, above)
        denom = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
        samples = bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)
    return samples.reshape(n, m, count, 1)


def crop_outside(sigma: Tensor, points: Tensor, options: RenderOptions) -> Tensor:
    """σ set to -1000 where |x| or |z| exceeds box_warp/2 − triplane_crop (the official crop)."""
    if not options.triplane_crop:
        return sigma
    limit = options.box_warp / 2 - options.triplane_crop
    outside = (points[..., [0, 2]].abs() > limit).any(-1, keepdim=True)
    return torch.where(outside, torch.full_like(sigma, CROPPED_DENSITY), sigma)


class TriGridRenderer:
    """Coarse stratified pass, importance pass, merged and sorted samples, composited."""

    def __init__(self, options: RenderOptions):
        self.options = options

    def query(self, planes: Tensor, decoder: OSGDecoder, points: Tensor) -> tuple[Tensor, Tensor]:
        """points (N, M, 3) -> σ (N, M, 1) (cropped), features (N, M, C)."""
        sigma, rgb = decoder(sample_trigrid(planes, points, self.options.box_warp))
        return crop_outside(sigma, points, self.options), rgb

    def _pass(self, planes: Tensor, decoder: OSGDecoder, origins: Tensor, dirs: Tensor, depths: Tensor) -> tuple[Tensor, Tensor]:
        n, m, s, _ = depths.shape
        points = (origins[:, :, None] + depths * dirs[:, :, None]).reshape(n, m * s, 3)
        sigma, rgb = self.query(planes, decoder, points)
        return sigma.reshape(n, m, s, 1), rgb.reshape(n, m, s, -1)

    def __call__(self, planes: Tensor, decoder: OSGDecoder, origins: Tensor, dirs: Tensor, jitter: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """-> features (N, M, C), depth (N, M, 1), opacity (N, M, 1)."""
        depths = stratified_depths(origins, dirs, self.options, jitter)
        sigma, rgb = self._pass(planes, decoder, origins, dirs, depths)
        if self.options.depth_resolution_importance > 0:
            _, _, weights = composite(rgb, sigma, depths)
            fine = importance_depths(depths, weights, self.options.depth_resolution_importance, jitter)
            sigma_f, rgb_f = self._pass(planes, decoder, origins, dirs, fine)
            depths, order = torch.sort(torch.cat([depths, fine], -2), dim=-2)
            sigma = torch.cat([sigma, sigma_f], -2).gather(-2, order)
            rgb = torch.cat([rgb, rgb_f], -2).gather(-2, order.expand(-1, -1, -1, rgb.shape[-1]))
        feats, depth, weights = composite(rgb, sigma, depths, self.options.white_back)
        return feats, depth, weights.sum(-2)
