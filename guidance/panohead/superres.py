"""EG3D/PanoHead super-resolution: the neural rendering (raw rgb + features) resized to the
module's input resolution, then two StyleGAN2 'skip' blocks driven by the last w.

The official modules differ only in sizes: ``SuperresolutionHybrid8XDC`` (512 output; input 128;
blocks 256 and 128 channels, both upsampling), ``...8X`` (512; 128; 128/64, both up), ``...4X``
(256; 128; 128/64, first block keeps the resolution), ``...2X`` (128; 64; 128/64, first keeps).
Tiny test instances give ``sr_channels`` explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from guidance.panohead.layers import SynthesisBlock


@dataclass(frozen=True)
class SuperResolutionLayout:
    input_resolution: int
    channels: tuple[int, int]
    first_block_up: bool


LAYOUTS = {
    "SuperresolutionHybrid8XDC": lambda res: SuperResolutionLayout(res // 4, (256, 128), True),
    "SuperresolutionHybrid8X": lambda res: SuperResolutionLayout(res // 4, (128, 64), True),
    "SuperresolutionHybrid4X": lambda res: SuperResolutionLayout(res // 2, (128, 64), False),
    "SuperresolutionHybrid2X": lambda res: SuperResolutionLayout(res // 2, (128, 64), False),
}


def layout_for(module_name: str, img_resolution: int, channels: Optional[tuple[int, int]] = None) -> SuperResolutionLayout:
    short = module_name.rsplit(".", 1)[-1]
    if short not in LAYOUTS:
        raise ValueError(f"unsupported super-resolution module {module_name!r} (known: {', '.join(LAYOUTS)})")
    layout = LAYOUTS[short](img_resolution)
    return layout if channels is None else SuperResolutionLayout(layout.input_resolution, (int(channels[0]), int(channels[1])), layout.first_block_up)


class SuperResolution(nn.Module):
    """rgb (N, 3, r, r), features (N, C, r, r), ws (N, num_ws, w_dim) -> image (N, 3, R, R)."""

    def __init__(self, feature_channels: int, img_resolution: int, w_dim: int, layout: SuperResolutionLayout,
                 conv_clamp: Optional[float] = None, antialias: bool = True):
        super().__init__()
        self.input_resolution, self.antialias = layout.input_resolution, antialias
        mid = img_resolution // 2
        self.block0 = SynthesisBlock(feature_channels, layout.channels[0], w_dim, mid if layout.first_block_up else layout.input_resolution,
                                     3, conv_clamp, up=layout.first_block_up)
        self.block1 = SynthesisBlock(layout.channels[0], layout.channels[1], w_dim, img_resolution, 3, conv_clamp)

    def _resize(self, x: Tensor) -> Tensor:
        if x.shape[-1] == self.input_resolution:
            return x
        size = (self.input_resolution, self.input_resolution)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.antialias)

    def forward(self, rgb: Tensor, features: Tensor, ws: Tensor, noise_mode: str = "none") -> Tensor:
        ws = ws[:, -1:].repeat(1, 3, 1)
        x, img = self.block0(self._resize(features), self._resize(rgb), ws, noise_mode)
        _, img = self.block1(x, img, ws, noise_mode)
        return img
