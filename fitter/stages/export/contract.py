"""The `export` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from fitter.contract import StageContract, fixed_sections
from fitter.stages.export.stage import run

CONTRACT = StageContract(
    name="export",
    run=run,
    reads=("intake", "texture", "rig"),
    writes=("head.glb", "head_rigged.glb", "head_rigged.fbx", "head.obj", "head.mtl", "head.png", "head_albedo.png", "views/", "turntable.mp4", "metrics.json", "report.html", "report/"),
    sections=fixed_sections("export"),
    summary="GLB/OBJ, views, turntable, metrics and the HTML report",
)
