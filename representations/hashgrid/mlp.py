"""``HashGridMLP``: hash encoding followed by a small ReLU MLP."""

from __future__ import annotations

import torch
from torch import nn

from .config import HashGridConfig
from .encoding import HashGridEncoding


class HashGridMLP(nn.Module):
    """(N, 3) points → (N, out_channels): encoding, ``config.layers`` hidden layers of ``config.hidden``.

    Construction is deterministic in ``seed`` and leaves the global RNG untouched. Points live in ``[-bound, bound]^3``.
    """

    def __init__(self, out_channels: int, config: HashGridConfig = HashGridConfig(), backend: str = "auto", seed: int = 0,
                 bound: float = 1.0):
        super().__init__()
        self.encoding = HashGridEncoding(config, backend=backend, seed=seed, bound=bound)
        widths = [config.out_dim] + [config.hidden] * config.layers
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = []
            for w_in, w_out in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(w_in, w_out), nn.ReLU()]
            head = nn.Linear(widths[-1], out_channels)
            nn.init.zeros_(head.bias)
            self.net = nn.Sequential(*layers, head)
        self.out_channels = out_channels

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points: (N, 3) → (N, out_channels), in the dtype of the parameters."""
        feats = self.encoding(points).to(self.net[0].weight.dtype)
        return self.net(feats)
