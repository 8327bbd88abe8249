"""The prior's anny -> world similarity (`prior/fit.json`), as one 4x4 matrix."""

from __future__ import annotations

import numpy as np

from fitter.stages.prior.head import ANNY_TO_WORLD_AXES

ANNY_AXES = ANNY_TO_WORLD_AXES.double().numpy()


def anny_to_world(fit: dict) -> np.ndarray:
    """(4, 4) M with world = M @ (anny, 1): ``scale · rotation · ANNY_AXES`` and the translation (fit.json's
    `similarity`)."""
    similarity = fit["similarity"]
    matrix = np.eye(4)
    matrix[:3, :3] = float(similarity["scale"]) * np.asarray(similarity["rotation"], dtype=np.float64) @ ANNY_AXES
    matrix[:3, 3] = np.asarray(similarity["translation"], dtype=np.float64)
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(..., 3) points through the (4, 4) affine `matrix`."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def apply_linear(matrix: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(..., 3) offsets through the linear part of `matrix`."""
    return offsets @ matrix[:3, :3].T
