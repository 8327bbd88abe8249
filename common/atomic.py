"""Atomic file writes: write a temp file next to the target, fsync, then rename over it.

A crash or kill at any point leaves either the old file or the new one, never a half-written one.
While a guard is installed (the fitter installs one per run folder), every write first asks it; it
records the file in the folder's manifest or refuses to overwrite a file the engine did not write.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_guard: Optional[Callable[[Path], None]] = None


def set_guard(guard: Optional[Callable[[Path], None]]) -> None:
    """Install (or remove, with None) the function every write calls with its target first."""
    global _guard
    _guard = guard


def claim(path: str | os.PathLike) -> None:
    """For files written other than through this module (a log file): ask the guard first."""
    if _guard is not None:
        _guard(Path(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, guarded: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it is renamed onto `path`."""
    path = Path(path)
    if guarded:
        claim(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # writes through file objects (PIL) lose the name
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview, guarded: bool = True) -> None:
    with atomic_path(path, guarded) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str, guarded: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), guarded)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an HxW or HxWxC uint8/uint16 array (or float in [0, 1], stored as uint8) as PNG."""
    from PIL import Image

    if image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def write_torch(path: str | os.PathLike, obj: Any) -> None:
    """`torch.save` into memory, then the bytes atomically: a full disk is then an OSError naming the
    file (torch's own file writer reports it late, as an "unexpected pos" RuntimeError)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())


def write_with(path: str | os.PathLike, writer: Callable[[Path], object]) -> None:
    """Atomically produce `path` with a function that writes to a given (temporary) path."""
    with atomic_path(path) as tmp:
        writer(tmp)
