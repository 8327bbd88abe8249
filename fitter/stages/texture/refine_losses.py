"""Image losses of texture refinement: the perceptual term and total variation (of the reference-view render).

Perceptual term: LPIPS (VGG16 trunk, `guidance.lpips.LPIPS`) when a weight file is
configured (`fit.texture.lpips_weights`). Without one, `StructureLoss` stands in: at three scales
(1, 1/2, 1/4) the SSIM dissimilarity (1 − SSIM)/2 (11-pixel Gaussian window) plus the L1 distance of
the images' Sobel gradients. It is not a learned perceptual metric: it rewards matching local
structure and edges, which is what pulls the texture towards the denoised view's detail, but it
does not know which details matter to people the way LPIPS does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import MissingModelError
from guidance.lpips import LPIPS

log = logging.getLogger("headfit")


class StructureLoss(nn.Module):
    """Mean over the batch of Σ_scales [(1 − SSIM)/2 + ‖∇a − ∇b‖₁] for images (N, 3, H, W) in [0, 1]."""

    def __init__(self, scales: int = 3) -> None:
        super().__init__()
        self.scales = scales

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        import kornia

        total = a.new_zeros(())
        for level in range(self.scales):
            if level:
                a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            window = 11 if min(a.shape[-2:]) >= 22 else 3
            total = total + kornia.losses.ssim_loss(a, b, window_size=window, reduction="mean")
            grad_a, grad_b = kornia.filters.spatial_gradient(a), kornia.filters.spatial_gradient(b)
            total = total + (grad_a - grad_b).abs().mean()
        return total


class LPIPSLoss(nn.Module):
    """Mean LPIPS(VGG16) over the batch, images (N, 3, H, W) in [0, 1]."""

    def __init__(self, weights: str | Path, allow_pickle: bool = False) -> None:
        super().__init__()
        self.net = LPIPS.from_file(weights, "vgg16", allow_pickle, key="fit.texture.lpips_weights")

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.net(a * 2.0 - 1.0, b * 2.0 - 1.0).mean()


def perceptual_loss(weights: Optional[str], device: torch.device | str = "cpu", allow_pickle: bool = False) -> nn.Module:
    """LPIPS from ``weights`` (a file; a pickle only when ``allow_pickle``), else the documented `StructureLoss` fallback."""
    if weights:
        if not Path(weights).expanduser().is_file():
            raise MissingModelError(f"fit.texture.lpips_weights={weights} is not a file")
        return LPIPSLoss(Path(weights).expanduser(), allow_pickle).to(device)
    log.info("texture: no LPIPS weights (fit.texture.lpips_weights); refinement uses the multi-scale SSIM/gradient fallback")
    return StructureLoss().to(device)


def total_variation(image: Tensor) -> Tensor:
    """Σ of the squared differences of neighbouring pixels (down and right) of an (H, W, C) image: the
    authors' TV of the reference-view render (jinkun-hao/ID-Sculpt `threestudio/utils/tvloss.py`, applied
    in `threestudio/systems/IDsculpt_tex.py` with ``lambda_tv: 0.0005``), a sum, not a mean."""
    return ((image[1:] - image[:-1]) ** 2).sum() + ((image[:, 1:] - image[:, :-1]) ** 2).sum()
