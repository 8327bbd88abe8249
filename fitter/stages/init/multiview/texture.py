"""The initial texture: the views back-projected into a UV atlas of the fitted surface."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from common.errors import UserError
from fitter.stages.init.multiview.fit import ColourVolume
from fitter.stages.init.multiview.loading import ViewSet
from representations.mesh import Mesh, UnwrapOptions, UVUnwrapError, unwrap_uv, uv_to_pixel
from representations.render import combine_views, texel_surface
from representations.render.texel import dilate_into_gutters, sample_image

MIN_COSINE = 0.1
"""A view colours a texel only where the surface faces it at least this much."""


@dataclass
class BakedTexture:
    mesh: Mesh
    """The surface (decimated to ``max_faces``) with uv, uv_faces and texture (T, T, 3)."""
    seen_fraction: float
    """Share of the atlas texels that some view saw; the rest come from the fit's colour volume."""


def bake_texture(mesh: Mesh, views: ViewSet, colour: ColourVolume, resolution: int, max_faces: int) -> BakedTexture:
    """Blend the views into a (resolution²) texture (cosine² weights, inside their masks); texels no
    view sees take the colour volume's value at their 3D position; chart gutters are dilated."""
    try:
        unwrapped = unwrap_uv(mesh, resolution, UnwrapOptions(padding=2, max_faces=max_faces))
    except UVUnwrapError as exc:
        raise UserError(f"multi-view init: UV unwrap failed: {exc}") from None
    surface = texel_surface(unwrapped.verts, unwrapped.faces, unwrapped.uv, unwrapped.uv_faces, resolution)
    texture, coverage = combine_views(list(views.images), views.cameras, surface, list(views.masks), min_cosine=MIN_COSINE)
    seen = (coverage > 0) & surface.valid
    with torch.no_grad():
        fill = colour(surface.position.reshape(-1, 3)).reshape(resolution, resolution, 3)
    texture = torch.where(seen[..., None], texture, fill).clamp(0.0, 1.0)
    texture = dilate_into_gutters(texture, surface.valid)
    valid = surface.valid.float()
    return BakedTexture(unwrapped.replace(texture=texture.float()), float((seen.float() * valid).sum() / valid.sum()))


SURFACE_SAMPLES = 300_000
"""Points sampled on a textured mesh to look colours up by position (spacing ~0.006 on a head)."""


def colours_near(textured: Mesh, points: torch.Tensor, samples: int = SURFACE_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Texture colours (N, 3) of ``textured`` at the surface points nearest to (N, 3) ``points``
    (inverse-distance blend of the 4 nearest of ``samples`` points sampled on its surface)."""
    tm = trimesh.Trimesh(textured.verts.double().numpy(), textured.faces.numpy(), process=False)
    where, face = trimesh.sample.sample_surface(tm, samples, seed=seed)
    bary = trimesh.triangles.points_to_barycentric(tm.triangles[face], where)
    uv = (textured.uv.double().numpy()[textured.uv_faces.numpy()[face]] * bary[..., None]).sum(axis=1)
    size = textured.texture.shape[0]
    pixel = uv_to_pixel(torch.from_numpy(uv), size, size)
    colour = sample_image(textured.texture.double(), pixel).numpy()
    distance, nearest = cKDTree(where).query(points.detach().double().cpu().numpy(), k=4)
    weight = 1.0 / np.maximum(distance, 1e-6)
    weight /= weight.sum(axis=1, keepdims=True)
    return torch.from_numpy((colour[nearest] * weight[..., None]).sum(axis=1)).to(points)
