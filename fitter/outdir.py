"""The run folder OUT: which files in it the engine wrote, who is writing it now, and clean-up of
outputs that a redone stage made stale.

* `OUT/.headfit.json` (the manifest) lists every file the engine wrote in OUT, with the stage that
  wrote it. The engine deletes or overwrites only files listed there: every write goes through
  `common.atomic`, which asks `RunFolder.claim` first, and a file that exists but is not listed is
  refused. An OUT that exists, is not empty and has no manifest is refused before anything is done.
* `OUT/.headfit.lock` is held with an exclusive `flock` for the whole run: a second run into the same
  OUT fails at once, naming the process that holds it. It holds that process's description while
  held and is emptied on release.
* A run refused before it wrote anything (a photo with no face, say) removes the lock, the manifest
  and the folders it created, so nothing is left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

from common import atomic
from common.errors import OutputError

MANIFEST = ".headfit.json"
LOCK = ".headfit.lock"
FORMAT = 1
RUN = "run"
"""Attribution of the files that belong to the run rather than to one stage (config.yaml, run.log)."""


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(path))


class RunFolder:
    def __init__(self, out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()):
        """`inputs`: the user's files this run reads (photo, maps, meshes); none may be one of OUT's outputs."""
        self.out = _absolute(out)
        self.inputs = [_absolute(p) for p in inputs]
        self.files: dict[str, str] = {}
        """relative path -> the stage that wrote it."""
        self.stage = RUN
        self._lock_fd: Optional[int] = None
        self._created: Optional[Path] = None
        self._had_manifest = False

    # --- before anything is written ---------------------------------------------------------------
    def preflight(self) -> None:
        """Refuse, with nothing written, an OUT that is not ours or that holds one of the inputs."""
        if str(self.out) in ("", "/"):
            raise OutputError("--out must name a folder other than the file-system root")
        check_writable(self.out)
        if not self.out.is_dir():
            return
        manifest = self.out / MANIFEST
        if not manifest.is_file():
            others = [p.name for p in self.out.iterdir() if p.name != LOCK]
            if others:
                raise OutputError(f"output folder {self.out} is not empty and was not made by headfit (no {MANIFEST}); "
                                  f"choose a new folder with --out NEW_DIR")
            return
        self.files = self._read_manifest()
        for path in self.inputs:
            rel = self.relative(path)
            if rel is not None and (rel in self.files or rel in (MANIFEST, LOCK)):
                raise OutputError(f"{path} is one of the outputs in {self.out}, which this run would replace; "
                                  "copy it out of that folder first or choose another --out")

    def _read_manifest(self) -> dict[str, str]:
        try:
            data = json.loads((self.out / MANIFEST).read_text(encoding="utf-8"))
            files = data["files"]
            if data.get("tool") != "headfit" or not isinstance(files, dict):
                raise ValueError("not a headfit manifest")
        except (OSError, ValueError, KeyError, TypeError):
            raise OutputError(f"{self.out / MANIFEST} is damaged or not headfit's; choose a new folder with --out NEW_DIR") from None
        return {str(k): str(v) for k, v in files.items() if _safe_relative(str(k))}

    # --- open / close -------------------------------------------------------------------------------
    def open(self) -> "RunFolder":
        """Create OUT if needed, take the lock (or fail naming its holder), install the write guard."""
        self.preflight()
        self._created = _first_missing(self.out)
        self._had_manifest = (self.out / MANIFEST).is_file()
        self.out.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            missing = {MANIFEST, LOCK} - set(self.files)
            self.files.update({name: RUN for name in missing})
            if missing:
                self._save()
        except BaseException:
            self.close()
            raise
        atomic.set_guard(self.claim)
        return self

    def close(self) -> None:
        """Release the lock; a run that wrote nothing but its own bookkeeping into a folder that had no
        manifest leaves no trace (a refused photo creates nothing)."""
        atomic.set_guard(None)
        if self._lock_fd is None:
            return
        if not self._had_manifest and set(self.files) <= {MANIFEST, LOCK}:
            (self.out / MANIFEST).unlink(missing_ok=True)
            (self.out / LOCK).unlink(missing_ok=True)
            if self._created is not None:
                _remove_empty_dirs(self.out, stop_at=self._created.parent)
        else:
            os.ftruncate(self._lock_fd, 0)
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> "RunFolder":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_lock(self) -> None:
        fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputError(f"output folder {self.out} is in use by another headfit run ({holder}); "
                              "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = " ".join(sys.argv[:8])[:300]
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}: {command}\n".encode(), 0)
        self._lock_fd = fd

    # --- while running ------------------------------------------------------------------------------
    def relative(self, path: str | os.PathLike) -> Optional[str]:
        """`path` relative to OUT (posix), or None when it lies outside OUT."""
        absolute = _absolute(path)
        try:
            return absolute.relative_to(self.out).as_posix()
        except ValueError:
            return None

    def claim(self, path: str | os.PathLike) -> None:
        """Called before the engine writes `path`: records it in the manifest (written before the file
        is), or refuses to overwrite a file in OUT that the engine did not write."""
        rel = self.relative(path)
        if rel is None or rel in self.files:
            return
        target = self.out / rel
        if target.exists() or target.is_symlink():
            raise OutputError(f"refusing to overwrite {target}: headfit did not write it (it is not in {MANIFEST})")
        self.files[rel] = self.stage
        self._save()

    def adopt_tree(self, folder: Path) -> None:
        """Files a library wrote straight into `folder` under OUT (TensorBoard's event files) join the
        manifest as the current stage's."""
        new = [p for p in sorted(folder.rglob("*")) if p.is_file() and self.relative(p) not in self.files] if folder.is_dir() else []
        for path in new:
            rel = self.relative(path)
            if rel is not None:
                self.files[rel] = self.stage
        if new:
            self._save()

    def remove_stages(self, stages: Iterable[str]) -> list[str]:
        """Delete every listed file that these stages wrote; returns their relative paths."""
        stages = set(stages)
        removed = sorted(rel for rel, stage in self.files.items() if stage in stages)
        for rel in removed:
            (self.out / rel).unlink(missing_ok=True)
            del self.files[rel]
        for folder in sorted({(self.out / rel).parent for rel in removed}, key=lambda p: -len(p.parts)):
            _remove_empty_dirs(folder, stop_at=self.out)
        if removed:
            self._save()
        return removed

    def _save(self) -> None:
        record = {"tool": "headfit", "format": FORMAT, "files": dict(sorted(self.files.items()))}
        atomic.write_text(self.out / MANIFEST, json.dumps(record, indent=1) + "\n", guarded=False)


def check_writable(out: Path) -> None:
    """Fail early (before any work) when the folder `out` cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {out} is not writable (no write permission on {probe})")


def _safe_relative(rel: str) -> bool:
    """A manifest entry that stays inside OUT (a tampered manifest must not make us delete elsewhere)."""
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def _first_missing(path: Path) -> Optional[Path]:
    """The top-most folder of `path` that does not exist yet (what mkdir -p would create)."""
    missing = None
    while not path.exists():
        missing, path = path, path.parent
    return missing


def _remove_empty_dirs(folder: Path, stop_at: Path) -> None:
    """rmdir `folder` and its parents while they are empty, up to (not including) `stop_at`."""
    while folder != stop_at and stop_at in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
