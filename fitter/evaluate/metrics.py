"""Image metrics for runs: PSNR/SSIM inside a mask, and identity distances."""

from __future__ import annotations

from typing import Optional

import numpy as np
from skimage.metrics import structural_similarity


def psnr_masked(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) over the pixels where ``mask`` (H, W) > 0.5; images (H, W, C) in [0, 1]."""
    keep = mask > 0.5
    if not keep.any():
        return float("nan")
    mse = float(np.mean((pred[keep] - target[keep]) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim_masked(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the masked pixels (SSIM map computed on the whole image, Gaussian window)."""
    keep = mask > 0.5
    if not keep.any():
        return float("nan")
    _, ssim_map = structural_similarity(pred, target, channel_axis=-1, data_range=1.0, gaussian_weights=True, full=True)
    return float(ssim_map.mean(axis=-1)[keep].mean())


def identity_distance(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[float]:
    """L2 distance between two dlib 128-D embeddings (0.6 is the usual same-person threshold)."""
    if a is None or b is None:
        return None
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
