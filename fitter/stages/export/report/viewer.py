"""The model-viewer web component, from npm, copied next to a report.

The bundle is installed once into a cache folder (`.cache/npm` in the repository, or
$HEADFIT_NPM_CACHE) and copied to `OUT/report/model-viewer.min.js`. It is the UMD build, loaded
with a classic <script src>: browsers refuse ES-module scripts from file:// pages, and a report is
usually opened straight from disk.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from fitter.config import REPO_ROOT
from common import atomic

log = logging.getLogger("headfit")
MODEL_VIEWER_VERSION = "4.4.0"
PACKAGE = "@google/model-viewer"
BUNDLE = Path("node_modules/@google/model-viewer/dist/model-viewer-umd.min.js")
NPM_TIMEOUT_S = 180


def npm_cache_dir() -> Path:
    return Path(os.environ.get("HEADFIT_NPM_CACHE", REPO_ROOT / ".cache" / "npm"))


def _installed_version(cache: Path) -> Optional[str]:
    import json

    try:
        return json.loads((cache / "node_modules" / PACKAGE / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _npm_install(cache: Path) -> Optional[str]:
    """Install the pinned package into `cache`; None on success, else why not."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".install.lock", "w") as lock:  # parallel runs share one cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(cache) == MODEL_VIEWER_VERSION:
            return None
        cmd = [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--no-save", f"{PACKAGE}@{MODEL_VIEWER_VERSION}"]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"npm install {PACKAGE} timed out after {NPM_TIMEOUT_S} s"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"npm install {PACKAGE}@{MODEL_VIEWER_VERSION} failed: {last}"
    return None


def find_bundle(install: bool = True) -> tuple[Optional[Path], str]:
    """(path of the cached bundle, "") or (None, why it is not available)."""
    cache = npm_cache_dir()
    if _installed_version(cache) != MODEL_VIEWER_VERSION and install:
        problem = _npm_install(cache)
        if problem:
            return None, problem
    bundle = cache / BUNDLE
    if _installed_version(cache) != MODEL_VIEWER_VERSION or not bundle.is_file():
        return None, f"{PACKAGE}@{MODEL_VIEWER_VERSION} is not in {cache}"
    return bundle, ""


def copy_bundle(report_dir: Path, install: bool = True) -> Optional[str]:
    """Copy the bundle to `report_dir/model-viewer.min.js`; None on success, else why not."""
    try:
        bundle, problem = find_bundle(install)
    except OSError as exc:  # an unwritable cache must not fail the run
        bundle, problem = None, f"npm cache: {exc}"
    if bundle is None:
        log.warning("report: no interactive 3D viewer (%s)", problem)
        return problem
    atomic.write_bytes(report_dir / "model-viewer.min.js", bundle.read_bytes())
    return None
