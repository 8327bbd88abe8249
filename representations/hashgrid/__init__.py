"""Multiresolution hash encoding (Instant-NGP) with a torch reference and a tiny-cuda-nn backend."""

from .config import PRIMES, HashGridConfig, LevelLayout, level_layout
from .encoding import BACKENDS, HashGridEncoding
from .mlp import HashGridMLP
from .tcnn_backend import available as tcnn_available
from .torch_backend import hash_encode

__all__ = [
    "BACKENDS", "PRIMES", "HashGridConfig", "HashGridEncoding", "HashGridMLP", "LevelLayout",
    "hash_encode", "level_layout", "tcnn_available",
]
