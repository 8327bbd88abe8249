"""SH lighting from the face and the albedo texture (fitter/stages/texture/lighting.py): the basis, recovery of a
known lighting on a sphere of one albedo, robustness to dark 'eye' pixels, and the photo → albedo chain."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fitter.stages.texture.layers import SubjectPhoto
from fitter.stages.texture.lighting import (
    NOT_SKIN,
    albedo_from_photo,
    albedo_texture,
    estimate_lighting,
    face_skin_mask,
    fit_lighting,
    sh_basis,
    shading,
)
from representations.cameras import Camera
from representations.mesh import UnwrapOptions, icosphere, unwrap_uv
from representations.render import render, texel_surface

ALBEDO = torch.tensor([0.75, 0.55, 0.45])
IRRADIANCE = torch.tensor([3.0, 0.35, 0.3, -0.45, 0.08, -0.06, -0.12, 0.1, 0.07])
"""SH irradiance of a key light from the upper right-front over an ambient (positive on the whole sphere)."""
TRUE_SH = ALBEDO[:, None] * IRRADIANCE[None]


def fibonacci_sphere(n: int) -> torch.Tensor:
    """(n, 3) near-uniform unit vectors (equal-area quadrature points)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = (1.0 - z * z).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1)


def face_normals(n: int, min_z: float = 0.3) -> torch.Tensor:
    """(n', 3) unit normals of a face seen from +z: the cap z > min_z."""
    normals = fibonacci_sphere(int(2 * n / (1.0 - min_z)) + 1)
    return normals[normals[:, 2] > min_z][:n].float()


def shading_rms(a: torch.Tensor, b: torch.Tensor, normals: torch.Tensor) -> float:
    return float((shading(normals, a) - shading(normals, b)).pow(2).mean().sqrt())


def test_sh_basis_is_orthonormal_on_the_sphere():
    points = fibonacci_sphere(40_000)
    basis = sh_basis(points)
    gram = basis.T @ basis * (4.0 * math.pi / len(points))
    assert basis.shape == (40_000, 9)
    assert torch.allclose(gram, torch.eye(9, dtype=gram.dtype), atol=2e-3), gram


def test_truth_is_a_plausible_face_lighting():
    colours = shading(fibonacci_sphere(5000).float(), TRUE_SH)
    assert float(colours.min()) > 0.05 and float(colours.max()) < 1.0


@pytest.mark.parametrize("min_z, coefficient_error", [(-1.0, 0.005), (0.3, 0.1)])
def test_a_known_lighting_is_recovered_from_a_sphere_of_one_albedo(min_z, coefficient_error):
    """Samples over the whole sphere, or a face's cap of normals (there Y0, Y_z and Y_zz are nearly collinear and
    the ridge term shares between them, so the coefficients are looser than the shading they give)."""
    normals = face_normals(8000, min_z)
    colours = shading(normals, TRUE_SH) + 0.01 * torch.randn(len(normals), 3, generator=torch.Generator().manual_seed(0))
    sh = estimate_lighting(normals, colours)
    assert sh.shape == (3, 9)
    assert shading_rms(sh, TRUE_SH, normals) < 0.002  # on the normals it saw; the noise is 0.01
    assert float((sh - TRUE_SH).norm() / TRUE_SH.norm()) < coefficient_error


def lat_long_normals(size: int) -> torch.Tensor:
    """(size, size, 3) unit normals over the whole sphere (a stand-in for a head's texel normals)."""
    theta = (torch.arange(size) + 0.5) / size * math.pi
    phi = (torch.arange(size) + 0.5) / size * 2.0 * math.pi
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    return torch.stack([t.sin() * p.sin(), t.cos(), t.sin() * p.cos()], dim=-1)


def test_albedo_texture_of_a_lit_sphere_is_nearly_constant():
    normals = lat_long_normals(96)
    valid = torch.ones(96, 96, dtype=torch.bool)
    valid[:, :3] = False  # a gutter
    lit = shading(normals, TRUE_SH).clamp(0.0, 1.0)
    reference = face_normals(4000)
    sh = estimate_lighting(reference, shading(reference, TRUE_SH))
    albedo = albedo_texture(lit, normals, valid, sh, reference=reference)
    face = valid & (normals[..., 2] > 0.3)
    expected = shading(reference, TRUE_SH).mean(dim=0)  # the face's mean colour: the light's direction removed
    assert albedo.shape == lit.shape and float(albedo.min()) >= 0.0 and float(albedo.max()) <= 1.0
    assert torch.allclose(albedo[face].mean(dim=0), expected, atol=0.01)
    assert float(albedo[face].std(dim=0).max()) < 0.1 * float(lit[face].std(dim=0).min())
    assert torch.equal(albedo[:, 0], albedo[:, 3])  # the gutter took its neighbour's albedo


def test_albedo_divides_every_channel_alike_and_within_bounds():
    """One divisor for the three channels (the luminance of the shading): the albedo keeps each texel's hue, so an
    imperfect fit cannot paint colour casts; and no texel is brightened more than 2x or darkened more than 1.6x."""
    normals = lat_long_normals(64)
    valid = torch.ones(64, 64, dtype=torch.bool)
    texture = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.1
    coloured = TRUE_SH * torch.tensor([[1.3], [1.0], [0.6]], dtype=TRUE_SH.dtype)  # a warm light
    albedo = albedo_texture(texture, normals, valid, coloured)
    ratio = albedo / texture
    assert torch.allclose(ratio[..., 0], ratio[..., 1], atol=1e-5) and torch.allclose(ratio[..., 1], ratio[..., 2], atol=1e-5)
    assert float(ratio.max()) <= 2.0 + 1e-5 and float(ratio.min()) >= 1 / 1.6 - 1e-5


