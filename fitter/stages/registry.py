"""The stages, in the order they run: each stage package's `contract.CONTRACT` (`fitter/contract.py`)."""

from __future__ import annotations

from fitter.config import STAGES
from fitter.contract import StageContract
from fitter.stages.export import contract as export
from fitter.stages.geometry import contract as geometry
from fitter.stages.init import contract as init
from fitter.stages.intake import contract as intake
from fitter.stages.prior import contract as prior
from fitter.stages.reference import contract as reference
from fitter.stages.rig import contract as rig
from fitter.stages.texture import contract as texture

CONTRACTS: tuple[StageContract, ...] = (intake.CONTRACT, prior.CONTRACT, reference.CONTRACT, init.CONTRACT, geometry.CONTRACT,
                                        texture.CONTRACT, rig.CONTRACT, export.CONTRACT)
BY_NAME = {c.name: c for c in CONTRACTS}


def _check_order() -> None:
    assert tuple(c.name for c in CONTRACTS) == STAGES, "fitter.config.STAGES and the contracts disagree"
    seen: set[str] = set()
    for contract in CONTRACTS:
        assert set(contract.reads) <= seen, f"stage {contract.name} reads a stage that runs after it"
        seen.add(contract.name)


_check_order()
