"""UV texture lookup (orientation, mip filtering) and back-projection of views into UV space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from representations.cameras import Camera
from representations.render import combine_views, render, texel_surface, texel_visibility


def lat_long_head(n_lat: int = 48, n_lon: int = 64, radii=(0.7, 0.9, 0.8)) -> tuple[torch.Tensor, ...]:
    """A head-sized ellipsoid with a lat-long UV map and a seam at the back.

    Returns vertices (V, 3), faces (F, 3), uv (A, 2) and uv_faces (F, 3) (seam corners duplicated
    in UV only). Counter-clockwise faces seen from outside.
    """
    lat = np.linspace(0.0, math.pi, n_lat + 1)[1:-1]  # rings, poles separate
    lon = np.linspace(-math.pi, math.pi, n_lon + 1)  # uv columns (last = first on the surface)
    ring = np.stack(
        [np.sin(lat)[:, None] * np.sin(lon[None, :-1]), np.cos(lat)[:, None] * np.ones((1, n_lon)), np.sin(lat)[:, None] * np.cos(lon[None, :-1])],
        axis=-1,
    ).reshape(-1, 3)
    vertices = np.concatenate([ring, [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]]) * np.asarray(radii)
    north, south = len(ring), len(ring) + 1
    ring_uv = np.stack(np.meshgrid(np.linspace(0.0, 1.0, n_lon + 1), 1.0 - lat / math.pi), axis=-1).reshape(-1, 2)
    pole_uv = np.stack([(np.arange(n_lon) + 0.5) / n_lon, np.ones(n_lon)], axis=1)
    uv = np.concatenate([ring_uv, pole_uv, pole_uv * [1.0, 0.0]])
    north_uv, south_uv = len(ring_uv), len(ring_uv) + n_lon

    def vid(r, c):
        return r * n_lon + c % n_lon

    def uid(r, c):
        return r * (n_lon + 1) + c

    faces, uv_faces = [], []
    for c in range(n_lon):
        faces.append([north, vid(0, c), vid(0, c + 1)])
        uv_faces.append([north_uv + c, uid(0, c), uid(0, c + 1)])
        last = n_lat - 2
        faces.append([south, vid(last, c + 1), vid(last, c)])
        uv_faces.append([south_uv + c, uid(last, c + 1), uid(last, c)])
        for r in range(n_lat - 2):
            faces += [[vid(r, c), vid(r + 1, c), vid(r + 1, c + 1)], [vid(r, c), vid(r + 1, c + 1), vid(r, c + 1)]]
            uv_faces += [[uid(r, c), uid(r + 1, c), uid(r + 1, c + 1)], [uid(r, c), uid(r + 1, c + 1), uid(r, c + 1)]]
    as_tensor = lambda a, t: torch.tensor(np.asarray(a), dtype=t)  # noqa: E731
    return as_tensor(vertices, torch.float32), as_tensor(faces, torch.long), as_tensor(uv, torch.float32), as_tensor(uv_faces, torch.long)


def smooth_texture(size: int) -> torch.Tensor:
    """(size, size, 3) smooth procedural colours in [0, 1] (periodic in u, so the seam is seamless)."""
    v, u = torch.meshgrid(1.0 - (torch.arange(size) + 0.5) / size, (torch.arange(size) + 0.5) / size, indexing="ij")
    angle = 2.0 * math.pi * u
    return torch.stack([0.5 + 0.4 * torch.sin(3.0 * angle) * torch.cos(8.0 * v), 0.5 + 0.4 * torch.cos(5.0 * angle + 6.0 * v), 0.3 + 0.3 * v + 0.2 * torch.sin(12.0 * v)], dim=-1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10.0 * torch.log10(1.0 / ((a - b) ** 2).mean()))


def test_faces_are_outward_and_uv_orientation_matches_texture_rows():
    vertices, faces, uv, uv_faces = lat_long_head()
    camera = Camera.orbit(0.0, 60.0, 4.0, 30.0, 64)  # from above the front: sees the top half
    texture = torch.zeros(8, 8, 3)
    texture[:4] = torch.tensor([1.0, 0.0, 0.0])  # top rows = v > 0.5 = northern half
    texture[4:] = torch.tensor([0.0, 0.0, 1.0])
    out = render(vertices, faces, camera, ("rgb", "normal_cam", "triangle_id"), uv=uv, uv_faces=uv_faces, texture=texture, background=0.5)
    covered = out["triangle_id"] >= 0
    assert (out["normal_cam"][covered][:, 2] > -0.05).all()  # visible normals face the camera
    assert (out["rgb"][~covered] == 0.5).all()
    top_of_head = out["rgb"][12, 32]
    assert top_of_head.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-3)


def test_mipmapping_averages_a_minified_checkerboard():
    vertices, faces, uv, uv_faces = lat_long_head(24, 32)
    checker = ((torch.arange(512)[:, None] // 2 + torch.arange(512)[None, :] // 2) % 2).float()[..., None].expand(512, 512, 3)
    camera = Camera.orbit(0.0, 0.0, 4.0, 30.0, 48)
    kwargs = dict(uv=uv, uv_faces=uv_faces, texture=checker)
    mip = render(vertices, faces, camera, ("rgb", "triangle_id"), **kwargs)
    plain = render(vertices, faces, camera, ("rgb",), mipmap=False, **kwargs)["rgb"]
    covered = mip["triangle_id"] >= 0
    assert float(mip["rgb"][covered].std()) < 0.05
    assert float(mip["rgb"][covered].mean()) == pytest.approx(0.5, abs=0.05)
    assert float(plain[covered].std()) > 0.2  # aliasing without mip levels


def test_texel_visibility_sees_the_near_side_only():
    vertices, faces, uv, uv_faces = lat_long_head(24, 32)
    surface = texel_surface(vertices, faces, uv, uv_faces, 64)
    view = texel_visibility(surface, Camera.orbit(0.0, 0.0, 4.0, 30.0, 128))
    front = surface.position[..., 2] > 0.3
    back = surface.position[..., 2] < -0.05
    assert surface.valid.float().mean() > 0.9
    assert view.visible[front & surface.valid].float().mean() > 0.95
    assert not view.visible[back].any()
    assert (view.cosine[view.visible] > 0).all()


def test_back_projected_views_rerender_a_held_out_view():
    vertices, faces, uv, uv_faces = lat_long_head()
    truth = smooth_texture(256)
    views = [Camera.orbit(azimuth, elevation, 3.5, 35.0, 192) for azimuth, elevation in zip(range(0, 360, 45), (20, -20) * 4)]
    kwargs = dict(uv=uv, uv_faces=uv_faces)
    images = [render(vertices, faces, camera, ("rgb",), texture=truth, **kwargs)["rgb"] for camera in views]
    masks = [render(vertices, faces, camera, ("triangle_id",))["triangle_id"] >= 0 for camera in views]
    surface = texel_surface(vertices, faces, uv, uv_faces, 256)
    texture, coverage = combine_views(images, views, surface, masks, fill_unseen=True)
    assert float((coverage[surface.valid] > 0).float().mean()) > 0.98
    held_out = Camera.orbit(70.0, 5.0, 3.5, 35.0, 192)
    expected = render(vertices, faces, held_out, ("rgb", "triangle_id"), texture=truth, **kwargs)
    rendered = render(vertices, faces, held_out, ("rgb",), texture=texture, **kwargs)["rgb"]
    foreground = expected["triangle_id"] >= 0
    assert psnr(rendered[foreground], expected["rgb"][foreground]) >= 30.0


def test_rgb_gradients_reach_texture_and_vertices():
    vertices, faces, uv, uv_faces = lat_long_head(16, 24)
    texture = smooth_texture(32).requires_grad_()
    v = vertices.clone().requires_grad_()
    camera = Camera.orbit(30.0, 10.0, 3.5, 35.0, 64)
    rgb = render(v, faces, camera, ("rgb",), uv=uv, uv_faces=uv_faces, texture=texture, mipmap=False)["rgb"]
    rgb.sum().backward()
    seen = texture.grad.abs().sum(dim=-1) > 0
    assert 0.2 < float(seen.float().mean()) < 0.8  # bilinear: the near side only
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
