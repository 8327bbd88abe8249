"""Cameras: the project's one convention, written down here and nowhere else.

World frame
    +y is up, the head faces +z, and the head's centre is near the origin. The subject's left side
    is at +x (a person facing +z with +y up has their right hand towards -x).
    Scale: one world unit is about 12.6 cm (two pupil distances); a head spans about ±0.9.
Orbit cameras
    A camera at azimuth ``a``, elevation ``e`` (degrees) and radius ``r`` sits at
    ``(r·cos e·sin a, r·sin e, r·cos e·cos a)`` looking at the origin with +y up.  Azimuth 0 sees the
    face, +90 the subject's left cheek, 180 the back of the head; positive elevation looks down
    from above.
Camera frame (OpenGL)
    x right, y up, the camera looks down -z.  ``w2c`` maps world points to this frame.
Images
    Row 0 is the top of the image; pixel (i, j) has its centre at (j + 0.5, i + 0.5).  Intrinsics
    ``fx, fy, cx, cy`` are in pixels with that origin (v grows downwards), so a camera-frame point
    (X, Y, Z), Z < 0, lands at ``u = cx + fx·X/(-Z)``, ``v = cy - fy·Y/(-Z)``.
PanoHead/EG3D crops
    Normalised focal 4.2647 and principal point 0.5 (both in units of the image size), i.e. a
    vertical field of view of about 13.37°.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, TypeVar

import numpy as np
import torch
from numpy.typing import ArrayLike

from common.errors import require

Points = TypeVar("Points", np.ndarray, torch.Tensor)

PANOHEAD_FOCAL = 4.2647
"""PanoHead/EG3D normalised focal length (in units of the image size)."""

DEFAULT_NEAR = 0.05
DEFAULT_FAR = 100.0


def orbit_position(azimuth_deg: float, elevation_deg: float, radius: float) -> np.ndarray:
    """World position (3,) of an orbit camera."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([radius * math.cos(e) * math.sin(a), radius * math.sin(e), radius * math.cos(e) * math.cos(a)])


