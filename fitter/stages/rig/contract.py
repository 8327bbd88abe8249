"""The `rig` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from pathlib import Path

from common.errors import UserError
from fitter.config import Config
from fitter.contract import StageContract, fixed_sections
from fitter.stages.rig.fbx import bpy_available
from fitter.stages.rig.stage import HAIR_TEXTURE, RIG_FBX, RIG_GLB, RIG_JSON, RIG_TEXTURE, run


def check(cfg: Config, image: Path) -> None:
    if cfg.rig.enabled and cfg.rig.fbx and not bpy_available():
        raise UserError("rig.fbx=true needs Blender as a Python module (pip install -e '.[blender]'), or set rig.fbx=false")


CONTRACT = StageContract(
    name="rig",
    run=run,
    reads=("intake", "prior", "geometry", "texture"),
    writes=tuple(f"rig/{name}" for name in (RIG_GLB, RIG_JSON, RIG_TEXTURE, HAIR_TEXTURE, RIG_FBX)),
    sections=fixed_sections("rig"),
    check=check,
    summary="the production head: the sculpt wrapped onto the parametric topology, rig, 52 ARKit blendshapes, "
            "neutral expression, shared UVs, hair mesh",
)
