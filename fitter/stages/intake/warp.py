"""Square similarity transforms and resampling, in continuous pixel coordinates.

Coordinates follow representations/cameras.py: (0, 0) is the top-left corner of the image and pixel
(i, j) has its centre at (j + 0.5, i + 0.5). Transforms are 3x3 matrices mapping input to output.
"""

from __future__ import annotations

import cv2
import numpy as np


def similarity(centre: np.ndarray, side: float, angle_rad: float, size: int) -> np.ndarray:
    """3x3 map of the square (centre, side, rotated by angle) onto an upright size x size image."""
    x_dir = np.array([np.cos(angle_rad), np.sin(angle_rad)])
    return square_transform(np.asarray(centre, dtype=np.float64), x_dir, side, size)


def square_transform(centre: np.ndarray, x_dir: np.ndarray, side: float, size: int) -> np.ndarray:
    """3x3 map of the square centred at `centre` whose rightward axis is `x_dir` onto size x size."""
    x_dir = x_dir / np.linalg.norm(x_dir)
    y_dir = np.array([-x_dir[1], x_dir[0]])  # image y points down, so this is x turned clockwise
    k = size / side
    rot = k * np.stack([x_dir, y_dir])
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = size / 2.0 - rot @ centre
    return m


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points with a 3x3 similarity/affine transform."""
    return points @ m[:2, :2].T + m[:2, 2]


def scale_of(m: np.ndarray) -> float:
    """Output pixels per input pixel."""
    return float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))


def _shrink(image: np.ndarray, m: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Box-filter the part of `image` the output needs by an integer factor, so that a strong
    downscale does not alias; returns the smaller source and the transform from it."""
    factor = int(1.0 / scale_of(m))
    corners = apply(np.linalg.inv(m), np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
    h, w = image.shape[:2]
    # Align the sub-image to the global factor grid so the result does not depend on the crop origin.
    x0 = max(0, int(np.floor(corners[:, 0].min() / factor)) - 1) * factor
    y0 = max(0, int(np.floor(corners[:, 1].min() / factor)) - 1) * factor
    x1 = min(w, (int(np.ceil(corners[:, 0].max() / factor)) + 1) * factor)
    y1 = min(h, (int(np.ceil(corners[:, 1].max() / factor)) + 1) * factor)
    nw, nh = (x1 - x0) // factor, (y1 - y0) // factor
    if nw < 2 or nh < 2:
        return image, m
    sub = image[y0 : y0 + nh * factor, x0 : x0 + nw * factor]
    small = cv2.resize(sub, (nw, nh), interpolation=cv2.INTER_AREA)
    to_small = np.array([[1.0 / factor, 0, -x0 / factor], [0, 1.0 / factor, -y0 / factor], [0, 0, 1]])
    return small, m @ np.linalg.inv(to_small)


def warp_image(image: np.ndarray, m: np.ndarray, size: int, background: float = 0.5) -> np.ndarray:
    """Resample `image` (HxW or HxWxC, uint8 or float32) through `m` to size x size.

    Outside the input the output is the constant `background` (in [0, 1] of the full range).
    """
    if scale_of(m) < 0.5:
        image, m = _shrink(image, m, size)
    # OpenCV puts pixel centres at integer coordinates: shift by half a pixel on both sides.
    a = m[:2, :2]
    b = m[:2, 2] + a @ np.array([0.5, 0.5]) - 0.5
    cv_m = np.column_stack([a, b])
    full = 255.0 if image.dtype == np.uint8 else 1.0
    fill = (background * full,) * (image.shape[2] if image.ndim == 3 else 1)
    interp = cv2.INTER_CUBIC if scale_of(m) > 1.0 else cv2.INTER_LINEAR
    return cv2.warpAffine(image, cv_m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
