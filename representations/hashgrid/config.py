"""Hash-grid configuration and the per-level table layout (shared by every backend)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from common.errors import require

PRIMES = (1, 2654435761, 805459861)
"""Instant-NGP spatial-hash primes for x, y, z."""


@dataclass(frozen=True)
class HashGridConfig:
    """Parameters of a multiresolution hash encoding plus its small MLP head (the run config's
    `fit.geometry.hashgrid` section). ``per_level_scale`` wins over ``finest_res`` when given.
    """

    levels: int = 16
    features: int = 2
    log2_table: int = 19
    base_res: int = 16
    finest_res: int = 4096
    per_level_scale: Optional[float] = None
    hidden: int = 64
    layers: int = 2
    init_range: float = 1e-4

    def __post_init__(self) -> None:
        require(1 <= self.levels <= 32 and 10 <= self.log2_table <= 24, "levels",
                "must be in [1, 32] with log2_table in [10, 24]")
        require(1 <= self.base_res <= self.finest_res, "base_res", "must be in [1, finest_res]")
        require(self.hidden >= 1 and self.layers >= 1, "hidden", "and layers must be >= 1")
        require(self.features >= 1 and self.init_range >= 0, "features", "must be >= 1 with init_range >= 0")
        require(self.per_level_scale is None or self.per_level_scale >= 1, "per_level_scale", "must be >= 1 or null")

    @property
    def scale(self) -> float:
        """Growth factor b between consecutive levels (≈1.447 for 16 → 4096 over 16 levels)."""
        if self.per_level_scale is not None:
            return float(self.per_level_scale)
        if self.levels == 1:
            return 1.0
        return math.exp(math.log(self.finest_res / self.base_res) / (self.levels - 1))

    @property
    def out_dim(self) -> int:
        return self.levels * self.features


@dataclass(frozen=True)
class LevelLayout:
    """Where each level lives in the flat table; identical to tiny-cuda-nn's layout.

    Level ``l`` uses ``scale_l = base_res · b^l − 1`` (float32 arithmetic, as tcnn does), grid
    coordinates ``x · scale_l + 0.5`` and ``ceil(scale_l) + 1`` vertices per axis.  Levels whose
    vertex count fits the table are indexed densely, the rest through the spatial hash.
    """

    scales: tuple[float, ...]
    resolutions: tuple[int, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    n_dense: int

    @property
    def entries(self) -> int:
        return self.offsets[-1]


def level_layout(config: HashGridConfig) -> LevelLayout:
    """Table layout for ``config``; dense levels always come first (resolution grows)."""
    table = 1 << config.log2_table
    log2_scale = np.float32(math.log2(config.scale))
    scales, resolutions, sizes, offsets = [], [], [], [0]
    for level in range(config.levels):
        scale = np.float32(np.exp2(np.float32(level) * log2_scale) * np.float32(config.base_res) - np.float32(1.0))
        res = int(math.ceil(float(scale))) + 1
        size = min(-(-res**3 // 8) * 8, table)
        scales.append(float(scale))
        resolutions.append(res)
        sizes.append(size)
        offsets.append(offsets[-1] + size)
    dense = [r**3 <= s for r, s in zip(resolutions, sizes)]
    n_dense = sum(dense)
    if dense != [True] * n_dense + [False] * (config.levels - n_dense):
        raise ValueError("dense levels must precede hashed levels")
    return LevelLayout(tuple(scales), tuple(resolutions), tuple(sizes), tuple(offsets), n_dense)
