"""What the prior fit is fitted to, read from the intake's `subject/` and checked.

* landmarks: MediaPipe's 478 (468 mesh points and 10 iris points), x, y in pixels of the 512² crop, and z, its
  relative depth in the same pixel units (more negative = nearer), from `subject/landmarks.json`;
* the reference camera at 512²;
* the silhouette, as a distance map. The intake keeps one foreground mask, the whole head with its hair (selfie
  segmentation, or the union of the face-parsing labels), not the skin and ears alone. So the silhouette is
  one-sided: the head must stay inside the mask (hair only adds to a head; where the hair is short, this holds the
  skull and the ears), measured as each vertex's distance outside it; the face itself is held by its 468
  landmarks, the face oval among them. Rows below the chin are left out: the mask is cut at the neck and clothes
  hide it, while anny's neck runs down to its base.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from common.errors import UserError
from fitter.subject import LANDMARKS, Subject
from representations.cameras import Camera

LANDMARK_SIZE = 512
"""Landmark errors are measured in pixels of a 512² crop."""
NUM_LANDMARKS = 478
NUM_MESH = 468
IRIS = slice(468, 478)
CHIN = 152
FOREHEAD_TOP = 10
CHIN_MARGIN = 0.02
"""The silhouette's rows end this fraction of the face height below the chin landmark."""
PAD = 64
"""Margin (pixels) of the distance map around the 512² crop, so vertices just outside it are still measured."""


@dataclass
class Targets:
    landmarks: Tensor
    """(478, 2) pixels at 512²."""
    depth: Tensor
    """(478,) MediaPipe relative depth, pixels at 512²."""
    world: Tensor
    """(478, 3) the intake's landmarks in world units (on the camera rays; the fit's start)."""
    camera: Camera
    """The reference camera at 512²."""
    outside: Tensor
    """(512 + 2·PAD, 512 + 2·PAD) distance (pixels) of each pixel outside the photo's mask to the mask; 0 inside it
    and below the chin. Pixel (i, j) of the crop is entry (i + PAD, j + PAD)."""

    @property
    def mean_depth(self) -> float:
        """Mean view-axis depth of the intake's world mesh landmarks (where the canonical layout put the face)."""
        return float(self.camera.project(self.world[:NUM_MESH].double().numpy())[1].mean())


def read_targets(subject: Subject) -> Targets:
    points, world = _landmarks(subject)
    px = points * (LANDMARK_SIZE / subject.crop_size)
    return Targets(
        landmarks=torch.tensor(px[:, :2], dtype=torch.float32),
        depth=torch.tensor(px[:, 2], dtype=torch.float32),
        world=torch.tensor(world, dtype=torch.float32),
        camera=subject.camera(LANDMARK_SIZE),
        outside=torch.tensor(outside_distance(subject.mask(LANDMARK_SIZE).numpy() > 0.5, px[:, :2])),
    )


def _landmarks(subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """(478, 3) crop-pixel landmarks with depth and (478, 3) world landmarks; UserError when unusable."""
    path = subject.path(LANDMARKS)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        points = np.asarray(data["landmarks"], dtype=np.float64)
        world = np.asarray(data["world"], dtype=np.float64)
        int(data["crop_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"prior: cannot read the face landmarks in {path} ({type(exc).__name__}); run the intake again") from None
    if points.shape != (NUM_LANDMARKS, 3) or world.shape != (NUM_LANDMARKS, 3):
        raise UserError(f"prior: {path} holds {len(points)} face landmarks, expected {NUM_LANDMARKS}; run the intake again")
    if not (np.isfinite(points).all() and np.isfinite(world).all()):
        raise UserError(f"prior: {path} has non-finite face landmarks (NaN or inf); run the intake again")
    return points, world


def outside_distance(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`Targets.outside` from the photo's mask (512, 512) bool and the landmarks (x, y pixels at 512²)."""
    face_height = max(points[CHIN, 1] - points[FOREHEAD_TOP, 1], 1.0)
    last_row = int(np.ceil(points[CHIN, 1] + CHIN_MARGIN * face_height))
    allowed = np.pad(mask, PAD, constant_values=False)
    allowed[PAD + max(last_row, 0):, :] = True
    outside = cv2.distanceTransform((~allowed).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return outside.astype(np.float32)


def sample(image: Tensor, px: Tensor) -> Tensor:
    """Bilinear samples (...) of a padded map (`Targets.outside`) at pixels (..., 2) (x, y; centres at +0.5),
    clamped at the map's border."""
    size = image.shape[0]
    xy = (px + (PAD - 0.5)).clamp(0, size - 1.001)
    corner = xy.floor()
    x0, y0 = corner.long().unbind(-1)
    fx, fy = (xy - corner).unbind(-1)
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy
