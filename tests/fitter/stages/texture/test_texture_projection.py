"""Texture from one photo on a synthetic head-sized sphere: projection, mirror, fill, gutters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fitter.config import TextureConfig
from fitter.stages.texture.layers import SubjectPhoto, projection_layers
from fitter.stages.texture.projection import MIRROR, photo_weight
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
    cfg = TextureConfig(resolution=256, mode="projection", max_angle_deg=65.0, off_face_max_angle_deg=80.0, feather_deg=20.0)
    texture, stats = projection_texture(mesh, subject, cfg, seed=0)
    return mesh, camera, image, mask, texture, stats, subject, cfg


def test_every_texel_is_filled_and_in_range(scene):
    _, _, _, _, texture, stats, _, _ = scene
    assert torch.isfinite(texture).all()
    assert float(texture.min()) >= 0.2 and float(texture.max()) <= 0.8  # no unfilled (black) texel anywhere
    assert stats["unfilled_texels"] == 0


def test_no_photo_colour_beyond_the_angle_limit(scene):
    """Neither the photo nor its mirror image colours a texel whose normal faces the camera more than its limit
    away (max_angle_deg on the face, up to off_face_max_angle_deg off it); the weight is 1 before the feather."""
    mesh, camera, _, _, _, _, subject, cfg = scene
    layers = projection_layers(mesh, subject, cfg)
    limit = torch.cos(torch.deg2rad(layers.max_angle_deg))
    assert float(layers.max_angle_deg[layers.surface.valid].min()) >= cfg.max_angle_deg - 1e-4
    assert float(layers.max_angle_deg[layers.surface.valid].max()) <= cfg.off_face_max_angle_deg + 1e-4
    eye = torch.as_tensor(camera.position, dtype=torch.float32)
    for name, flip in (("direct", (1.0, 1.0, 1.0)), ("mirrored", MIRROR)):
        scale = torch.tensor(flip)
        to_camera = torch.nn.functional.normalize(eye - layers.surface.position * scale, dim=-1)
        cosine = (layers.surface.normal * scale * to_camera).sum(-1)
        beyond = layers.surface.valid & (cosine < limit - 1e-3)
        assert beyond.sum() > 1000
        assert float(layers.confidences[name][beyond].max()) == 0.0
    to_camera = torch.nn.functional.normalize(eye - layers.surface.position, dim=-1)
    full = torch.cos(torch.deg2rad(layers.max_angle_deg - cfg.feather_deg))
    squarely = layers.surface.valid & ((layers.surface.normal * to_camera).sum(-1) > full + 0.02) & (layers.confidences["direct"] > 0)
    assert float(layers.confidences["direct"][squarely].min()) > 0.99


def test_the_mirror_image_fills_the_face_not_the_hair(scene):
    """The mirrored source is for the hidden half of the face; on hair (synthesised instead) it is off."""
    mesh, _, _, _, _, _, subject, cfg = scene
    layers = projection_layers(mesh, subject, cfg)
    hair, skin = layers.surface.valid & (layers.hairness > 0.999), layers.surface.valid & (layers.hairness < 0.001)
    valid = layers.surface.valid
    assert hair.sum() > 1000 and bool((layers.confidences["mirrored"][valid] <= 1.0 - layers.hairness[valid] + 1e-6).all())
    assert float(layers.confidences["mirrored"][skin].max()) > 0.9


def test_the_face_stops_taking_photo_colour_before_the_rest():
    """At an angle between the two limits, the rest takes the photo's colour and the face does not."""
    cosine = torch.full((2,), math.cos(math.radians(75.0)))
    weight = photo_weight(cosine, torch.tensor([70.0, 85.0]), 10.0)
    assert weight[0] == 0.0 and weight[1] == 1.0


def test_mirror_fills_part_of_the_hidden_half(scene):
    _, _, _, _, _, stats, _, _ = scene
    assert stats["direct_fraction"] > 0.15  # a cap within ~55° (weight 0.5) is 21 % of a sphere
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
