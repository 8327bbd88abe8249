"""Camera layouts of common multi-view generators, in the project's orbit convention.

Azimuths are relative to ``azimuth`` (the input view's azimuth, degrees; positive turns towards
the subject's left, see `representations/cameras.py`). A preset's views are matched, in this
order, to the view folder's images sorted by file name.

* ``facelift`` — FaceLift: α, α+45, α−45, α+90, α−90, α+180, all at ``elevation``.
* ``zero123pp`` — Zero123++ v1.2: α+30, α+90, …, α+330 (step 60) at elevations +20, −10
  alternating (added to ``elevation``).
* ``ring16`` — 16 views evenly around (α + 22.5·i) at ``elevation`` (Gen3D-Face / HQ-Head style).
"""

from __future__ import annotations

from common.errors import UserError
from fitter.stages.init.multiview.views import ViewSpec

PRESETS = ("facelift", "zero123pp", "ring16")


def preset_angles(name: str) -> list[tuple[float, float]]:
    """(azimuth offset, elevation offset) in degrees for each view of a preset, in file order."""
    if name == "facelift":
        return [(0.0, 0.0), (45.0, 0.0), (-45.0, 0.0), (90.0, 0.0), (-90.0, 0.0), (180.0, 0.0)]
    if name == "zero123pp":
        return [(30.0 + 60.0 * i, 20.0 if i % 2 == 0 else -10.0) for i in range(6)]
    if name == "ring16":
        return [(22.5 * i, 0.0) for i in range(16)]
    raise UserError(f"unknown multi-view preset {name!r}; choose one of {', '.join(PRESETS)}")


def preset_views(name: str, files: list[str], azimuth: float, elevation: float, radius: float, fov_deg: float) -> list[ViewSpec]:
    """The preset's views bound to ``files`` (already sorted); their count must match."""
    angles = preset_angles(name)
    if len(files) != len(angles):
        raise UserError(f"multi-view preset {name} needs {len(angles)} images in the views folder, found {len(files)}")
    return [ViewSpec(file, azimuth + da, elevation + de, radius, fov_deg=fov_deg) for file, (da, de) in zip(files, angles)]
