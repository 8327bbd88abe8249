"""Our cameras as PanoHead/EG3D camera labels, and back.

PanoHead's world (EG3D `camera_utils`): +y up, the face looks towards +z, the subject's left at +x
— the same axes as ours (representations/cameras.py). Its cameras are OpenCV cam2world matrices
(x right, y down, z forward) with intrinsics normalised by the image size; the average camera sits
at radius 2.7 from the origin looking at the pivot (0, 0, 0.2) with focal 4.2647 — the framing our
intake crop reproduces. The two worlds differ only by scale: our reference camera is at
``|position|`` from our origin (the head centre) where PanoHead's is at 2.7 from its origin, so
``p_ours = s · p_panohead`` with ``s = |reference camera position| / 2.7`` (`world_scale`).
The camera label is the 16 numbers of cam2world followed by the 9 of the intrinsics (25).
"""

from __future__ import annotations

import numpy as np
import torch

from representations.cameras import Camera, look_at

PANOHEAD_RADIUS = 2.7
PANOHEAD_PIVOT = (0.0, 0.0, 0.2)
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def world_scale(reference: Camera) -> float:
    """Our world units per PanoHead world unit, from the reference camera's distance to the origin."""
    return float(np.linalg.norm(reference.position)) / PANOHEAD_RADIUS


def camera_label(camera: Camera, scale: float) -> torch.Tensor:
    """(25,) PanoHead label of one of our cameras: OpenCV cam2world in PanoHead units + normalised K."""
    c2w = camera.c2w @ OPENGL_TO_OPENCV
    c2w[:3, 3] = c2w[:3, 3] / scale
    k = np.array([[camera.fx / camera.width, 0.0, camera.cx / camera.width],
                  [0.0, camera.fy / camera.height, camera.cy / camera.height],
                  [0.0, 0.0, 1.0]])
    return torch.tensor(np.concatenate([c2w.reshape(-1), k.reshape(-1)]), dtype=torch.float32)


def average_label(scale: float = 1.0) -> torch.Tensor:
    """The label of PanoHead's average (frontal) camera, built as one of our cameras."""
    c2w = look_at(np.array([0.0, 0.0, PANOHEAD_RADIUS]) * scale, np.array(PANOHEAD_PIVOT) * scale)
    return camera_label(Camera.from_normalized_focal(np.linalg.inv(c2w), 512), scale)
