"""UV texture lookup: bilinear within a mip level, trilinear across levels.

UV convention (as OBJ/trimesh): u grows to the right, v grows UP; a texture image (Th, Tw, C) has
row 0 at the top, so uv (0, 0) is its bottom-left corner and texel (r, c) covers
u in [c, c + 1] / Tw, v in [1 - (r + 1) / Th, 1 - r / Th].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from representations.render.fragments import Fragments, corner_edge_planes, pixel_ndc


def mip_pyramid(texture: Tensor) -> list[Tensor]:
    """Levels (1, C, h, w) of a (Th, Tw, C) texture, each a 2x2 box-filtered half of the last, down
    to one texel on the shorter side. Differentiable w.r.t. the texture."""
    level = texture.permute(2, 0, 1)[None]
    levels = [level]
    while min(level.shape[-2:]) > 1:
        level = F.avg_pool2d(level, 2)
        levels.append(level)
    return levels


def uv_to_grid(uv: Tensor) -> Tensor:
    """grid_sample coordinates (align_corners=False) of uv (..., 2)."""
    return torch.stack([uv[..., 0] * 2.0 - 1.0, 1.0 - uv[..., 1] * 2.0], dim=-1)


def sample_bilinear(level: Tensor, uv: Tensor) -> Tensor:
    """(N, C) bilinear samples of one level (1, C, h, w) at uv (N, 2), clamped at the border."""
    grid = uv_to_grid(uv).to(level.dtype).view(1, 1, -1, 2)
    return F.grid_sample(level, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


def uv_screen_derivatives(uv_attr: Tensor, uv_faces: Tensor, frags: Fragments) -> tuple[Tensor, Tensor]:
    """d(uv)/d(pixel x) and d(uv)/d(pixel y), each (N, 2), at the covered pixels (no grad).

    With corner weights a_k = e_k . (x, y, 1) (see `corner_edge_planes`) and S = sum a_k, the
    barycentric b_k = a_k / S has d b_k / dx = (e_k.x - b_k sum_j e_j.x) / S, likewise for y.
    """
    with torch.no_grad():
        planes = corner_edge_planes(frags.clip.detach(), frags.faces, frags.face)
        x, y = pixel_ndc(frags.pixel, frags.height, frags.width, planes.dtype)
        weights = planes[..., 0] * x[:, None] + planes[..., 1] * y[:, None] + planes[..., 2]
        total = weights.sum(dim=1, keepdim=True)
        bary = weights / total
        corner_uv = uv_attr.detach().to(planes.dtype)[uv_faces[frags.face]]  # (N, 3, 2)
        derivs = []
        for axis, pixel_scale in ((0, 2.0 / frags.width), (1, -2.0 / frags.height)):
            d_plane = planes[..., axis]
            d_bary = (d_plane - bary * d_plane.sum(dim=1, keepdim=True)) / total
            derivs.append((d_bary.unsqueeze(-1) * corner_uv).sum(dim=1) * pixel_scale)
    return derivs[0], derivs[1]


def mip_level(du_dx: Tensor, du_dy: Tensor, texture_hw: tuple[int, int], n_levels: int) -> Tensor:
    """(N,) fractional mip level from the texel footprint of one pixel (the longer of its two axes)."""
    scale = torch.tensor([texture_hw[1], texture_hw[0]], dtype=du_dx.dtype, device=du_dx.device)
    footprint = torch.maximum((du_dx * scale).norm(dim=1), (du_dy * scale).norm(dim=1))
    return torch.log2(footprint.clamp_min(1e-12)).clamp(0.0, n_levels - 1)


def sample_trilinear(levels: list[Tensor], uv: Tensor, level: Tensor) -> Tensor:
    """(N, C) samples at uv (N, 2), blending the two mip levels around ``level`` (N,)."""
    lower = level.floor().long()
    frac = (level - lower.to(level.dtype)).unsqueeze(1)
    out = torch.zeros(uv.shape[0], levels[0].shape[1], dtype=levels[0].dtype, device=uv.device)
    for index in torch.unique(lower).tolist():
        sel = torch.nonzero(lower == index).squeeze(1)
        colour = sample_bilinear(levels[index], uv[sel])
        if index + 1 < len(levels):
            t = frac[sel].to(colour.dtype)
            colour = colour * (1.0 - t) + sample_bilinear(levels[index + 1], uv[sel]) * t
        out = out.index_copy(0, sel, colour)
    return out


def sample_texture(texture: Tensor, uv: Tensor, uv_faces: Tensor, frags: Fragments, uv_at_pixels: Tensor, mipmap: bool = True) -> Tensor:
    """(N, C) texture colour at the covered pixels.

    Args:
        texture: (Th, Tw, C); uv: (A, 2) UV attribute indexed by uv_faces (F, 3);
        uv_at_pixels: (N, 2) interpolated UVs (differentiable).
        mipmap: trilinear mip filtering (level from the UV screen derivatives); else bilinear.
    """
    if not mipmap:
        return sample_bilinear(texture.permute(2, 0, 1)[None], uv_at_pixels)
    levels = mip_pyramid(texture)
    du_dx, du_dy = uv_screen_derivatives(uv, uv_faces, frags)
    level = mip_level(du_dx, du_dy, (texture.shape[0], texture.shape[1]), len(levels))
    return sample_trilinear(levels, uv_at_pixels, level)
