"""The error corpus: every error a user can cause, run as a user would run it (a `run.py` subprocess).

Each case builds its inputs in a folder of its own and returns the `run.py` arguments. The run must
exit 2 and write exactly one line to stderr, `error: ...` containing the case's fragment; the only
other stderr lines allowed are documented `warning: ...` lines the case names. Nothing in the case
folder may change except files that a run folder's manifest (`OUT/.headfit.json`) lists as written
by the engine, and a case that says it writes nothing must leave the folder exactly as it was.

Cases live in `tests/**/test_corpus_*.py` (one file per area, so xdist spreads them over workers).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from fitter.config import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "astronaut.png"
PREVIEW = str(REPO_ROOT / "configs" / "preview.yaml")
MANIFEST = ".headfit.json"
LOCK = ".headfit.lock"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[str]]
    """Makes the case's inputs under the given (empty) folder; returns the arguments after `run.py`."""
    expect: str
    """A fragment of the one error line (compared case-insensitively)."""
    warnings: tuple[str, ...] = ()
    """Fragments of the documented `warning:` lines that may come before the error (each line must match one)."""
    writes_nothing: bool = True
    """The folder must be byte-for-byte unchanged (no run folder created, nothing touched)."""
    timeout: float = 300.0
    env: dict = field(default_factory=dict)
    preexec: Optional[Callable[[], None]] = None
    """Runs in the child before exec (e.g. resource limits)."""

    def __str__(self) -> str:
        return self.name


def written(name: str, content: bytes) -> Callable[[Path], Path]:
    """A builder of one input file with these bytes, for the cases that need an odd file."""

    def make(folder: Path) -> Path:
        (folder / name).write_bytes(content)
        return folder / name

    return make


def snapshot(folder: Path, with_dirs: bool = False) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder` (symlinks by target name; folders as
    "dir" when `with_dirs`)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            files[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif with_dirs:
            files[rel] = "dir"
    return files


def manifest_files(folder: Path) -> set[str]:
    """Every path (relative to `folder`) that some run folder's manifest under it lists, plus the
    manifests and lock files themselves."""
    owned: set[str] = set()
    for manifest in folder.rglob(MANIFEST):
        out = manifest.parent
        base = out.relative_to(folder)
        owned |= {(base / name).as_posix() for name in (MANIFEST, LOCK)}
        try:
            listed = json.loads(manifest.read_text())["files"]
        except (OSError, ValueError, KeyError):
            continue
        owned |= {(base / rel).as_posix() for rel in listed}
    return owned


def run_case(case: Case, folder: Path) -> subprocess.CompletedProcess:
    """Build, snapshot, run `run.py`, and check every rule of the corpus; returns the finished process."""
    folder.mkdir(parents=True, exist_ok=True)
    args = case.build(folder)
    before = snapshot(folder, with_dirs=case.writes_nothing)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="default", **case.env)
    env.pop("HEADFIT_DEBUG", None)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "run.py"), *map(str, args)], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=case.timeout, preexec_fn=case.preexec)
    context = f"case {case.name}: exit {result.returncode}\n--- stderr ---\n{result.stderr}--- stdout tail ---\n{result.stdout[-2000:]}"
    assert result.returncode == 2, context
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], context
    assert case.expect.lower() in errors[0].lower(), context
    for line in lines[:-1]:
        assert line.startswith("warning:") and any(w.lower() in line.lower() for w in case.warnings), context
    after = snapshot(folder, with_dirs=case.writes_nothing)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    if case.writes_nothing:
        assert not changed, f"{context}\nchanged: {sorted(changed)}"
    else:
        assert changed <= manifest_files(folder), f"{context}\nchanged outside the manifest: {sorted(changed - manifest_files(folder))}"
    return result
