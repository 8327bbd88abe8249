"""LPIPS v0.1 (Zhang et al. 2018), the project's one implementation: unit-normalised trunk features at
five ReLUs, squared differences weighted per channel by linear heads, averaged over space, summed over layers.

Weight file (safetensors, or a torch state dict when ``models.allow_pickle=[lpips]``, read by the one
guarded loader `guidance.weights.load_state_dict`): the trunk's torchvision names
``features.{i}.weight/bias`` plus the LPIPS linear heads ``lin{0..4}.model.1.weight`` (shape (1, C, 1, 1)),
the layout of the public LPIPS weights merged with torchvision's features. Two trunks:

* ``vgg16`` — ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}``, heads C = 64, 128, 256, 512, 512; images
  area-resized to 256² first. GAN inversion (`init.gan.lpips_weights`) and texture refinement
  (`fit.texture.lpips_weights`).
* ``alex`` — ``features.{0,3,6,8,10}``, heads C = 64, 192, 384, 256, 256; images at their own size.
  `run.py eval` (`models.lpips`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import MissingModelError
from guidance.weights import load_state_dict

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 `features` up to relu5_3."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers)


def alex_features() -> nn.Sequential:
    """torchvision's AlexNet `features` up to the fifth ReLU."""
    conv = nn.Conv2d
    return nn.Sequential(
        conv(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        conv(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        conv(192, 384, 3, padding=1), nn.ReLU(), conv(384, 256, 3, padding=1), nn.ReLU(),
        conv(256, 256, 3, padding=1), nn.ReLU())


@dataclass(frozen=True)
class Trunk:
    features: Callable[[], nn.Sequential]
    taps: tuple[int, ...]
    """`features` indices whose outputs are compared (the five ReLUs)."""
    widths: tuple[int, ...]
    size: Optional[int]
    """Images are area-resized to size² first; None: compared at their own size."""


TRUNKS = {
    "vgg16": Trunk(vgg16_features, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512), 256),
    "alex": Trunk(alex_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256), None),
}


def _file_key(own_key: str) -> str:
    """The weight file's name of one of our parameters (`lins.2.weight` → `lin2.model.1.weight`)."""
    if own_key.startswith("lins."):
        return f"lin{own_key.split('.')[1]}.model.1.weight"
    return own_key


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")


class LPIPS(nn.Module):
    """LPIPS distance (N,) between images (N, 3, H, W) in [-1, 1], with the ``trunk`` of `TRUNKS`."""

    shift: Tensor  # buffers
    scale: Tensor

    def __init__(self, trunk: str = "vgg16") -> None:
        super().__init__()
        self.trunk = TRUNKS[trunk]
        self.trunk_name = trunk
        self.features = self.trunk.features()
        self.lins = nn.ModuleList(nn.Conv2d(width, 1, 1, bias=False) for width in self.trunk.widths)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE)[None, :, None, None], persistent=False)

    @classmethod
    def from_file(cls, path: str | Path, trunk: str = "vgg16", allow_pickle: bool = False, key: str = "") -> "LPIPS":
        """Frozen, in eval mode, from a safetensors file, or a pickle (`.pth`, `.pt` ...) only when
        `allow_pickle`; ``key`` names the setting that points at the file (for the messages)."""
        model = cls(trunk)
        model.load_weights(load_state_dict(path, allow_pickle, "lpips"), f"{path}" + (f" ({key})" if key else ""))
        return model.eval().requires_grad_(False)

    def load_weights(self, state: dict[str, Tensor], source: str) -> None:
        """Our parameters from a weight file's ``state`` (module docstring layout); extra entries are ignored."""
        own = self.state_dict()
        missing = [_file_key(k) for k in own if _file_key(k) not in state]
        wrong = [_file_key(k) for k in own if _file_key(k) in state and state[_file_key(k)].shape != own[k].shape]
        where = f"LPIPS {self.trunk_name} weights {source}"
        if missing:
            raise MissingModelError(f"{where} lack {_listed(missing)} (see guidance/lpips.py)")
        if wrong:
            raise MissingModelError(f"{where} have wrong shapes for {_listed(wrong)} (see guidance/lpips.py)")
        self.load_state_dict({k: state[_file_key(k)] for k in own})

    def _taps(self, x: Tensor) -> list[Tensor]:
        if self.trunk.size is not None:
            x = F.interpolate(x, size=(self.trunk.size, self.trunk.size), mode="area")
        x = (x - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.trunk.taps:
                taps.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
            if index == self.trunk.taps[-1]:
                break
        return taps

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        total = a.new_zeros(a.shape[0])
        for lin, fa, fb in zip(self.lins, self._taps(a), self._taps(b)):
            total = total + lin((fa - fb).square()).mean(dim=[1, 2, 3])
        return total
