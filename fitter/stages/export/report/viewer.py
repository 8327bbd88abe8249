"""The model-viewer web component (pinned to `MODEL_VIEWER_VERSION`), copied next to a report.

A fit never runs npm. The bundle is looked up in the package-data folder `vendor/` next to this
module (filled once by `python run.py install-viewer`; git-ignored: third-party code is not committed),
then in the npm folder `.cache/npm` of the repository (or $HEADFIT_NPM_CACHE), where an earlier
`npm install --prefix .cache/npm @google/model-viewer@4.4.0` may have put it. Without it the report
is written without the 3D viewer and says which command installs it. The bundle is copied to
`OUT/report/model-viewer.min.js`; it is the UMD build, loaded with a classic <script src>: browsers
refuse ES-module scripts from file:// pages, and a report is usually opened straight from disk.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from common import atomic
from common.errors import UserError
from fitter.config import REPO_ROOT

log = logging.getLogger("headfit")
MODEL_VIEWER_VERSION = "4.4.0"
PACKAGE = "@google/model-viewer"
NPM_BUNDLE = Path("node_modules/@google/model-viewer/dist/model-viewer-umd.min.js")
VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
INSTALL_COMMAND = "python run.py install-viewer"
NPM_TIMEOUT_S = 180


def npm_cache_dir() -> Path:
    return Path(os.environ.get("HEADFIT_NPM_CACHE", REPO_ROOT / ".cache" / "npm"))


def vendor_bundle() -> Path:
    """Where install-viewer puts the pinned bundle (the version is in the name)."""
    return VENDOR_DIR / f"model-viewer-{MODEL_VIEWER_VERSION}-umd.min.js"


def _installed_version(cache: Path) -> Optional[str]:
    try:
        return json.loads((cache / "node_modules" / PACKAGE / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _cached_bundle(cache: Path) -> Optional[Path]:
    bundle = cache / NPM_BUNDLE
    return bundle if _installed_version(cache) == MODEL_VIEWER_VERSION and bundle.is_file() else None


def find_bundle() -> tuple[Optional[Path], str]:
    """(path of the pinned bundle, "") or (None, why it is not available and how to install it). Never installs."""
    if vendor_bundle().is_file():
        return vendor_bundle(), ""
    cache = npm_cache_dir()
    bundle = _cached_bundle(cache)
    if bundle is not None:
        return bundle, ""
    return None, (f"{PACKAGE}@{MODEL_VIEWER_VERSION} is not installed (looked in {VENDOR_DIR} and {cache}); "
                  f"`{INSTALL_COMMAND}` installs it once for every later run")


def copy_bundle(report_dir: Path) -> Optional[str]:
    """Copy the bundle to `report_dir/model-viewer.min.js`; None on success, else why not."""
    bundle, problem = find_bundle()
    if bundle is not None:
        try:
            data = bundle.read_bytes()
        except OSError as exc:  # an unreadable bundle must not fail the run
            bundle, problem = None, f"cannot read {bundle}: {exc.strerror}"
    if bundle is None:
        log.warning("report: no interactive 3D viewer (%s)", problem)
        return problem
    atomic.write_bytes(report_dir / "model-viewer.min.js", data)
    return None


def _npm_install(prefix: Path) -> None:
    """npm-install the pinned package into `prefix`; a UserError when npm is missing or fails."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError("cannot install the report's 3D viewer: npm is not installed")
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--no-save", f"{PACKAGE}@{MODEL_VIEWER_VERSION}"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"cannot install the report's 3D viewer: npm install {PACKAGE} timed out after {NPM_TIMEOUT_S} s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"cannot install the report's 3D viewer: npm install {PACKAGE}@{MODEL_VIEWER_VERSION} failed: {last}")


def install_viewer() -> tuple[Path, bool]:
    """`run.py install-viewer`: the pinned bundle into `VENDOR_DIR`, copied from the npm folder when that
    holds it, else npm installs it once into a temporary folder (the npm folder's other packages, e.g.
    .ci/run's glTF validator, stay untouched). (its path, False when it was already there)."""
    target = vendor_bundle()
    if target.is_file():
        return target, False
    with tempfile.TemporaryDirectory(prefix="headfit-npm-") as tmp:
        bundle = _cached_bundle(npm_cache_dir())
        if bundle is None:
            _npm_install(Path(tmp))
            bundle = _cached_bundle(Path(tmp))
        if bundle is None:
            raise UserError(f"cannot install the report's 3D viewer: npm left no {PACKAGE}@{MODEL_VIEWER_VERSION} bundle")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(target, bundle.read_bytes(), guarded=False)
    return target, True
