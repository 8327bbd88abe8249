"""Smooth where the photo is silent (fitter/stages/geometry/unseen.py): the photo's support per vertex, the
post-process on a noisy sphere seen from the front, its config, and the record the geometry stage writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from fitter.config import GeometryConfig, load_config
from fitter.stages.geometry.unseen import keep_outline, photo_support, smooth_unseen
from representations.cameras import Camera
from representations.mesh import Mesh, icosphere, roughness_deg
from representations.render import Rasterizer, render
from tests.helpers import EXAMPLE, PREVIEW, SMOKE

RADIUS = 0.9
CAMERA = Camera.orbit(0.0, 0.0, 4.0, 30.0, 128)  # looks at the sphere along -z: the front is z > 0


def ball(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=-1) - RADIUS


def noisy_ball(noise: float = 0.03) -> Mesh:
    mesh = icosphere(4, RADIUS)
    scale = 1.0 + noise * (2.0 * torch.rand(mesh.num_verts, generator=torch.Generator().manual_seed(0)) - 1.0)
    return mesh.replace(verts=mesh.verts * scale[:, None])


def support(mesh: Mesh, face_pixels=None) -> torch.Tensor:
    normals = torch.nn.functional.normalize(mesh.verts, dim=1)
    return photo_support(mesh.verts, mesh.faces, CAMERA, normals, min_cosine=0.2, full_cosine=0.5, rasterizer=Rasterizer("torch"),
                         face_pixels=face_pixels)


def test_support_is_one_where_the_camera_sees_the_surface_face_on_and_zero_behind():
    mesh = icosphere(4, RADIUS)
    weight, z = support(mesh), mesh.verts[:, 2] / RADIUS
    assert float(weight[z > 0.95].min()) == 1.0 and float(weight[z < 0.0].max()) == 0.0
    assert 0.0 <= float(weight.min()) and float(weight.max()) <= 1.0
    grazing = (z > 0.5) & (z < 0.6)  # seen, at 50-60 degrees: partly, and the edge is eroded towards the middle
    assert float(weight[grazing].mean()) < 0.1
    whole_image = np.array([[0.0, 0.0], [128.0, 0.0], [128.0, 128.0], [0.0, 128.0]])  # landmarks' hull: the face
    assert float(support(mesh, whole_image)[grazing].min()) > 0.95


def test_the_seen_side_stays_and_the_rest_is_smoothed():
    mesh = noisy_ball()
    smoothed, record = smooth_unseen(mesh, CAMERA, ball, 0.02, GeometryConfig(), Rasterizer("torch"))
    z = mesh.verts[:, 2] / RADIUS
    moved = (smoothed.verts - mesh.verts).norm(dim=1)
    assert float(moved[z > 0.95].max()) == 0.0 and float(moved[z < -0.2].mean()) > 0.005
    back = z < -0.2
    assert roughness_deg(smoothed.verts, smoothed.faces, back) < 0.4 * roughness_deg(mesh.verts, mesh.faces, back)
    assert abs(float(smoothed.verts[back].norm(dim=1).mean()) - float(mesh.verts[back].norm(dim=1).mean())) < 0.02 * RADIUS
    assert torch.equal(smoothed.faces, mesh.faces)
    rough = record["roughness_sides_back_deg"]
    assert record["enabled"] and rough["after"] < 0.6 * rough["before"]
    assert rough["before"] == pytest.approx(roughness_deg(mesh.verts, mesh.faces), abs=1e-3)
    assert rough["after"] == pytest.approx(roughness_deg(smoothed.verts, smoothed.faces), abs=1e-3)
    assert 0 < record["supported_vertices_pct"] < 50 and record["seconds"] >= 0


def test_smooth_seen_scale_removes_the_lumps_on_the_seen_side_and_keeps_its_shape():
    """The hash grid's lumps on the face: with `smooth_seen_scale` the seen side is smoothed at that finer scale
    (and keeps its broad shape: a bump as wide as a nose stays); without it the seen side is left as sculpted."""
    mesh = noisy_ball(0.02)
    z = mesh.verts[:, 2] / RADIUS
    nose = (mesh.verts[:, :2].norm(dim=1) < 0.2) & (z > 0)
    bumped = mesh.replace(verts=mesh.verts * (1.0 + 0.08 * nose.float() * (1.0 - mesh.verts[:, :2].norm(dim=1) / 0.2))[:, None])
    front = (z > 0.6) & ~nose
    plain, _ = smooth_unseen(bumped, CAMERA, ball, 0.02, GeometryConfig(), Rasterizer("torch"))
    faired, _ = smooth_unseen(bumped, CAMERA, ball, 0.02, GeometryConfig(smooth_seen_scale=0.03), Rasterizer("torch"))
    assert torch.equal(plain.verts[z > 0.95], bumped.verts[z > 0.95])
    before = roughness_deg(bumped.verts, bumped.faces, front)
    assert roughness_deg(faired.verts, faired.faces, front) < 0.5 * before < roughness_deg(plain.verts, plain.faces, front)
    tip = nose & (mesh.verts[:, :2].norm(dim=1) < 0.05)
    assert float(faired.verts[tip].norm(dim=1).mean()) > RADIUS * 1.05  # the nose-sized bump (0.08 high) stays


def test_vertices_on_the_photo_outline_move_only_along_their_rays():
    """The mask loss fitted the silhouette to the photo: near the mask's outline a move may go in depth, not across."""
    mesh = icosphere(4, RADIUS)
    mask = render(mesh.verts, mesh.faces, CAMERA, ("mask",), backend="torch")["mask"][..., 0].numpy()
    shifted = mesh.verts + torch.tensor([0.05, 0.0, 0.05])
    kept = keep_outline(mesh.verts, shifted, CAMERA, mask, band=0.1)  # locked within 6 px of the outline, free beyond 13
    pixel_before, _ = CAMERA.project(mesh.verts.double())
    pixel_after, _ = CAMERA.project(kept.double())
    rim = (mesh.verts[:, 2] - RADIUS**2 / 4.0).abs() < 0.03 * RADIUS  # the contour seen from 4 units away (z = r²/d)
    middle = mesh.verts[:, 2] > 0.8 * RADIUS
    assert float((pixel_after - pixel_before)[rim].norm(dim=1).max()) < 0.05
    assert float((kept - mesh.verts)[rim].norm(dim=1).min()) > 0.0  # still free along the ray
    assert torch.allclose(kept[middle], shifted[middle])


