"""Control images for the ControlNets: MediaPipe-face landmarks, canny edges, normal maps.

Landmarks (CrucibleAI/ControlNetMediaPipeFace, trained on LAION-Face drawings)
    The 478 FaceMesh landmarks (3D, world frame) are projected with the view's `Camera` and their
    MediaPipe face-mesh connections drawn on black: face oval, eyes, brows, lips, plus a small square
    on each iris centre, in the LAION-Face colours (`FACE_STYLE`, given here in RGB) with lines
    2 px thick at 512² (scaled with the image). A connection is drawn only when both ends are seen
    (inside the image, facing the camera when normals are given, not behind the rendered depth when
    a depth map is given). Beyond |azimuth| 90° only the face oval is drawn, and drawn whole: from
    behind, every landmark is hidden, and the oval is then the outline that tells the ControlNet
    where the head is (the seed paper's rule).
Canny
    ``cv2.Canny`` with thresholds 100/200 on the RGB image, as three equal channels.
Normal maps (lllyasviel/control_v11p_sd15_normalbae)
    `guidance.normal_encoding.NORMAL_CONTROLNET`: ``R = (1 − x) / 2, G = (1 + y) / 2, B = (1 + z) / 2``
    of our OpenGL camera-frame normals on black (red = facing image-left, green = up, blue = towards the
    camera; a face seen head-on is lavender, (128, 128, 255)). Why, with sources, and the encodings of
    the other consumers (the ISD prior, the reference files): the table in guidance/normal_encoding.py.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import Tensor

from guidance.normal_encoding import NORMAL_CONTROLNET, encode
from representations.cameras import Camera

NUM_FACEMESH = 478
RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE = 468, 473


def _face_style() -> dict[str, tuple[frozenset, tuple[int, int, int]]]:
    from mediapipe.python.solutions import face_mesh_connections as fm

    return {  # part: (connections, RGB colour)
        "face_oval": (fm.FACEMESH_FACE_OVAL, (10, 200, 10)),
        "left_eye": (fm.FACEMESH_LEFT_EYE, (10, 200, 180)),
        "left_eyebrow": (fm.FACEMESH_LEFT_EYEBROW, (10, 220, 180)),
        "right_eye": (fm.FACEMESH_RIGHT_EYE, (180, 200, 10)),
        "right_eyebrow": (fm.FACEMESH_RIGHT_EYEBROW, (180, 220, 10)),
        "lips": (fm.FACEMESH_LIPS, (10, 180, 10)),
    }


FACE_STYLE = _face_style()
IRIS_STYLE = {RIGHT_IRIS_CENTRE: (250, 200, 10), LEFT_IRIS_CENTRE: (10, 200, 250)}
"""Iris-centre squares (RGB); MediaPipe's 'right' is the subject's right."""


def camera_azimuth(camera: Camera) -> float:
    """Orbit azimuth (degrees, in (-180, 180]) of a camera's position (0 = facing the face)."""
    x, _, z = camera.position
    return math.degrees(math.atan2(x, z))


def landmark_visibility(points: np.ndarray, camera: Camera, normals: np.ndarray | None = None, depth: np.ndarray | None = None, depth_tolerance: float = 0.02) -> np.ndarray:
    """(N,) bool: the landmark is in the image, in front of the camera, facing it (when ``normals``
    (N, 3) are given) and not behind the surface in ``depth`` ((H, W) view-axis depth, 0 = empty)."""
    pixels, z = camera.project(np.asarray(points, dtype=np.float64))
    u, v = pixels[:, 0], pixels[:, 1]
    seen = (z > 0) & (u >= 0) & (v >= 0) & (u < camera.width) & (v < camera.height)
    if normals is not None:
        seen &= np.einsum("ij,ij->i", camera.position[None] - points, normals) > 0
    if depth is not None:
        depth = np.asarray(depth).reshape(camera.height, camera.width)
        rows = np.clip(v.astype(int), 0, camera.height - 1)
        cols = np.clip(u.astype(int), 0, camera.width - 1)
        surface = depth[rows, cols]
        seen &= (surface > 0) & (z <= surface * (1.0 + depth_tolerance))
    return seen


def landmark_normals(points: np.ndarray, verts: np.ndarray, vertex_normals: np.ndarray) -> np.ndarray:
    """(N, 3) normals of the mesh vertices nearest to each landmark."""
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(verts).query(points)
    return vertex_normals[nearest]


def draw_face_landmarks(points: np.ndarray, camera: Camera, *, normals: np.ndarray | None = None, depth: np.ndarray | None = None, azimuth_deg: float | None = None, depth_tolerance: float = 0.02) -> np.ndarray:
    """LAION-Face-style (H, W, 3) uint8 RGB drawing of 478 world-frame landmarks seen by ``camera``."""
    azimuth = camera_azimuth(camera) if azimuth_deg is None else azimuth_deg
    from_behind = abs(azimuth) > 90.0
    pixels, z = camera.project(np.asarray(points, dtype=np.float64))
    ends = np.floor(pixels).astype(np.int64)
    seen = landmark_visibility(points, camera, normals, depth, depth_tolerance)
    scale = min(camera.width, camera.height) / 512.0
    thickness, half = max(1, round(2 * scale)), max(1, round(2 * scale))
    image = np.zeros((camera.height, camera.width, 3), np.uint8)
    parts = ("face_oval",) if from_behind else tuple(FACE_STYLE)
    for part in parts:
        connections, colour = FACE_STYLE[part]
        for a, b in connections:
            drawn = (z[a] > 0 and z[b] > 0) if from_behind else (seen[a] and seen[b])
            if drawn:
                cv2.line(image, tuple(int(c) for c in ends[a]), tuple(int(c) for c in ends[b]), colour, thickness)
    if not from_behind and len(points) > LEFT_IRIS_CENTRE:
        for index, colour in IRIS_STYLE.items():
            if seen[index]:
                x, y = ends[index]
                image[max(y - half, 0): y + half, max(x - half, 0): x + half] = colour
    return image


def canny_control(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """(H, W, 3) uint8 canny edges (white on black) of an (H, W, 3) uint8 RGB image."""
    edges = cv2.Canny(np.ascontiguousarray(image, dtype=np.uint8), low, high)
    return np.repeat(edges[:, :, None], 3, axis=2)


def normal_control(normal_cam: Tensor, mask: Tensor | None = None) -> Tensor:
    """Normal-ControlNet image (B, 3, H, W) in [0, 1] from OpenGL camera-frame normals:
    ``encode(normal_cam, mask, NORMAL_CONTROLNET)`` (guidance/normal_encoding.py).

    Args:
        normal_cam: (H, W, 3) or (B, H, W, 3), e.g. the renderer's ``normal_cam`` pass.
        mask: (H, W, 1) or (B, H, W, 1) coverage; pixels outside are black.
    Differentiable.
    """
    return encode(normal_cam, mask, NORMAL_CONTROLNET)


def to_control_tensor(images: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """uint8 (H, W, 3) image(s) → (B, 3, H, W) float in [0, 1], the ControlNet input range."""
    stack = np.stack(images) if isinstance(images, list) else (images[None] if images.ndim == 3 else images)
    return torch.from_numpy(stack).to(device).permute(0, 3, 1, 2).float() / 255.0
