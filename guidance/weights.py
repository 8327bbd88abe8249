"""Loading raw weight files safely.

safetensors files hold only tensors and are always loaded. Pickle-based files (`.bin`, `.pt`,
`.ckpt`, `.pth`) can run code while unpickling, so they are refused unless the config says
`models.allow_pickle=true`; even then they go through `torch.load(weights_only=True)`, which
rejects anything but tensors and plain containers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fitter.errors import MissingModelError

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".ckpt", ".pth")


class PickleRefusedError(MissingModelError):
    """A pickle weight file was named while `models.allow_pickle` is off."""


def load_state_dict(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from a safetensors file, or from a pickle file when allowed."""
    path = Path(path)
    if not path.is_file():
        raise MissingModelError(f"weight file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix not in PICKLE_SUFFIXES:
        raise MissingModelError(f"unknown weight file type {path.name} (expected .safetensors, or {', '.join(PICKLE_SUFFIXES)} with models.allow_pickle=true)")
    if not allow_pickle:
        raise PickleRefusedError(
            f"refusing to load pickle weights {path} (a pickle can run code): convert it to .safetensors, "
            "or set models.allow_pickle=true if you trust its source"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MissingModelError(f"cannot load {path} as plain weights: {' '.join(str(exc).split())[:200]}") from None
    return _tensors_only(state, path)


def _tensors_only(state: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # Lightning-style checkpoints wrap the weights
    if not isinstance(state, dict):
        raise MissingModelError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
