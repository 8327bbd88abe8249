"""Foreground masks of multi-view images: their alpha channel, else MediaPipe selfie segmentation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fitter.stages.intake.masking import selfie_probability

SELFIE_THRESHOLD = 0.5


def has_alpha(rgba: np.ndarray) -> bool:
    """Whether an (H, W, 4) uint8 image carries a real cut-out (not all opaque)."""
    return rgba.shape[-1] == 4 and bool((rgba[..., 3] < 250).any())


def largest_filled_component(mask: np.ndarray) -> np.ndarray:
    """The biggest connected part of a bool (H, W) mask with its holes filled."""
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


def view_mask(rgba: np.ndarray) -> np.ndarray:
    """(H, W) float32 foreground in [0, 1] of an (H, W, 4) uint8 image: the alpha channel when the
    image has one, else the selfie segmenter's largest component (holes filled)."""
    if has_alpha(rgba):
        return rgba[..., 3].astype(np.float32) / 255.0

    person = selfie_probability(np.ascontiguousarray(rgba[..., :3])) > SELFIE_THRESHOLD
    return largest_filled_component(person).astype(np.float32)