def test_albedo_texture_keeps_texels_without_a_normal():
    lit = torch.full((8, 8, 3), 0.5)
    normals = torch.zeros(8, 8, 3)
    normals[:4] = torch.tensor([0.0, 0.0, 1.0])
    albedo = albedo_texture(lit, normals, torch.ones(8, 8, dtype=torch.bool), TRUE_SH, reference=face_normals(500))
    assert torch.isfinite(albedo).all() and torch.equal(albedo[4:], lit[4:])


def with_dark_eyes(normals: torch.Tensor, colours: torch.Tensor, share: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The colours with the ``share`` of samples nearest one direction (an 'eye') made dark; and which they are."""
    eye_direction = torch.nn.functional.normalize(torch.tensor([0.3, 0.25, 0.9]), dim=0)
    eye = torch.zeros(len(normals), dtype=torch.bool)
    eye[(normals @ eye_direction).argsort(descending=True)[: int(share * len(normals))]] = True
    dark = colours.clone()
    dark[eye] = torch.tensor([0.08, 0.05, 0.04])
    return dark, eye


def test_dark_eye_pixels_are_rejected_as_outliers():
    normals = face_normals(8000)
    clean = shading(normals, TRUE_SH) + 0.01 * torch.randn(len(normals), 3, generator=torch.Generator().manual_seed(1))
    colours, eye = with_dark_eyes(normals, clean)
    fit = fit_lighting(normals, colours)
    naive = fit_lighting(normals, colours, rounds=0)
    assert float(eye.float().mean()) == pytest.approx(0.1, abs=0.001)
    assert shading_rms(fit.sh, TRUE_SH, normals) < 0.006
    assert shading_rms(naive.sh, TRUE_SH, normals) > 5 * shading_rms(fit.sh, TRUE_SH, normals)  # without rejection: far off
    assert float(fit.inliers[eye].float().mean()) < 0.02 and float(fit.inliers[~eye].float().mean()) > 0.95
    assert fit.rmse < 0.015


def synthetic_landmarks(centre: np.ndarray, radius: float, seed: int = 0) -> np.ndarray:
    """(478, 2) face landmarks in a disc, with the eyes, brows and lips each a tight cluster."""
    rng = np.random.default_rng(seed)
    angle, r = rng.uniform(0, 2 * np.pi, 478), radius * np.sqrt(rng.uniform(0, 1, 478))
    points = centre + np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    spots = [(-0.35, -0.2), (0.35, -0.2), (-0.35, -0.45), (0.35, -0.45), (0.0, 0.45)]  # eyes, brows, lips
    for group, (dx, dy) in zip(NOT_SKIN, spots):
        points[list(group)] = centre + radius * np.array([dx, dy]) + rng.normal(0, 0.05 * radius, (len(group), 2))
    return points


def test_face_skin_mask_leaves_out_eyes_brows_and_lips():
    centre, radius = np.array([128.0, 128.0]), 90.0
    landmarks = synthetic_landmarks(centre, radius)
    skin = face_skin_mask(torch.ones(256, 256), landmarks)
    x, y = (centre + radius * np.array([-0.35, -0.2])).astype(int)
    assert not skin[y, x] and not skin[int(centre[1] + 0.45 * radius), int(centre[0])]  # an eye, the lips
    assert skin[int(centre[1] + 0.1 * radius), int(centre[0] + 0.5 * radius)]  # a cheek
    assert not skin[5, 5] and not skin[128, 128 + int(0.99 * radius)]  # outside the face, its eroded rim
    assert 0.3 < skin.sum() / (np.pi * radius**2) < 0.9


@pytest.fixture(scope="module")
def lit_sphere():
    """A UV-mapped sphere seen off-axis (so world and camera frames differ), its photo lit by TRUE_SH, landmarks over it."""
    mesh = unwrap_uv(icosphere(subdivisions=4, radius=0.8), 128, UnwrapOptions(padding=2))
    camera = Camera.orbit(35.0, 10.0, 5.0, 30.0, 256)
    passes = render(mesh.verts, mesh.faces, camera, ("normal", "mask"), backend="torch")
    mask = (passes["mask"][..., 0] > 0.5).float()
    image = shading(passes["normal"], TRUE_SH).clamp(0.0, 1.0) * mask[..., None]
    centre_px, _ = camera.project(np.zeros((1, 3)))
    landmarks = synthetic_landmarks(centre_px[0], 0.8 * float(np.sqrt(mask.sum() / np.pi)))
    subject = SubjectPhoto(image, mask, camera, landmarks, np.zeros((478, 3)))
    surface = texel_surface(mesh.verts, mesh.faces, mesh.uv, mesh.uv_faces, 128)
    lit = shading(surface.normal, TRUE_SH).clamp(0.0, 1.0) * surface.valid[..., None]
    return mesh, subject, camera, lit, surface


def test_albedo_from_a_lit_photo_of_a_sphere(lit_sphere):
    mesh, subject, camera, lit, surface = lit_sphere
    albedo, stats = albedo_from_photo(mesh, subject, lit)
    sh = torch.tensor(stats["lighting_sh"])
    to_camera = torch.nn.functional.normalize(torch.as_tensor(camera.position, dtype=torch.float32), dim=0)
    seen = surface.valid & ((surface.normal @ to_camera) > 0.7)  # within ~45° of the view: the 'face' the fit saw
    assert albedo is not None and albedo.shape == lit.shape
    assert stats["lighting_face_samples"] > 2000 and stats["lighting_fit_rmse"] < 0.005
    assert shading_rms(sh, TRUE_SH, surface.normal[seen]) < 0.003  # the world frame of the texels, not the camera's
    assert float((albedo[seen].std(dim=0) / lit[seen].std(dim=0)).max()) < 0.15