def test_scale_zero_leaves_the_mesh_as_sculpted():
    mesh = noisy_ball()
    same, record = smooth_unseen(mesh, CAMERA, ball, 0.02, GeometryConfig(smooth_unseen_scale=0.0), Rasterizer("torch"))
    assert same is mesh and not record["enabled"]
    assert record["roughness_sides_back_deg"]["after"] == record["roughness_sides_back_deg"]["before"]


def test_on_in_the_preview_off_in_the_hero_and_checked():
    """The preview (no ISD) smooths what the photo does not see; the hero keeps what ISD sculpts there."""
    assert load_config(PREVIEW).fit.geometry.smooth_unseen_scale > 0
    assert load_config(PREVIEW.replace("preview.yaml", "portrait3d.yaml")).fit.geometry.smooth_unseen_scale == 0
    for bad in ("fit.geometry.smooth_seen_min_cosine=0.6", "fit.geometry.smooth_unseen_scale=-1",
                "fit.geometry.smooth_unseen_max_correction=0", "fit.geometry.smooth_unseen_relax_iterations=-1",
                "fit.geometry.smooth_unseen_keep_offset=1.5", "fit.geometry.smooth_seen_scale=-0.1"):
        with pytest.raises(ConfigError):
            load_config(PREVIEW, [bad])


@pytest.mark.slow
def test_the_geometry_stage_records_the_roughness_before_and_after(tmp_path):
    from fitter.cli import main

    out = tmp_path / "run"
    assert main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), "--stop-after", "geometry", *SMOKE]) == 0
    record = json.loads((out / "geometry" / "geometry.json").read_text())["smooth_unseen"]
    rough = record["roughness_sides_back_deg"]
    assert record["enabled"] and np.isfinite(rough["before"]) and np.isfinite(rough["after"])
    assert rough["after"] <= rough["before"] and record["moved_max"] > 0
    from representations.mesh import read_mesh

    mesh = read_mesh(out / "geometry" / "mesh.ply")
    assert rough["after"] == pytest.approx(roughness_deg(mesh.verts, mesh.faces), abs=1e-2)
