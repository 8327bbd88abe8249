"""A multi-view input: a folder of images plus where each was seen from.

`cameras.json` is a list of ``{"file", "azimuth_deg", "elevation_deg", "radius", "fov_deg"}`` in the
project's orbit convention (`representations/cameras.py`); an orthographic view gives
``"ortho_scale"`` (world units the image height spans) instead of ``fov_deg``. An optional
``"normal_file"`` is a camera-space normal map of that view (same encoding as `subject/normal.png`:
OpenGL camera frame, RGB = (n + 1) / 2). Every problem with the folder is one-line `UserError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fitter.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CAMERAS_FILE = "cameras.json"


@dataclass(frozen=True)
class ViewSpec:
    """One view: its image file (relative to the folder) and its orbit camera."""

    file: str
    azimuth_deg: float
    elevation_deg: float
    radius: float
    fov_deg: Optional[float] = None
    ortho_scale: Optional[float] = None
    normal_file: Optional[str] = None

    @property
    def orthographic(self) -> bool:
        return self.ortho_scale is not None


def image_files(folder: Path) -> list[str]:
    """Image file names in ``folder`` (not normal maps named ``*normal*``), sorted."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and "normal" not in p.stem.lower())


def read_cameras_json(folder: Path) -> list[ViewSpec]:
    """Parse and check ``folder/cameras.json``; raises a one-line UserError on any problem."""
    path = folder / CAMERAS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: give the views' cameras there or set init.views_preset") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise UserError(f"{path} must be a non-empty JSON list of views")
    return [_view_entry(entry, i, path) for i, entry in enumerate(data)]


def _number(entry: dict, key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def _view_entry(entry: object, index: int, path: Path) -> ViewSpec:
    where = f"{path} view {index}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} must be an object")
    file = entry.get("file")
    if not isinstance(file, str) or not file:
        raise UserError(f"{where}: 'file' must be a file name")
    has_fov, has_ortho = "fov_deg" in entry, "ortho_scale" in entry
    if has_fov == has_ortho:
        raise UserError(f"{where}: give exactly one of 'fov_deg' (perspective) or 'ortho_scale' (orthographic)")
    spec = ViewSpec(file, _number(entry, "azimuth_deg", where), _number(entry, "elevation_deg", where),
                    _number(entry, "radius", where),
                    fov_deg=_number(entry, "fov_deg", where) if has_fov else None,
                    ortho_scale=_number(entry, "ortho_scale", where) if has_ortho else None,
                    normal_file=entry.get("normal_file"))
    check_view(spec, where)
    return spec


def check_view(spec: ViewSpec, where: str) -> None:
    if spec.radius <= 0:
        raise UserError(f"{where}: radius must be positive")
    if not -89.0 <= spec.elevation_deg <= 89.0:
        raise UserError(f"{where}: elevation_deg must be in [-89, 89]")
    if spec.fov_deg is not None and not 1.0 <= spec.fov_deg <= 150.0:
        raise UserError(f"{where}: fov_deg must be in [1, 150]")
    if spec.ortho_scale is not None and spec.ortho_scale <= 0:
        raise UserError(f"{where}: ortho_scale must be positive")
    if spec.normal_file is not None and not isinstance(spec.normal_file, str):
        raise UserError(f"{where}: 'normal_file' must be a file name")


def check_files(folder: Path, specs: list[ViewSpec]) -> None:
    """Every image (and normal map) a view names exists in ``folder``."""
    for spec in specs:
        for name in (spec.file, spec.normal_file):
            if name is not None and not (folder / name).is_file():
                raise UserError(f"multi-view image {folder / name} does not exist")
