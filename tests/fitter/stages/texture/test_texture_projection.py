"""Texture from one photo on a synthetic head-sized sphere: projection, mirror, fill, gutters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitter.config import TextureConfig
from fitter.stages.texture.layers import SubjectPhoto
from fitter.stages.texture.stage import projection_texture
from representations.cameras import Camera
from representations.mesh import UnwrapOptions, icosphere, unwrap_uv
from representations.render import dilate_into_gutters, render


def photo_of(mesh, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """A 'photo': the sphere painted with a smooth colour field of position (no black anywhere)."""
    colours = 0.25 + 0.5 * (mesh.verts - mesh.verts.min(0).values) / (mesh.verts.max(0).values - mesh.verts.min(0).values)
    out = render(mesh.verts, mesh.faces, camera, ("mask",), backend="torch")
    from representations.render import default_rasterizer, interpolate

    frags = default_rasterizer("torch").rasterize(mesh.verts, mesh.faces, camera)
    image = interpolate(colours, frags) * out["mask"] + 0.5 * (1 - out["mask"])
    return image.detach(), (out["mask"][..., 0] > 0.5).float()


@pytest.fixture(scope="module")
def scene():
    sphere = icosphere(subdivisions=4, radius=0.8)
    mesh = unwrap_uv(sphere, 256, UnwrapOptions(padding=2))
    camera = Camera.orbit(35.0, 5.0, 9.0, 13.37, 256)
    image, mask = photo_of(mesh, camera)
    chin = np.zeros((478, 2))
    chin[:, 1] = 200.0
    subject = SubjectPhoto(image, mask, camera, chin, np.zeros((478, 3)))
    cfg = TextureConfig(resolution=256, mode="projection", min_cosine=0.2)
    texture, stats = projection_texture(mesh, subject, cfg, seed=0)
    return mesh, camera, image, mask, texture, stats


def test_every_texel_is_filled_and_in_range(scene):
    _, _, _, _, texture, _ = scene
    assert torch.isfinite(texture).all()
    assert float(texture.min()) >= 0.2 and float(texture.max()) <= 0.8  # no unfilled (black) texel anywhere


def test_reference_view_reproduces_the_photo(scene):
    mesh, camera, image, mask, texture, _ = scene
    out = render(mesh.verts, mesh.faces, camera, ("rgb",), uv=mesh.uv, uv_faces=mesh.uv_faces, texture=texture, backend="torch")
    inner = torch.from_numpy(__import__("scipy").ndimage.binary_erosion(mask.numpy() > 0.5, iterations=3))
    mse = ((out["rgb"] - image) ** 2)[inner].mean()
    assert 10 * torch.log10(1 / mse) > 30


def test_mirror_fills_part_of_the_hidden_half(scene):
    _, _, _, _, _, stats = scene
    assert stats["direct_fraction"] > 0.2
    assert stats["mirrored_fraction"] > 0.05


def test_gutter_dilation_copies_nearest_chart_texel():
    texture = torch.zeros(8, 8, 3)
    valid = torch.zeros(8, 8, dtype=torch.bool)
    valid[2:4, 2:4] = True
    texture[2:4, 2:4] = torch.tensor([0.3, 0.6, 0.9])
    texture[3, 3] = torch.tensor([0.9, 0.1, 0.2])
    out = dilate_into_gutters(texture, valid)
    assert torch.equal(out[2:4, 2:4], texture[2:4, 2:4])
    assert torch.equal(out[7, 7], texture[3, 3]) and torch.equal(out[0, 0], texture[2, 2])
