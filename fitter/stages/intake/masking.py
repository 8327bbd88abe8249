"""Foreground mask of the head on the aligned crop.

Segmenter: MediaPipe selfie segmentation (person vs background), or a face-parsing model
(`intake.segmenter=face_parsing` with `models.face_parsing`: the union of its non-background labels).
The alpha channel of a transparent input, when there is one, limits the result. The face itself (the
hull of the landmarks) is always foreground. Everything lower than `neck_margin` face heights below
the chin is cut so shoulders stay out; then the largest connected part is kept with its holes filled.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from scipy import ndimage

from fitter.config import Config
from fitter.stages.intake import meshpoints as mpi
from fitter.stages.intake.native_quiet import native_stderr_to_log
from fitter.stages.intake.parsing import parsing_foreground

SELFIE_THRESHOLD = 0.5
SELFIE_THRESHOLD_WITH_ALPHA = 0.25
"""With a user alpha cut-out the segmenter only has to reject what the alpha kept, so it is looser."""
SIDE_MARGIN = 0.15


@functools.lru_cache(maxsize=1)
def selfie_segmenter():
    import mediapipe as mp

    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


@native_stderr_to_log()
def selfie_probability(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 person probability."""
    result = selfie_segmenter().process(np.ascontiguousarray(rgb))
    return np.asarray(result.segmentation_mask, dtype=np.float32)


def convex_hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8, 1 inside the convex hull of pixel points (N, 2) (x, y; pixel centres at +0.5)."""
    hull = cv2.convexHull(np.round(np.asarray(points, dtype=np.float64)[:, :2] - 0.5).astype(np.int32))
    out = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(out, hull, 1)
    return out


def _face_hull(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return convex_hull_mask(points[: mpi.NUM_MESH], shape).astype(bool)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


def neck_cut_row(points: np.ndarray, neck_margin: float) -> int:
    """First crop row below the kept neck (the crop is upright: roll was removed)."""
    chin_y = points[mpi.CHIN, 1]
    face_height = chin_y - points[mpi.FOREHEAD_TOP, 1]
    return int(np.ceil(chin_y + neck_margin * max(face_height, 0.0)))


def _cut_shoulders(fg: np.ndarray, points: np.ndarray, neck_margin: float) -> None:
    mesh = points[: mpi.NUM_MESH, :2]
    face_height = max(points[mpi.CHIN, 1] - points[mpi.FOREHEAD_TOP, 1], 1.0)
    x0 = int(np.floor(mesh[:, 0].min() - SIDE_MARGIN * face_height))
    x1 = int(np.ceil(mesh[:, 0].max() + SIDE_MARGIN * face_height))
    mouth_row = int(np.ceil(max(points[mpi.MOUTH_RIGHT_CORNER, 1], points[mpi.MOUTH_LEFT_CORNER, 1])))
    below = slice(max(0, mouth_row), None)
    fg[below, : max(0, x0)] = False
    fg[below, max(0, x1) :] = False
    fg[max(0, neck_cut_row(points, neck_margin)) :, :] = False


def foreground_mask(crop: np.ndarray, points: np.ndarray, alpha: np.ndarray | None, cfg: Config) -> np.ndarray:
    """(H, W) uint8 mask, 0 or 255."""
    h, w = crop.shape[:2]
    if cfg.intake.segmenter == "face_parsing":
        fg = parsing_foreground(crop, cfg.models)
    else:
        threshold = SELFIE_THRESHOLD if alpha is None else SELFIE_THRESHOLD_WITH_ALPHA
        fg = selfie_probability(crop) > threshold
    if alpha is not None:
        fg &= alpha > 0.5
    fg |= _face_hull(points, (h, w))
    _cut_shoulders(fg, points, cfg.intake.neck_margin)
    fg = ndimage.binary_fill_holes(_largest_component(fg))
    return fg.astype(np.uint8) * 255
