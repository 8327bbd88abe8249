"""The perceptual term of GAN inversion: LPIPS with VGG16 features at 256², from a weight file.

Weight file (safetensors, or a torch state dict when ``models.allow_pickle=true``, read by the one
guarded loader `guidance.weights.load_state_dict`): torchvision VGG16
names ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.weight/bias`` plus the LPIPS linear heads
``lin{0..4}.model.1.weight`` (shape (1, C, 1, 1)) — the layout of the public LPIPS 'vgg' weights
merged with torchvision's vgg16 features.

Fallback when no LPIPS weights are configured (`StructureLoss`): a multi-scale L1 distance between
the images and between their finite-difference gradients (scales 1, 1/2, 1/4). It is no perceptual
metric — it only keeps edges aligned — so inversions without LPIPS weights reconstruct colours and
layout but are less sharp than the paper's; `perceptual_loss` logs which one is used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import MissingModelError
from guidance.weights import load_state_dict

log = logging.getLogger("headfit")

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAP_AFTER = (3, 8, 15, 22, 29)
"""torchvision `features` indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_SIZE = 256


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


class LPIPSVGG16(nn.Module):
    """LPIPS distance (N,) between images (N, 3, H, W) in [-1, 1], both resized to 256²."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()
        widths = (64, 128, 256, 512, 512)
        for i, width in enumerate(widths):
            setattr(self, f"lin{i}", nn.Sequential(nn.Dropout(0.0), nn.Conv2d(width, 1, 1, bias=False)))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE)[None, :, None, None], persistent=False)

    @classmethod
    def from_file(cls, path: str | Path, allow_pickle: bool = False) -> "LPIPSVGG16":
        """From a safetensors file, or a pickle (`.pth`, `.pt` ...) only when `allow_pickle`."""
        model = cls()
        state = {k.replace(".model.1.", ".1."): v for k, v in load_state_dict(path, allow_pickle).items()}
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing:
            raise MissingModelError(f"LPIPS weights {path} lack {missing[:4]}{'...' if len(missing) > 4 else ''} (see guidance/panohead/perceptual.py)")
        if wrong:
            raise MissingModelError(f"LPIPS weights {path} have wrong shapes for {wrong[:4]} (see guidance/panohead/perceptual.py)")
        model.load_state_dict(state, strict=False)
        return model.eval().requires_grad_(False)

    def _taps(self, x: Tensor) -> list[Tensor]:
        x = (F.interpolate(x, size=(LPIPS_SIZE, LPIPS_SIZE), mode="area") - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_AFTER:
                taps.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
            if index == TAP_AFTER[-1]:
                break
        return taps

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        total = a.new_zeros(a.shape[0])
        for i, (fa, fb) in enumerate(zip(self._taps(a), self._taps(b))):
            total = total + getattr(self, f"lin{i}")((fa - fb).square()).mean(dim=[1, 2, 3])
        return total


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
        return LPIPSVGG16.from_file(weights, allow_pickle)
    log.warning("init: no LPIPS VGG16 weights configured (init.gan.lpips_weights); inverting with the structure-loss fallback")
    return StructureLoss()
