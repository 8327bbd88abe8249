"""On-disk cache of numpy arrays: atomic writes, pickle-free reads."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np


def cache_dir() -> Path:
    """``$HEADFIT_CACHE`` if set, else ``~/.cache/headfit``."""
    return Path(os.environ.get("HEADFIT_CACHE") or Path.home() / ".cache" / "headfit")


def load_or_build(relpath: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Arrays cached at ``cache_dir()/relpath`` (.npz), built and written once if missing or unreadable."""
    path = cache_dir() / relpath
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile):
            pass  # a foreign or damaged file: rebuild and replace it
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays
