"""Control images: LAION-Face landmark drawing with visibility, canny thresholds, normal encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitter.config import REPO_ROOT
from guidance.control import (
    FACE_STYLE,
    IRIS_STYLE,
    LEFT_IRIS_CENTRE,
    camera_azimuth,
    canny_control,
    draw_face_landmarks,
    landmark_visibility,
    normal_control,
)
from representations.cameras import Camera

LANDMARKS = np.load(REPO_ROOT / "fitter" / "stages" / "intake" / "canonical_landmarks.npy").astype(np.float64)


def colours(image: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(c) for c in px) for px in image.reshape(-1, 3) if px.any()}


def outward_normals(points: np.ndarray) -> np.ndarray:
    centre = np.array([0.0, -0.2, 0.0])
    return (points - centre) / np.linalg.norm(points - centre, axis=1, keepdims=True)


def test_front_view_draws_every_part_in_its_colour():
    cam = Camera.orbit(0.0, 0.0, 4.0, 30.0, 512)
    image = draw_face_landmarks(LANDMARKS, cam, normals=outward_normals(LANDMARKS))
    expected = {colour for _, colour in FACE_STYLE.values()} | set(IRIS_STYLE.values())
    assert colours(image) == expected
    assert abs(camera_azimuth(cam)) < 1e-9


@pytest.mark.parametrize("azimuth", [100.0, -135.0, 180.0])
def test_only_the_face_oval_beyond_90_degrees(azimuth):
    cam = Camera.orbit(azimuth, 10.0, 4.0, 30.0, 256)
    image = draw_face_landmarks(LANDMARKS, cam, normals=outward_normals(LANDMARKS))
    assert colours(image) == {FACE_STYLE["face_oval"][1]}
    assert (image.any(axis=2)).sum() > 100  # the whole outline, although it faces away


def test_landmarks_facing_away_are_not_drawn():
    cam = Camera.orbit(0.0, 0.0, 4.0, 30.0, 256)
    normals = outward_normals(LANDMARKS)
    left_eye = {i for edge in FACE_STYLE["left_eye"][0] for i in edge} | {LEFT_IRIS_CENTRE}
    normals[list(left_eye)] *= -1.0
    image = draw_face_landmarks(LANDMARKS, cam, normals=normals)
    assert FACE_STYLE["left_eye"][1] not in colours(image)
    assert IRIS_STYLE[LEFT_IRIS_CENTRE] not in colours(image)
    assert FACE_STYLE["right_eye"][1] in colours(image)


def test_depth_test_hides_occluded_landmarks():
    cam = Camera.orbit(0.0, 0.0, 4.0, 30.0, 128)
    _, z = cam.project(LANDMARKS)
    depth = np.full((128, 128), z.max() + 1.0)
    depth[:, :64] = z.min() - 0.5  # an occluder in front of the image-left half
    seen = landmark_visibility(LANDMARKS, cam, depth=depth)
    pixels, _ = cam.project(LANDMARKS)
    in_image = (pixels >= 0).all(1) & (pixels < 128).all(1)
    assert not seen[pixels[:, 0] < 63].any() and seen[(pixels[:, 0] > 65) & in_image].all()
    assert not seen[~in_image].any()
    image = draw_face_landmarks(LANDMARKS, cam, depth=depth)
    assert not image[:, :62].any() and image[:, 66:].any()


def test_canny_uses_thresholds_100_and_200():
    def step(contrast: int) -> np.ndarray:
        image = np.full((32, 32, 3), 100, np.uint8)
        image[:, 16:] += contrast
        return image

    # a step of height c gives a 3x3-Sobel response of 4c: strong edges need 4c > 200, and a step
    # between the thresholds (100 < 4c < 200) has no strong neighbour to hang on to
    assert not canny_control(step(20)).any()
    assert not canny_control(step(40)).any()
    edges = canny_control(step(60))
    assert edges.shape == (32, 32, 3) and edges[:, 15:17].any() and set(np.unique(edges)) == {0, 255}


def test_normal_encoding_axes():
    normals = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # (1, 4, 3)
    mask = torch.tensor([[[1.0], [1.0], [1.0], [0.0]]])
    image = normal_control(normals, mask)
    assert image.shape == (1, 3, 1, 4)
    rgb = image[0, :, 0].T
    assert torch.allclose(rgb[0], torch.tensor([0.5, 0.5, 1.0]))  # facing the camera: lavender
    assert torch.allclose(rgb[1], torch.tensor([0.0, 0.5, 0.5]))  # facing image-right: no red
    assert torch.allclose(rgb[2], torch.tensor([0.5, 1.0, 0.5]))  # facing up: green
    assert torch.equal(rgb[3], torch.zeros(3))  # background
