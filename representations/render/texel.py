"""Per-texel surface, visibility and back-projection of images into UV space.

The mesh is rasterised in UV space (UV faces as positions) to find, for each texel centre, the 3D
point and normal it shows. A texel is visible from a camera when its projected depth matches that
camera's z-buffer and its normal faces the camera. Texel rows follow `texture.py` (row 0 = v 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from representations.cameras import Camera
from representations.render.fragments import interpolate
from representations.render.rasterizer import Rasterizer, default_rasterizer, vertex_normals


@dataclass
class TexelSurface:
    """What each texel of a (T, T) texture shows.

    Attributes:
        position: (T, T, 3) world position at the texel centre (0 where ``valid`` is False).
        normal: (T, T, 3) unit world normal there.
        valid: (T, T) bool, the texel centre lies inside some UV triangle.
        vertices, faces: the mesh (V, 3), (F, 3) used for the z-buffer.
    """

    position: Tensor
    normal: Tensor
    valid: Tensor
    vertices: Tensor
    faces: Tensor


@dataclass
class TexelView:
    """One camera's view of the texels.

    Attributes:
        pixel: (T, T, 2) image position (x, y) in pixels (pixel centres at +0.5).
        visible: (T, T) bool, valid, unoccluded, inside the image and facing the camera.
        cosine: (T, T) cosine between the normal and the direction to the camera.
    """

    pixel: Tensor
    visible: Tensor
    cosine: Tensor


def texel_surface(vertices: Tensor, faces: Tensor, uv: Tensor, uv_faces: Tensor | None, size: int, *, normals: Tensor | None = None, rasterizer: Rasterizer | None = None) -> TexelSurface:
    """Rasterise the mesh in UV space at ``size`` x ``size`` texels.

    Args:
        vertices (V, 3), faces (F, 3); uv (A, 2) indexed by uv_faces (F, 3), or (V, 2) with faces.
    """
    rasterizer = rasterizer or default_rasterizer("torch")
    faces = faces.to(vertices.device).long()
    uv_faces = faces if uv_faces is None else uv_faces.to(vertices.device).long()
    with torch.no_grad():
        uv = uv.detach().to(vertices.dtype)
        clip = torch.cat([uv * 2.0 - 1.0, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=1)
        frags = rasterizer.rasterize_clip(clip, uv_faces, size, size)
        frags.faces = faces  # the UV triangles' corners are these mesh vertices
        normals = vertex_normals(vertices, faces) if normals is None else normals
        position = interpolate(vertices.detach(), frags)
        normal = F.normalize(interpolate(normals.detach(), frags), dim=-1, eps=1e-12)
    return TexelSurface(position, normal, frags.covered, vertices.detach(), faces)


def texel_visibility(surface: TexelSurface, camera: Camera, *, depth_tolerance: float = 0.01, min_cosine: float = 0.0, rasterizer: Rasterizer | None = None) -> TexelView:
    """Which texels ``camera`` sees. ``depth_tolerance`` is relative to the texel's depth."""
    rasterizer = rasterizer or default_rasterizer("torch")
    with torch.no_grad():
        zbuffer = rasterizer.rasterize(surface.vertices, surface.faces, camera).depth
        points = surface.position.reshape(-1, 3).to("cpu", torch.float64).numpy()
        pixel_np, depth_np = camera.project(points)
        device, dtype = surface.position.device, surface.position.dtype
        pixel = torch.from_numpy(pixel_np).to(device, dtype).view(*surface.valid.shape, 2)
        depth = torch.from_numpy(depth_np).to(device, dtype).view(surface.valid.shape)
        col, row = pixel[..., 0].floor().long(), pixel[..., 1].floor().long()
        inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height) & (depth > 0)
        seen_depth = zbuffer[row.clamp(0, camera.height - 1), col.clamp(0, camera.width - 1)]
        unoccluded = (seen_depth - depth).abs() <= depth_tolerance * depth
        to_camera = F.normalize(torch.as_tensor(camera.position, dtype=dtype, device=device) - surface.position, dim=-1)
        cosine = (to_camera * surface.normal).sum(dim=-1) * surface.valid
        visible = surface.valid & inside & unoccluded & (cosine > min_cosine)
    return TexelView(pixel, visible, cosine)


