"""The `geometry` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from fitter.config import Config
from fitter.contract import StageContract, fixed_sections, identity_models
from fitter.stages.geometry.stage import run
from guidance.models.sources import model_spec
from guidance.registry import ModelSpec


def models(cfg: Config) -> list[ModelSpec]:
    m, g = cfg.models, cfg.fit.geometry
    if not g.uses_isd:
        return []
    specs = [model_spec(m, g.isd.model)]  # the checkpoint ISD runs on: models.normal_sd (hero) or models.base
    if g.isd.landmark_control:
        specs.append(ModelSpec("landmark ControlNet (MediaPipe face)", "models.controlnet_landmarks", m.controlnet_landmarks, "config.json"))
    return specs + (identity_models(cfg) if g.isd.identity_tokens else [])


CONTRACT = StageContract(
    name="geometry",
    run=run,
    reads=("intake", "reference", "init"),
    writes=("geometry/mesh.ply", "geometry/geometry.json"),
    sections=fixed_sections("fit.geometry", "models", "prompt", "run.seed"),
    models=models,
    summary="DMTet + hash-grid SDF sculpted by identity-aware score distillation and reference losses",
)
