"""The perceptual term of GAN inversion: LPIPS with the VGG16 trunk at 256² (`guidance.lpips`), from
the weight file `init.gan.lpips_weights`.

Fallback when no LPIPS weights are configured (`StructureLoss`): a multi-scale L1 distance between
the images and between their finite-difference gradients (scales 1, 1/2, 1/4). It is no perceptual
metric — it only keeps edges aligned — so inversions without LPIPS weights reconstruct colours and
layout but are less sharp than the paper's; `perceptual_loss` logs which one is used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import MissingModelError
from guidance.lpips import LPIPS

log = logging.getLogger("headfit")


class StructureLoss(nn.Module):
    """Fallback: multi-scale L1 of images and image gradients, (N,) per pair, images in [-1, 1]."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        total = a.new_zeros(a.shape[0])
        for level in range(3):
            if level:
                a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            d = a - b
            grads = (d[..., 1:, :] - d[..., :-1, :]).abs().mean(dim=[1, 2, 3]) + (d[..., :, 1:] - d[..., :, :-1]).abs().mean(dim=[1, 2, 3])
            total = total + d.abs().mean(dim=[1, 2, 3]) + grads
        return total


def perceptual_loss(weights: Optional[str | Path], allow_pickle: bool = False) -> nn.Module:
    """LPIPS(VGG16) from `weights` (a pickle only when `allow_pickle`), or the documented
    `StructureLoss` fallback when None."""
    if weights:
        if not Path(weights).is_file():
            raise MissingModelError(f"LPIPS VGG16 weights {weights} (init.gan.lpips_weights) do not exist")
        return LPIPS.from_file(weights, "vgg16", allow_pickle, key="init.gan.lpips_weights")
    log.warning("init: no LPIPS VGG16 weights configured (init.gan.lpips_weights); inverting with the structure-loss fallback")
    return StructureLoss()
