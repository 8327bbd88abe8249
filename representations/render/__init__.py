"""Rasterisation: one `Rasterizer` interface over our numba/torch backend and nvdiffrast.

Single camera per call (loop over cameras for a batch). Conventions follow
`representations.cameras` (images with row 0 at the top) and `texture.py` (UV v grows upwards).
"""

from representations.render.fragments import Fragments, interpolate, interpolate_packed
from representations.render.nvdiffrast_backend import nvdiffrast_available
from representations.render.rasterizer import (
    PASSES,
    Rasterizer,
    default_rasterizer,
    render,
    resolve_backend,
    vertex_normals,
    world_to_clip,
)
from representations.render.texel import (
    TexelSurface,
    TexelView,
    back_project,
    combine_views,
    dilate_into_gutters,
    texel_surface,
    texel_visibility,
)
from representations.render.texture import mip_pyramid, sample_texture

__all__ = [
    "PASSES",
    "Fragments",
    "Rasterizer",
    "TexelSurface",
    "TexelView",
    "back_project",
    "combine_views",
    "default_rasterizer",
    "dilate_into_gutters",
    "interpolate",
    "interpolate_packed",
    "mip_pyramid",
    "nvdiffrast_available",
    "render",
    "resolve_backend",
    "sample_texture",
    "texel_surface",
    "texel_visibility",
    "vertex_normals",
    "world_to_clip",
]
