"""Colour where the photo is silent: hairness, the hair exemplar, quilting, and hair texture on an unseen back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fitter.config import TextureConfig
from fitter.stages.texture.layers import SubjectPhoto, projection_layers
from fitter.stages.texture.synthesis import hair_exemplar, hairness, quilt
from representations.cameras import Camera
from representations.mesh import UnwrapOptions, icosphere, unwrap_uv

HAIR, SKIN = np.array([0.25, 0.15, 0.08]), np.array([0.85, 0.65, 0.5])


def striped_hair(size: int) -> np.ndarray:
    """(size, size, 3) dark brown with light vertical strands."""
    strands = (np.sin(np.arange(size) * 1.3)[None, :] > 0.6).astype(float)
    return HAIR + 0.3 * strands[..., None] * np.ones((size, 1, 1))


def test_hairness_follows_the_scalp_and_the_hair_standing_off_the_skin():
    head = icosphere(subdivisions=3, radius=1.0).verts.double().numpy()
    normals = head / np.linalg.norm(head, axis=1, keepdims=True)
    scalp = (head[:, 1] > 0.3).astype(float)
    on_face = np.array([[0.0, -0.2, 1.0]])
    on_scalp = np.array([[0.0, 0.8, 0.6]])
    off_skin = np.array([[0.0, -0.6, -1.0]]) * 1.12  # long hair 0.1 behind the neck
    assert hairness(on_face / np.linalg.norm(on_face), head, normals, scalp)[0] < 0.05
    assert hairness(on_scalp, head, normals, scalp)[0] > 0.95
    assert hairness(off_skin, head, normals, scalp)[0] > 0.95


def test_hair_exemplar_is_the_window_full_of_hair():
    image = np.tile(SKIN, (200, 200, 1))
    image[:60, 120:] = striped_hair(200)[:60, :80]
    pixels = np.zeros((200, 200), bool)
    pixels[:60, 120:] = True
    window = hair_exemplar(image, pixels, 40)
    assert window is not None and window.shape == (40, 40, 3)
    assert np.abs(window.mean((0, 1)) - SKIN).sum() > 0.5  # hair, not skin
    pixels[:, :] = False
    pixels[::3, ::3] = True  # scattered: no window is mostly hair
    assert hair_exemplar(image, pixels, 40) is None


def test_quilt_keeps_the_exemplar_and_wraps_around():
    rng = np.random.default_rng(0)
    exemplar = ndimage.gaussian_filter(rng.random((64, 64, 3)), (2, 2, 0))
    out = quilt(exemplar, (90, 300), rng, 24)
    assert out.shape == (90, 300, 3)
    assert abs(out.mean() - exemplar.mean()) < 0.02 and out.std() > 0.3 * exemplar.std()
    seam = np.abs(out[:, 0] - out[:, -1]).mean()  # the azimuth wraps: first and last columns are neighbours
    inside = np.mean([np.abs(out[:, c] - out[:, c + 1]).mean() for c in range(0, 299, 7)])
    assert seam < 2.0 * inside


@pytest.fixture(scope="module")
def photographed_sphere():
    """A sphere seen from the front; the photo shows dark striped hair on the top half, skin below."""
    mesh = unwrap_uv(icosphere(subdivisions=4, radius=0.8), 256, UnwrapOptions(padding=2))
    camera = Camera.orbit(0.0, 0.0, 9.0, 13.37, 256)
    image = torch.from_numpy(np.tile(SKIN, (256, 256, 1))).float()
    image[:128] = torch.from_numpy(striped_hair(256)[:128]).float()
    mask = torch.zeros(256, 256)
    mask[20:236, 20:236] = 1.0
    landmarks = np.stack(np.meshgrid(np.linspace(100, 156, 22), np.linspace(140, 200, 22)), -1).reshape(-1, 2)[:478]
    landmarks = np.concatenate([landmarks, np.tile(landmarks[-1:], (478 - len(landmarks), 1))])
    return mesh, SubjectPhoto(image, mask, camera, landmarks, np.zeros((478, 3)))


def test_unseen_hair_gets_strands_and_the_hair_colour(photographed_sphere):
    mesh, subject = photographed_sphere
    with_hair = projection_layers(mesh, subject, TextureConfig(resolution=256, mode="projection"))
    plain = projection_layers(mesh, subject, TextureConfig(resolution=256, mode="projection", hair_synthesis=False))
    assert with_hair.stats["hair_synthesised"] and not plain.stats["hair_synthesised"]
    surface = with_hair.surface
    back_top = surface.valid & (surface.position[..., 2] < -0.3) & (surface.position[..., 1] > 0.3)
    assert back_top.sum() > 500
    assert float(sum(with_hair.confidences.values())[back_top].max()) == 0.0  # the photo does not see it

    def roughness(texture: torch.Tensor) -> float:
        grey = texture.mean(-1).numpy()
        return float(np.abs(grey - ndimage.gaussian_filter(grey, 2.0))[back_top.numpy()].mean())

    assert roughness(with_hair.texture) > 3.0 * roughness(plain.texture)
    mean = with_hair.texture[back_top].mean(0).numpy()
    assert np.abs(mean - HAIR).sum() < np.abs(mean - SKIN).sum()  # the back reads as hair, not skin
    assert with_hair.stats["unfilled_texels"] == 0 and torch.isfinite(with_hair.texture).all()
