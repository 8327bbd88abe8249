"""``HashGridEncoding``: one flat parameter table, torch or tiny-cuda-nn backend."""

from __future__ import annotations

import torch
from torch import nn

from . import tcnn_backend
from .config import HashGridConfig, level_layout
from .torch_backend import hash_encode

BACKENDS = ("auto", "torch", "tcnn")


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding (Instant-NGP), (N, 3) points → (N, levels·features).

    The single parameter ``params`` (levels' tables concatenated, entry-major, tcnn's layout) is the
    same for both backends, so a state dict trained with one loads into the other.
    ``backend="auto"`` picks tcnn when it imports and the module lives on CUDA, torch otherwise.
    Inputs are points in the box ``[-bound, bound]^3`` (clamped to it), mapped to ``[0, 1]^3`` first.
    """

    bbox_min: torch.Tensor  # buffers
    bbox_max: torch.Tensor

    def __init__(self, config: HashGridConfig = HashGridConfig(), backend: str = "auto", seed: int = 0, bound: float = 1.0):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "tcnn" and not tcnn_backend.available():
            raise RuntimeError("backend 'tcnn' requested but tinycudann/CUDA is unavailable")
        self.config = config
        self.layout = level_layout(config)
        self.backend = backend
        gen = torch.Generator().manual_seed(seed)
        init = (torch.rand(self.layout.entries * config.features, generator=gen) * 2 - 1) * config.init_range
        self.params = nn.Parameter(init)
        self.register_buffer("bbox_min", torch.full((3,), -bound, dtype=torch.float32), persistent=False)
        self.register_buffer("bbox_max", torch.full((3,), bound, dtype=torch.float32), persistent=False)
        self._tcnn = None  # built lazily on first CUDA call

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def active_backend(self) -> str:
        """The backend a forward call uses now ("torch" or "tcnn")."""
        if self.backend == "auto":
            return "tcnn" if self.params.is_cuda and tcnn_backend.available() else "torch"
        return self.backend

    def normalise(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points → (N, 3) in [0, 1], clamped to the box."""
        lo, hi = self.bbox_min.to(points.dtype), self.bbox_max.to(points.dtype)
        return ((points - lo) / (hi - lo)).clamp(0.0, 1.0)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points: (N, 3) in the bounding box → features (N, levels·features)."""
        x01 = self.normalise(points)
        if self.active_backend() == "tcnn":
            if self._tcnn is None:
                # Kept out of the module tree so the state dict holds only ``params``.
                object.__setattr__(self, "_tcnn", tcnn_backend.make_tcnn_encoding(self.config, self.layout))
            return tcnn_backend.tcnn_encode(self._tcnn, x01, self.params)
        return hash_encode(x01, self.params.view(-1, self.config.features), self.layout)
