"""tiny-cuda-nn backend; importing this module never fails, ``available()`` says if it can run."""

from __future__ import annotations

import torch

from .config import HashGridConfig, LevelLayout

try:
    import tinycudann as _tcnn
except Exception:  # ImportError, or a broken CUDA build on a CPU machine
    _tcnn = None


def available() -> bool:
    """True when tinycudann imports and a CUDA device exists."""
    return _tcnn is not None and torch.cuda.is_available()


def make_tcnn_encoding(config: HashGridConfig, layout: LevelLayout):
    """A float32 ``tinycudann.Encoding`` whose parameter layout matches ``layout`` exactly."""
    if not available():
        raise RuntimeError("backend 'tcnn' needs the tinycudann package and a CUDA device")
    encoding = _tcnn.Encoding(
        n_input_dims=3,
        encoding_config={
            "otype": "Grid",
            "type": "Hash",
            "n_levels": config.levels,
            "n_features_per_level": config.features,
            "log2_hashmap_size": config.log2_table,
            "base_resolution": config.base_res,
            "per_level_scale": config.scale,
            "interpolation": "Linear",
        },
        dtype=torch.float32,
    )
    expected = layout.entries * config.features
    if encoding.params.numel() != expected:
        raise RuntimeError(f"tcnn hash grid has {encoding.params.numel()} params, torch layout {expected}")
    return encoding


def tcnn_encode(encoding, x01: torch.Tensor, params: torch.nn.Parameter) -> torch.Tensor:
    """(N, 3) in [0, 1] → (N, L·F) float32, reading the caller's flat ``params``."""
    encoding.params = params  # share one Parameter: checkpoints are backend-independent
    return encoding(x01.float().contiguous()).float()
