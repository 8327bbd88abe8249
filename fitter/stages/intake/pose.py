"""Head pose from the crop landmarks: PnP against the canonical 3D landmark layout.

The canonical layout (`canonical_landmarks.npy`, derived by tools/derive_canonical_landmarks.py) is
in world units with the head centre at the origin, facing +z, +y up, the subject's left at +x.

Angle conventions (degrees):
  yaw   > 0: the subject turns to their left, so the camera sees more of their right cheek;
  pitch > 0: the subject looks up (chin up), so the camera sees them from below;
  roll  > 0: the head tilts counter-clockwise in the image (the subject's left eye, on the image's
        right, goes up).
They decompose the world-to-camera rotation (OpenGL camera frame) as R = Rx(-pitch) · Ry(yaw) · Rz(roll),
the order in which an orbit camera of representations/cameras.py is built: the orbit camera at
azimuth a, elevation e has exactly yaw = -a, pitch = -e, roll = 0. The camera's own azimuth and
elevation (from its position, which also reflects where the head sits in the crop) are reported too.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.errors import BadImageError
from fitter.stages.intake import meshpoints as mpi
from representations.cameras import Camera

CANONICAL_PATH = Path(__file__).with_name("canonical_landmarks.npy")
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


@functools.lru_cache(maxsize=1)
def canonical_landmarks() -> np.ndarray:
    """(478, 3) float64 canonical landmark layout in world units."""
    return np.load(CANONICAL_PATH).astype(np.float64)


@dataclass
class HeadPose:
    camera: Camera
    """The reference camera (PanoHead intrinsics at the crop size) that sees the canonical head as
    the photo does."""
    rms_px: float
    """Root-mean-square PnP reprojection error of the mesh landmarks, in crop pixels."""

    def angles(self) -> dict[str, float]:
        r = self.camera.w2c[:3, :3]
        yaw = math.degrees(math.asin(float(np.clip(r[0, 2], -1.0, 1.0))))
        pitch = math.degrees(math.atan2(r[1, 2], r[2, 2]))
        roll = math.degrees(math.atan2(-r[0, 1], r[0, 0]))
        pos = self.camera.position
        azimuth = math.degrees(math.atan2(pos[0], pos[2]))
        elevation = math.degrees(math.atan2(pos[1], math.hypot(pos[0], pos[2])))
        return {
            "yaw_deg": yaw,
            "pitch_deg": pitch,
            "roll_deg": roll,
            "camera_azimuth_deg": azimuth,
            "camera_elevation_deg": elevation,
            "camera_radius": float(np.linalg.norm(pos)),
        }


def solve_head_pose(points_2d: np.ndarray, size: int) -> HeadPose:
    """PnP (SQPnP, then Levenberg-Marquardt refinement) of the 468 mesh landmarks in crop pixels."""
    obj = canonical_landmarks()[: mpi.NUM_MESH]
    img = np.ascontiguousarray(points_2d[: mpi.NUM_MESH], dtype=np.float64)
    k = Camera.from_normalized_focal(np.eye(4), size).K
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_SQPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.all(np.isfinite(tvec)) or tvec[2, 0] <= 0:
        raise BadImageError("could not estimate the head pose from the face landmarks")
    w2c_cv = np.eye(4)
    w2c_cv[:3, :3] = cv2.Rodrigues(rvec)[0]
    w2c_cv[:3, 3] = tvec[:, 0]
    camera = Camera.from_normalized_focal(OPENCV_TO_OPENGL @ w2c_cv, size)
    projected, _ = camera.project(obj)
    rms = float(np.sqrt(np.mean(np.sum((projected - img) ** 2, axis=1))))
    return HeadPose(camera, rms)


def world_landmarks(points_crop: np.ndarray, camera: Camera) -> np.ndarray:
    """(478, 3) world points on the rays through the 2D crop landmarks.

    Depth along each ray: MediaPipe's relative z (crop pixels, converted to world units at the
    head's distance) for the subject's own shape, offset so its mean equals the mean depth of the
    posed canonical layout. By construction they project exactly onto the 2D landmarks.
    """
    _, canonical_depth = camera.project(canonical_landmarks())
    relative = points_crop[:, 2] * canonical_depth.mean() / camera.fy
    depth = relative + (canonical_depth - relative).mean()
    return camera.unproject(points_crop[:, :2], depth)