def look_at(eye: ArrayLike, target: ArrayLike = (0.0, 0.0, 0.0), up: ArrayLike = (0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world (4, 4) of an OpenGL camera at ``eye`` looking at ``target``."""
    position = np.asarray(eye, dtype=np.float64)
    back = position - np.asarray(target, dtype=np.float64)
    back /= np.linalg.norm(back)
    right = np.cross(np.asarray(up, dtype=np.float64), back)
    if np.linalg.norm(right) < 1e-8:  # looking straight up or down: pick any right vector
        right = np.cross(np.array([0.0, 0.0, 1.0]), back)
    right /= np.linalg.norm(right)
    true_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, back, position
    return c2w


def fov_to_focal(fov_deg: float, size: float) -> float:
    """Focal length in pixels for a field of view (degrees) spanning ``size`` pixels."""
    return 0.5 * size / math.tan(0.5 * math.radians(fov_deg))


def focal_to_fov(focal: float, size: float) -> float:
    return math.degrees(2.0 * math.atan(0.5 * size / focal))


@dataclass
class Camera:
    """A pinhole camera in the project convention (see module docstring).

    Attributes:
        w2c: (4, 4) world-to-camera, OpenGL camera frame.
        fx, fy, cx, cy: intrinsics in pixels (row 0 at the top).
        width, height: image size in pixels.
    """

    w2c: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_fov(cls, w2c: np.ndarray, fov_y_deg: float, width: int, height: int | None = None) -> "Camera":
        height = width if height is None else height
        f = fov_to_focal(fov_y_deg, height)
        return cls(np.asarray(w2c, dtype=np.float64), f, f, width / 2.0, height / 2.0, int(width), int(height))

    @classmethod
    def from_normalized_focal(cls, w2c: np.ndarray, size: int, focal: float = PANOHEAD_FOCAL, principal: float = 0.5) -> "Camera":
        """A square camera with PanoHead/EG3D-style normalised intrinsics."""
        f = focal * size
        return cls(np.asarray(w2c, dtype=np.float64), f, f, principal * size, principal * size, int(size), int(size))

    @classmethod
    def orbit(cls, azimuth_deg: float, elevation_deg: float, radius: float, fov_y_deg: float, size: int) -> "Camera":
        c2w = look_at(orbit_position(azimuth_deg, elevation_deg, radius))
        return cls.from_fov(np.linalg.inv(c2w), fov_y_deg, size)

    # --- derived quantities -------------------------------------------------------------------
    @property
    def c2w(self) -> np.ndarray:
        return np.linalg.inv(self.w2c)

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3]

    @property
    def fov_y_deg(self) -> float:
        return focal_to_fov(self.fy, self.height)

    @property
    def K(self) -> np.ndarray:
        """OpenCV-style (3, 3) intrinsics for pixel coordinates (row 0 at the top)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def w2c_opencv(self) -> np.ndarray:
        """World-to-camera in OpenCV's frame (x right, y down, z forward)."""
        return np.diag([1.0, -1.0, -1.0, 1.0]) @ self.w2c

    def projection(self, near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR) -> np.ndarray:
        """OpenGL (4, 4) projection: camera frame to clip space (NDC y up, row 0 at NDC y = +1)."""
        w, h = self.width, self.height
        return np.array(
            [
                [2 * self.fx / w, 0.0, 1.0 - 2 * self.cx / w, 0.0],
                [0.0, 2 * self.fy / h, 2 * self.cy / h - 1.0, 0.0],
                [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
                [0.0, 0.0, -1.0, 0.0],
            ]
        )

    def mvp(self, near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR) -> np.ndarray:
        """World to clip space (4, 4)."""
        return self.projection(near, far) @ self.w2c

    def project(self, points: Points) -> tuple[Points, Points]:
        """Project world points (..., N, 3) to pixels (..., N, 2) and their depth along the view axis (..., N); a
        torch tensor stays one (differentiable, in its dtype and device)."""
        if isinstance(points, torch.Tensor):
            w2c = torch.as_tensor(self.w2c, dtype=points.dtype, device=points.device)
            pc = points @ w2c[:3, :3].T + w2c[:3, 3]
        else:
            pc = points @ self.w2c[:3, :3].T + self.w2c[:3, 3]
        depth = -pc[..., 2]
        u = self.cx + self.fx * pc[..., 0] / depth
        v = self.cy - self.fy * pc[..., 1] / depth
        if isinstance(points, torch.Tensor):
            return torch.stack([u, v], dim=-1), depth
        return np.stack([u, v], axis=-1), depth

    def unproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """World points (N, 3) at pixels (N, 2) and view-axis depths (N,)."""
        x = (pixels[:, 0] - self.cx) / self.fx * depth
        y = -(pixels[:, 1] - self.cy) / self.fy * depth
        pc = np.stack([x, y, -depth], axis=1)
        c2w = self.c2w
        return pc @ c2w[:3, :3].T + c2w[:3, 3]

    def resized(self, width: int, height: int | None = None) -> "Camera":
        """The same view at another resolution (intrinsics scaled)."""
        height = width if height is None else height
        sx, sy = width / self.width, height / self.height
        return Camera(self.w2c.copy(), self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    def cropped(self, x0: float, y0: float, w: float, h: float, width: int, height: int | None = None) -> "Camera":
        """The camera that sees the pixel box (x0, y0, w, h) of this one, resampled to width×height."""
        height = width if height is None else height
        sx, sy = width / w, height / h
        return Camera(self.w2c.copy(), self.fx * sx, self.fy * sy, (self.cx - x0) * sx, (self.cy - y0) * sy, int(width), int(height))

    # --- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "convention": "world +y up, head faces +z; OpenGL camera frame (x right, y up, looks down -z); "
            "pixels with row 0 at the top; see representations/cameras.py",
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "fov_y_deg": self.fov_y_deg,
            "normalized_focal": self.fy / self.height,
            "w2c": self.w2c.tolist(),
            "position": self.position.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(np.asarray(d["w2c"], dtype=np.float64), float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"]))


@dataclass(frozen=True)
class OrbitRange:
    """Ranges (min, max) for random orbit cameras (degrees for angles); e.g. `fit.geometry.views`."""

    azimuth: tuple[float, float] = (-180.0, 180.0)
    elevation: tuple[float, float] = (-15.0, 45.0)
    radius: tuple[float, float] = (3.5, 4.5)
    fov_y: tuple[float, float] = (25.0, 45.0)

    def __post_init__(self) -> None:
        require(self.azimuth[0] <= self.azimuth[1], "azimuth", "must be (min, max) with min <= max")
        require(-89.0 <= self.elevation[0] <= self.elevation[1] <= 89.0, "elevation", "must be (min, max) within [-89, 89]")
        # the head spans about ±1: a camera nearer than 1.5 sits in it
        require(1.5 < self.radius[0] <= self.radius[1], "radius", "must be (min, max) with min > 1.5")
        require(5.0 <= self.fov_y[0] <= self.fov_y[1] <= 120.0, "fov_y", "must be (min, max) within [5, 120]")


@dataclass(frozen=True)
class OrbitView:
    azimuth: float
    elevation: float
    radius: float
    fov_y: float

    def camera(self, size: int) -> Camera:
        return Camera.orbit(self.azimuth, self.elevation, self.radius, self.fov_y, size)


def sample_orbits(rng: np.random.Generator, n: int, ranges: OrbitRange = OrbitRange()) -> list[OrbitView]:
    """Random orbit views, uniform in each range (elevation uniform in angle)."""
    out = []
    for _ in range(n):
        out.append(
            OrbitView(
                float(rng.uniform(*ranges.azimuth)),
                float(rng.uniform(*ranges.elevation)),
                float(rng.uniform(*ranges.radius)),
                float(rng.uniform(*ranges.fov_y)),
            )
        )
    return out


# --- fixed view sets ------------------------------------------------------------------------
EXPORT_AZIMUTHS = (0.0, 30.0, -30.0, 60.0, -60.0, 90.0, -90.0, 180.0)
"""Azimuths of the exported `views/` (elevation 0)."""

EVAL_VIEWS = {"left_frontal": 45.0, "left": 90.0, "right_frontal": -45.0, "right": -90.0, "rear": 180.0}
"""The paper's five evaluation views by azimuth (the subject's left is +azimuth), elevation 0."""

INPAINT_TRAJECTORY_ELEVATIONS = (-15.0,) * 10 + (45.0,) * 5
INPAINT_TRAJECTORY_AZIMUTHS = (-45.0, 45.0, 0.0, -90.0, 90.0, 120.0, -120.0, 150.0, -150.0, 180.0, 0.0, 90.0, -90.0, 135.0, -135.0)


def inpainting_trajectory(radius: float = 3.8, fov_y_deg: float = 30.0) -> list[OrbitView]:
    """The 15-view texture-inpainting path of the seed paper (see ARCHITECTURE.md)."""
    return [OrbitView(a, e, radius, fov_y_deg) for a, e in zip(INPAINT_TRAJECTORY_AZIMUTHS, INPAINT_TRAJECTORY_ELEVATIONS)]


def view_name(azimuth_deg: float, elevation_deg: float) -> str:
    """File stem for a view, e.g. ``az+030_el+00``."""
    return f"az{int(round(azimuth_deg)):+04d}_el{int(round(elevation_deg)):+03d}"


def turntable(n: int, elevation_deg: float, radius: float, fov_y_deg: float) -> Iterable[OrbitView]:
    for i in range(n):
        yield OrbitView(360.0 * i / n, elevation_deg, radius, fov_y_deg)