def sample_image(image: Tensor, pixel: Tensor) -> Tensor:
    """Bilinear samples (..., C) of an (H, W, C) image at pixel positions (..., 2) (x, y)."""
    height, width = image.shape[:2]
    grid = torch.stack([pixel[..., 0] * (2.0 / width) - 1.0, pixel[..., 1] * (2.0 / height) - 1.0], dim=-1)
    sampled = F.grid_sample(image.permute(2, 0, 1)[None], grid.reshape(1, 1, -1, 2).to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0, :, 0].T.reshape(*pixel.shape[:-1], image.shape[2])


def back_project(image: Tensor, camera: Camera, surface: TexelSurface, mask: Tensor | None = None, *, min_cosine: float = 0.0, depth_tolerance: float = 0.01, rasterizer: Rasterizer | None = None) -> tuple[Tensor, Tensor]:
    """Sample an image into UV space.

    Args:
        image: (H, W, C) seen by ``camera``; mask: optional (H, W) or (H, W, 1), pixels to use (> 0.5).
    Returns:
        texture: (T, T, C) sampled colours, 0 where not visible.
        weight: (T, T) the view cosine where visible (and inside the mask), else 0.
    """
    view = texel_visibility(surface, camera, depth_tolerance=depth_tolerance, min_cosine=min_cosine, rasterizer=rasterizer)
    usable = view.visible
    if mask is not None:
        mask = mask.reshape(camera.height, camera.width).to(view.pixel.device)
        col = view.pixel[..., 0].floor().long().clamp(0, camera.width - 1)
        row = view.pixel[..., 1].floor().long().clamp(0, camera.height - 1)
        usable = usable & (mask[row, col] > 0.5)
    colour = sample_image(image.to(view.pixel.device), view.pixel)
    weight = torch.where(usable, view.cosine, torch.zeros_like(view.cosine))
    return colour * usable.unsqueeze(-1), weight


def combine_views(images: Sequence[Tensor], cameras: Sequence[Camera], surface: TexelSurface, masks: Sequence[Tensor | None] | None = None, *, cosine_power: float = 2.0, min_cosine: float = 0.0, fill_unseen: bool = False) -> tuple[Tensor, Tensor]:
    """Blend several back-projected views, each texel weighted by cosine**cosine_power.

    Returns:
        texture: (T, T, C) weighted mean colour (0 where no view saw the texel, unless filled).
        coverage: (T, T) the best view cosine per texel, 0 where unseen.
    With ``fill_unseen`` unseen texels take the nearest seen texel's colour (`dilate_into_gutters`),
    which keeps bilinear/mip lookups at UV-chart borders from blending in empty texels.
    """
    masks = [None] * len(images) if masks is None else masks
    total, weight_sum, coverage = None, None, None
    for image, camera, mask in zip(images, cameras, masks):
        colour, weight = back_project(image, camera, surface, mask, min_cosine=min_cosine)
        w = weight.clamp_min(0.0) ** cosine_power
        total = colour * w[..., None] if total is None else total + colour * w[..., None]
        weight_sum = w if weight_sum is None else weight_sum + w
        coverage = weight if coverage is None else torch.maximum(coverage, weight)
    if total is None or weight_sum is None or coverage is None:
        raise ValueError("combine_views needs at least one view")
    texture = total / weight_sum.clamp_min(1e-12)[..., None]
    if fill_unseen:
        texture = dilate_into_gutters(texture, weight_sum > 0)
    return texture, coverage


def dilate_into_gutters(texture: Tensor, valid: Tensor) -> Tensor:
    """Give every texel outside ``valid`` (T, T) the colour of the nearest valid texel: texels outside
    the UV charts (gutters), so bilinear and mip lookups never reach an unfilled texel in any viewer,
    or texels no view saw. texture (T, T, C)."""
    valid_np = valid.cpu().numpy()
    if valid_np.all() or not valid_np.any():
        return texture
    _, (rows, cols) = ndimage.distance_transform_edt(~valid_np, return_indices=True)
    tex = texture.cpu().numpy()
    return torch.from_numpy(tex[rows, cols]).to(texture)
