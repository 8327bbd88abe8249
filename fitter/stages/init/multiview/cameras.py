"""Cameras of multi-view inputs: orbit perspective views and near-orthographic ones.

`Camera` is a pinhole camera, so an orthographic view (``ortho_scale``: the world height its image
spans) becomes a perspective camera ``ORTHO_DISTANCE`` units away along the same view direction
whose field of view spans ``ortho_scale`` at the origin. A point at depth offset δ towards the
camera and lateral offset x from the view axis then lands x·δ/(D − δ) world units away from its
orthographic position; inside the ±1.3 fitting box that is at most 1.3·1.3/(D − 1.3) ≈ 1.7e-3
units for D = 1000, i.e. below 0.35 px on a 512-px view spanning 2 units (0.1 % of the frame).
"""

from __future__ import annotations

import math

import numpy as np

from fitter.stages.init.multiview.views import ViewSpec
from representations.cameras import Camera, look_at, orbit_position

ORTHO_DISTANCE = 1000.0
"""Distance (world units) of the long-focal perspective camera standing in for an orthographic one."""


def near_orthographic_fov(ortho_scale: float, distance: float = ORTHO_DISTANCE) -> float:
    """Vertical field of view (degrees) that spans ``ortho_scale`` world units at ``distance``."""
    return math.degrees(2.0 * math.atan(0.5 * ortho_scale / distance))


def view_camera(spec: ViewSpec, width: int, height: int) -> Camera:
    """The camera of one view at an image size of width x height pixels."""
    if spec.orthographic:
        radius, fov = ORTHO_DISTANCE, near_orthographic_fov(float(spec.ortho_scale))
    else:
        radius, fov = spec.radius, float(spec.fov_deg)
    c2w = look_at(orbit_position(spec.azimuth_deg, spec.elevation_deg, radius))
    return Camera.from_fov(np.linalg.inv(c2w), fov, width, height)
