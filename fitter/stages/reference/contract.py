"""The `reference` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from pathlib import Path

from fitter.config import Config
from fitter.contract import StageContract, identity_models
from fitter.stages.reference.estimate_depth import depth_estimator_spec
from fitter.stages.reference.estimate_normals import normal_estimator_spec
from fitter.stages.reference.maps import MAP_FILES, MODEL_FIELDS, hand_placed_maps, run
from fitter.stages.reference.user import check_user_maps, user_map_paths
from guidance.registry import ModelSpec


def sections(cfg: Config) -> tuple[str, ...]:
    models = tuple(f"models.{name}" for name in MODEL_FIELDS.get(cfg.reference.source, ()))
    layout = ("models.subfolders", "models.variants") if models else ()  # which files of a repo load
    return ("reference", "models.preset", *models, *layout, "prompt", "run.seed")


def inputs(cfg: Config, subject_dir: Path) -> dict[str, Path]:
    if cfg.reference.source == "user":
        return {f"user_{kind}": Path(path) for kind, path in user_map_paths(cfg).items()}
    if cfg.reference.source == "none":
        return {f"hand_placed_{name}": path for name, path in hand_placed_maps(subject_dir).items()}
    return {}


def models(cfg: Config) -> list[ModelSpec]:
    m, source = cfg.models, cfg.reference.source
    if source == "generate":
        return [
            ModelSpec("normal-adapted SD1.5", "models.normal_sd", m.normal_sd),
            ModelSpec("depth-adapted SD1.5", "models.depth_sd", m.depth_sd),
            ModelSpec("canny ControlNet", "models.controlnet_canny", m.controlnet_canny, "config.json"),
            *identity_models(cfg),
        ]
    if source == "estimator":
        return ([normal_estimator_spec(m)] if m.normal_estimator else []) + ([depth_estimator_spec(m)] if m.depth_estimator else [])
    return []


def check(cfg: Config, image: Path) -> None:
    check_user_maps(cfg, image)


CONTRACT = StageContract(
    name="reference",
    run=run,
    reads=("intake",),
    writes=tuple(f"reference/{name}" for name in MAP_FILES.values()),
    sections=sections,
    inputs=inputs,
    models=models,
    check=check,
    reuse=True,
    summary="normal and depth maps of the reference view (generated, estimated, or the user's)",
)
