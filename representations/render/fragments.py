"""Rasterised fragments and differentiable, perspective-correct attribute interpolation.

Fragments are stored packed: only covered pixels, as flat pixel indices with their triangle and
barycentrics. Both backends produce this form, so interpolation and shading are shared code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Fragments:
    """What the raster saw at one camera.

    Attributes:
        triangle_id: (H, W) long, the visible triangle per pixel, -1 for background (no grad).
        depth: (H, W) view-axis depth of the visible surface, 0 for background (no grad; use the
            `depth` pass for a differentiable one).
        pixel: (N,) long flat indices (row * W + col) of the covered pixels.
        face: (N,) long triangle of each covered pixel.
        bary: (N, 3) perspective-correct barycentrics (differentiable w.r.t. ``clip``).
        clip: (V, 4) clip-space vertex positions the fragments came from.
        faces: (F, 3) long the rasterised faces.
        extra: backend-specific data (e.g. nvdiffrast's raster output for its antialias).
    """

    triangle_id: Tensor
    depth: Tensor
    pixel: Tensor
    face: Tensor
    bary: Tensor
    clip: Tensor
    faces: Tensor
    extra: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return self.triangle_id.shape[0]

    @property
    def width(self) -> int:
        return self.triangle_id.shape[1]

    @property
    def covered(self) -> Tensor:
        """(H, W) bool hard coverage."""
        return self.triangle_id >= 0


def pixel_ndc(pixel: Tensor, height: int, width: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """NDC (x, y) of flat pixel indices' centres, each (N,); NDC y = +1 is the top of row 0."""
    row, col = pixel // width, pixel % width
    x = (col.to(dtype) + 0.5) * (2.0 / width) - 1.0
    y = 1.0 - (row.to(dtype) + 0.5) * (2.0 / height)
    return x, y


def gather_corners(table: Tensor, corner_index: Tensor) -> Tensor:
    """(N, 3, C) rows of ``table`` (A, C) at ``corner_index`` (N, 3). (index_select: its backward
    is an index_add, much cheaper on CPU than advanced indexing's.)"""
    return table.index_select(0, corner_index.reshape(-1)).view(*corner_index.shape, table.shape[1])


def corner_edge_planes(clip: Tensor, faces: Tensor, face: Tensor) -> Tensor:
    """(N, 3, 3) homogeneous 2D edge planes of each fragment's triangle.

    Row k is h_{k+1} x h_{k+2} with h = (x, y, w) in clip space; its dot product with a pixel's
    (x_ndc, y_ndc, 1) is proportional to the perspective-correct barycentric of corner k
    (2D homogeneous rasterisation), so no division by w is needed until normalising.
    """
    h = gather_corners(clip, faces.index_select(0, face))[..., [0, 1, 3]]  # (N, 3 corners, 3)
    return torch.cross(h.roll(-1, dims=1), h.roll(-2, dims=1), dim=-1)


def perspective_barycentrics(clip: Tensor, faces: Tensor, face: Tensor, pixel: Tensor, height: int, width: int) -> Tensor:
    """(N, 3) perspective-correct barycentrics of pixel centres in their triangles, differentiable
    w.r.t. ``clip`` (V, 4)."""
    planes = corner_edge_planes(clip, faces, face)
    x, y = pixel_ndc(pixel, height, width, clip.dtype)
    weights = planes[..., 0] * x[:, None] + planes[..., 1] * y[:, None] + planes[..., 2]
    return weights / weights.sum(dim=1, keepdim=True)


def interpolate_packed(attr: Tensor, frags: Fragments, attr_faces: Tensor | None = None) -> Tensor:
    """Attributes at the covered pixels, (N, C).

    Args:
        attr: (V, C) per-vertex attributes indexed by ``frags.faces``, or (A, C) indexed by
            ``attr_faces`` (F, 3) (e.g. UVs with seams).
    """
    index = frags.faces if attr_faces is None else attr_faces.to(frags.faces.device).long()
    corners = gather_corners(attr, index.index_select(0, frags.face))
    return (frags.bary.unsqueeze(-1).to(attr.dtype) * corners).sum(dim=1)


def scatter_image(values: Tensor, frags: Fragments, background: float | Tensor = 0.0) -> Tensor:
    """Place packed values (N, C) into an (H, W, C) image; ``background`` (scalar or (C,)) elsewhere."""
    channels = values.shape[1]
    image = torch.empty(frags.height * frags.width, channels, dtype=values.dtype, device=values.device)
    image[:] = torch.as_tensor(background, dtype=values.dtype, device=values.device)
    return image.index_copy(0, frags.pixel, values).view(frags.height, frags.width, channels)


def interpolate(attr: Tensor, frags: Fragments, attr_faces: Tensor | None = None) -> Tensor:
    """(H, W, C) perspective-correct interpolation of ``attr`` (see `interpolate_packed`), zero on the
    background. Gradients reach ``attr`` and, through the barycentrics, the vertex positions."""
    return scatter_image(interpolate_packed(attr, frags, attr_faces), frags)
