"""The `intake` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from fitter.config import Config
from fitter.context import RunContext
from fitter.contract import StageContract
from fitter.stages.intake.subject import run_intake
from fitter.subject import SUBJECT_FILES, SUBJECT_JSON
from guidance.registry import ModelSpec


def run(ctx: RunContext) -> None:
    assert ctx.image is not None, "the intake needs the photo"
    run_intake(ctx.image, ctx.cfg, ctx.subject_dir)


def models(cfg: Config) -> list[ModelSpec]:
    if cfg.intake.segmenter == "face_parsing":
        return [ModelSpec("face parsing", "models.face_parsing", cfg.models.face_parsing, "config.json")]
    return []


CONTRACT = StageContract(
    name="intake",
    run=run,
    writes=tuple(f"subject/{name}" for name in (*SUBJECT_FILES, SUBJECT_JSON)),
    models=models,
    summary="validate the photo, crop, mask, 478 landmarks, reference camera, identity embeddings",
)
