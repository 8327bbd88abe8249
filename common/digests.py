"""sha256 of files, for the markers that decide what a rerun or `--resume` may reuse."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str | None:
    """Hex sha256 of a file's bytes; None when it cannot be read (absent, a folder, no permission)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
