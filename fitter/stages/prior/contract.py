"""The `prior` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from fitter.contract import StageContract, fixed_sections
from fitter.stages.prior.stage import FIT_JSON, NEUTRAL_PLY, POSED_PLY, run

CONTRACT = StageContract(
    name="prior",
    run=run,
    reads=("intake",),
    writes=tuple(f"prior/{name}" for name in (FIT_JSON, POSED_PLY, NEUTRAL_PLY)),
    sections=fixed_sections("prior"),
    summary="the parametric head (anny, CC0) fitted to the landmarks: shape, pose and the photo's expression",
)
