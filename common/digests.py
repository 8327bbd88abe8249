"""sha256 of files, for the markers that decide what a rerun or `--resume` may reuse."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str | None:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks; None when it cannot be read (absent)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
