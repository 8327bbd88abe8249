"""The project's one camera convention (representations/cameras.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from representations.cameras import (
    EVAL_VIEWS,
    PANOHEAD_FOCAL,
    Camera,
    OrbitRange,
    inpainting_trajectory,
    orbit_position,
    sample_orbits,
    view_name,
)


def test_orbit_position_formula():
    a, e, r = 30.0, 20.0, 4.0
    expected = (r * math.cos(math.radians(e)) * math.sin(math.radians(a)), r * math.sin(math.radians(e)),
                r * math.cos(math.radians(e)) * math.cos(math.radians(a)))
    assert np.allclose(orbit_position(a, e, r), expected)
    assert np.allclose(Camera.orbit(a, e, r, 30, 64).position, expected)


def test_orbit_camera_looks_at_origin_with_y_up():
    cam = Camera.orbit(-70.0, 25.0, 3.0, 40.0, 128)
    pixel, depth = cam.project(np.zeros((1, 3)))
    assert np.allclose(pixel, [[64.0, 64.0]]) and depth[0] == pytest.approx(3.0)
    above, _ = cam.project(np.array([[0.0, 0.2, 0.0]]))
    assert above[0, 1] < 64.0  # +y is up in the image (row 0 at the top)


def test_front_camera_sees_subjects_left_on_image_right():
    cam = Camera.orbit(0.0, 0.0, 4.0, 30.0, 100)
    pixel, _ = cam.project(np.array([[0.3, 0.0, 0.0]]))  # subject's left is +x
    assert pixel[0, 0] > 50.0
    side = Camera.orbit(90.0, 0.0, 4.0, 30.0, 100)  # +90 sees the subject's left cheek
    assert side.position[0] == pytest.approx(4.0)


def test_projection_matrix_agrees_with_project():
    cam = Camera.orbit(37.0, -12.0, 3.7, 33.0, 96).cropped(10, 5, 70, 80, 140, 160)
    points = np.random.default_rng(0).uniform(-0.8, 0.8, size=(20, 3))
    pixel, depth = cam.project(points)
    clip = np.c_[points, np.ones(20)] @ cam.mvp().T
    ndc = clip[:, :3] / clip[:, 3:]
    u = (ndc[:, 0] + 1) / 2 * cam.width
    v = (1 - ndc[:, 1]) / 2 * cam.height
    assert np.allclose(np.c_[u, v], pixel, atol=1e-6)
    assert np.allclose(clip[:, 3], depth)


def test_unproject_inverts_project():
    cam = Camera.orbit(120.0, 10.0, 5.0, 25.0, 64)
    points = np.random.default_rng(1).uniform(-0.5, 0.5, size=(10, 3))
    pixel, depth = cam.project(points)
    assert np.allclose(cam.unproject(pixel, depth), points)


def test_panohead_intrinsics_and_resize():
    cam = Camera.from_normalized_focal(np.eye(4), 1024)
    assert cam.fx == pytest.approx(PANOHEAD_FOCAL * 1024) and cam.cx == 512
    assert cam.fov_y_deg == pytest.approx(13.37, abs=0.01)
    small = cam.resized(512)
    assert small.fx == pytest.approx(PANOHEAD_FOCAL * 512) and small.fov_y_deg == pytest.approx(cam.fov_y_deg)
    assert Camera.from_dict(cam.to_dict()).to_dict() == cam.to_dict()


def test_opencv_extrinsics_flip_y_and_z():
    cam = Camera.orbit(0.0, 0.0, 4.0, 30.0, 64)
    point = np.array([0.1, 0.2, 0.0, 1.0])
    gl = cam.w2c @ point
    cv = cam.w2c_opencv @ point
    assert np.allclose(cv[:3], gl[:3] * [1, -1, -1]) and cv[2] > 0


def test_view_sets():
    trajectory = inpainting_trajectory()
    assert len(trajectory) == 15
    assert [v.elevation for v in trajectory] == [-15.0] * 10 + [45.0] * 5
    assert trajectory[0].azimuth == -45.0 and trajectory[-1].azimuth == -135.0
    assert all(v.radius == 3.8 and v.fov_y == 30.0 for v in trajectory)
    assert set(EVAL_VIEWS) == {"left_frontal", "left", "right_frontal", "right", "rear"}
    assert view_name(30, 0) == "az+030_el+00" and view_name(-90, -5) == "az-090_el-05" and view_name(180, 0) == "az+180_el+00"


def test_random_orbits_respect_ranges_and_seed():
    ranges = OrbitRange(azimuth=(-30, 30), elevation=(0, 10), radius=(3, 4), fov_y=(20, 25))
    views = sample_orbits(np.random.default_rng(5), 200, ranges)
    assert all(-30 <= v.azimuth <= 30 and 0 <= v.elevation <= 10 and 3 <= v.radius <= 4 and 20 <= v.fov_y <= 25 for v in views)
    assert sample_orbits(np.random.default_rng(5), 3, ranges) == views[:3]
