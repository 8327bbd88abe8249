"""The head-centred square crop: FFHQ alignment (Karras et al., as used for EG3D/PanoHead data).

From the eye centres and mouth corners: ``eye_to_eye`` and ``eye_to_mouth`` define an oriented
square (roll removed: its horizontal axis blends the eye line with the perpendicular of the
eye-to-mouth line), half-side ``max(2·|eye_to_eye|, 1.8·|eye_to_mouth|)·crop_scale``, centred at
``eye_avg + 0.1·eye_to_mouth``. Unlike the original script there is no integer rounding, shrinking or
cropping in steps: one exact similarity transform is applied, so the crop moves continuously with the
landmarks and a small shift of the input gives the same crop.

Padding: outside the photo the crop is the constant background grey (`intake.background`), the
same grey transparent pixels get. Mirrored padding would invent extra hair and shoulders that the
segmenter could take for foreground.
"""

from __future__ import annotations

import numpy as np

from fitter.stages.intake import meshpoints as mpi
from fitter.stages.intake.warp import square_transform


def eye_mouth_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-left eye, image-right eye and mouth centres (2D) of a frontal-ish face."""
    right_eye = points[list(mpi.RIGHT_EYE_CONTOUR), :2].mean(0)  # subject's right = image left
    left_eye = points[list(mpi.LEFT_EYE_CONTOUR), :2].mean(0)
    mouth = 0.5 * (points[mpi.MOUTH_RIGHT_CORNER, :2] + points[mpi.MOUTH_LEFT_CORNER, :2])
    return right_eye, left_eye, mouth


def crop_transform(points: np.ndarray, size: int, crop_scale: float = 1.0) -> np.ndarray:
    """3x3 transform from input pixels to the size x size aligned crop."""
    eye_a, eye_b, mouth = eye_mouth_centres(points)
    eye_avg = 0.5 * (eye_a + eye_b)
    eye_to_eye = eye_b - eye_a
    eye_to_mouth = mouth - eye_avg
    # eye_to_mouth turned a quarter-turn, (-y, x), points to the image left on an upright face;
    # subtracting it from eye_to_eye blends both cues for the crop's horizontal axis (roll removed).
    x_dir = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    half = max(2.0 * np.linalg.norm(eye_to_eye), 1.8 * np.linalg.norm(eye_to_mouth)) * crop_scale
    centre = eye_avg + 0.1 * eye_to_mouth
    return square_transform(centre, x_dir, 2.0 * half, size)


def landmarks_in_crop(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(N, 3) landmarks mapped into the crop; z scaled by the same factor as x and y."""
    scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    xy = points[:, :2] @ m[:2, :2].T + m[:2, 2]
    return np.column_stack([xy, points[:, 2] * scale])
