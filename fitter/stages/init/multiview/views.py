"""A multi-view input: a folder of images plus where each was seen from.

`cameras.json` is a list of ``{"file", "azimuth_deg", "elevation_deg", "radius", "fov_deg"}`` in the
project's orbit convention (`representations/cameras.py`); an orthographic view gives
``"ortho_scale"`` (world units the image height spans) instead of ``fov_deg``. An optional
``"normal_file"`` is a camera-space normal map of that view (same encoding as `reference/normal.png`:
OpenGL camera frame, RGB = (n + 1) / 2). Every problem with the folder is one-line `UserError`.

File names are confined to the folder: an absolute path, a `..` part, or a symlink that resolves
outside the folder is refused. `cameras.json` may be at most `MAX_CAMERAS_BYTES` long, list at most
`MAX_VIEWS` views and hold no keys other than the ones above.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CAMERAS_FILE = "cameras.json"
MAX_CAMERAS_BYTES = 1 << 20
MAX_VIEWS = 100
"""More views than any multi-view generator gives; each is decoded and segmented, so the count is bounded."""
MAX_NAME_CHARS = 1024
ENTRY_KEYS = ("file", "azimuth_deg", "elevation_deg", "radius", "fov_deg", "ortho_scale", "normal_file")


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
    data = _load_json(path)
    if not isinstance(data, list) or not data:
        raise UserError(f"{path} must be a non-empty JSON list of views")
    if len(data) > MAX_VIEWS:
        raise UserError(f"{path} lists {len(data)} views, more than the {MAX_VIEWS} a multi-view init takes")
    return [_view_entry(entry, i, path) for i, entry in enumerate(data)]


def _load_json(path: Path) -> object:
    if not path.exists():
        raise UserError(f"{path} not found: give the views' cameras there or set init.views_preset")
    if not path.is_file():
        raise UserError(f"{path} is not a regular file")
    try:
        if path.stat().st_size > MAX_CAMERAS_BYTES:
            raise UserError(f"{path} is larger than {MAX_CAMERAS_BYTES // 1024} KB: it is not a camera list")
        return json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    except RecursionError:
        raise UserError(f"cannot read {path}: nested too deeply") from None


def _number(entry: dict, key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: {key!r} must be a finite number, got {_shown(value)}")
    return float(value)


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _view_entry(entry: object, index: int, path: Path) -> ViewSpec:
    where = f"{path} view {index}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} must be an object")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(map(_shown, unknown))}; a view has {', '.join(ENTRY_KEYS)}")
    file = _file_name(entry, "file", where)
    normal_file = _file_name(entry, "normal_file", where) if "normal_file" in entry else None
    has_fov, has_ortho = "fov_deg" in entry, "ortho_scale" in entry
    if has_fov == has_ortho:
        raise UserError(f"{where}: give exactly one of 'fov_deg' (perspective) or 'ortho_scale' (orthographic)")
    spec = ViewSpec(file, _number(entry, "azimuth_deg", where), _number(entry, "elevation_deg", where),
                    _number(entry, "radius", where),
                    fov_deg=_number(entry, "fov_deg", where) if has_fov else None,
                    ortho_scale=_number(entry, "ortho_scale", where) if has_ortho else None,
                    normal_file=normal_file)
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


def _file_name(entry: dict, key: str, where: str) -> str:
    name = entry.get(key)
    if not isinstance(name, str) or not name.strip() or "\x00" in name or len(name) > MAX_NAME_CHARS:
        raise UserError(f"{where}: {key!r} must be a file name, got {_shown(name)}")
    return name


def check_files(folder: Path, specs: list[ViewSpec]) -> None:
    """Every image (and normal map) a view names is a file inside ``folder`` (see the module docstring)."""
    root = folder.resolve()
    for spec in specs:
        for name in (spec.file, spec.normal_file):
            if name is not None:
                _check_inside(folder, root, name)


def _check_inside(folder: Path, root: Path, name: str) -> None:
    relative = Path(name)
    if relative.is_absolute():
        raise UserError(f"multi-view file {name!r} must be a path relative to the views folder {folder}")
    if ".." in relative.parts:
        raise UserError(f"multi-view file {name!r} must not use '..': it must lie inside the views folder {folder}")
    path = folder / relative
    try:
        target = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise UserError(f"multi-view file {path} cannot be resolved: {exc}") from None
    if not target.is_relative_to(root):
        raise UserError(f"multi-view file {path} is a link to {target}, outside the views folder {folder}")
    try:
        is_file = path.is_file()
    except OSError as exc:
        raise UserError(f"multi-view file {path}: {exc.strerror or exc}") from None
    if not is_file:
        raise UserError(f"multi-view image {path} does not exist (or is not a file)")
