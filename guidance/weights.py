"""Loading raw weight files safely: the one place where weight files are opened.

safetensors files hold only tensors and are always loaded. Pickle-based files (`.bin`, `.pt`,
`.ckpt`, `.pth`) can run code while unpickling, so they are refused unless `models.allow_pickle`
names the model (e.g. `models.allow_pickle=[lpips]`); even then they go through
`torch.load(weights_only=True)` (in `unpickle_plain`, the project's only `torch.load`), which rejects
anything but tensors and plain containers. `python run.py convert-weights` (guidance/models/convert.py)
reads a pickle the same way and writes safetensors. Every failure is one line: `WeightFileError` (a
`MissingModelError`, so exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import torch

from common.errors import MissingModelError

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".bin", ".pt", ".ckpt", ".pth")


class WeightFileError(MissingModelError, ValueError):
    """A weight file is missing, unreadable or not what it should be (also a ValueError, so code that
    maps ValueErrors to one-line messages keeps doing so)."""


class PickleRefusedError(WeightFileError):
    """A pickle weight file was named while `models.allow_pickle` does not name its model."""


def load_state_dict(path: str | Path, allow_pickle: bool = False, pickle_name: str = "") -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from a safetensors file, or from a pickle file when allowed."""
    return _tensors_only(read_weight_file(path, allow_pickle, pickle_name), Path(path))


def read_weight_file(path: str | Path, allow_pickle: bool = False, pickle_name: str = "") -> Any:
    """The contents of a weight file: a safetensors file's {name: tensor}, or (when allowed) whatever
    plain containers of tensors a pickle holds (e.g. the nested dicts of an IP-Adapter `.bin`).
    ``pickle_name`` is the `models.allow_pickle` entry that would allow it (for the message)."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}" if not path.exists() else f"weight file {path} is not a file")
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        return read_safetensors(path)
    if suffix not in PICKLE_SUFFIXES:
        raise WeightFileError(f"unknown weight file type {path.name} (expected .safetensors, or {', '.join(PICKLE_SUFFIXES)} "
                              "named in models.allow_pickle)")
    if not allow_pickle:
        name = pickle_name or "its model"
        raise PickleRefusedError(
            f"refusing to load pickle weights {path} (a pickle can run code): convert it with "
            f"`python run.py convert-weights {path} {path.with_suffix('.safetensors')}` and use that file, "
            f"or add {name} to models.allow_pickle (e.g. models.allow_pickle=[{pickle_name or 'lpips'}]) if you trust its source"
        )
    return unpickle_plain(path)


def unpickle_plain(source: str | Path | BinaryIO) -> Any:
    """`torch.load(weights_only=True)` on CPU: tensors and plain containers only, nothing runs.
    For our own files (checkpoints) and for pickles the config allows."""
    name = source if isinstance(source, (str, Path)) else "the embedded data"
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; each means "not plain weights"
        raise WeightFileError(f"cannot load {name} as plain weights: {_one_line(exc)}") from None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError/OSError for a truncated or foreign file
        raise WeightFileError(f"cannot read {path} as safetensors: {_one_line(exc)}") from None


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata in a safetensors header (empty when there is none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:
        raise WeightFileError(f"cannot read {path} as safetensors: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _tensors_only(state: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # Lightning-style checkpoints wrap the weights
    if not isinstance(state, dict):
        raise WeightFileError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
