"""Which models a config needs (each stage's contract says), whether they are present and loadable
(found, needs `convert-weights`, missing), and whether they fit the roles they are given."""

from __future__ import annotations

from fitter.config import Config
from fitter.stages.registry import CONTRACTS
from guidance.models.presets import preset_fields
from guidance.models.sanity import role_problems
from guidance.models.sources import ModelCheck, check_model, with_layout
from guidance.registry import ModelSpec


def required_models(cfg: Config) -> list[ModelSpec]:
    """Every model the config's stages will load, once each, in stage order.

    The tiny-random and random-full presets build the SD-family models, ControlNets, IP-Adapter and
    ArcFace in code (`guidance.models.presets.PRESET_FIELDS`); what they do not build (estimators,
    PanoHead, face parsing, the texture's optional models) is still needed from the user."""
    unique: dict[str, ModelSpec] = {}
    for contract in CONTRACTS:
        for spec in contract.models(cfg):
            unique.setdefault(spec.key, with_layout(spec, cfg.models))  # models.subfolders / models.variants
    specs = list(unique.values())
    provided = preset_fields(cfg.models.preset)
    return [spec for spec in specs if spec.key.removeprefix("models.") not in provided]


def check_models(cfg: Config) -> list[ModelCheck]:
    """`check_model` of every required model: found, needs convert-weights, or missing."""
    return [check_model(spec, cfg.models) for spec in required_models(cfg)]


def model_role_problems(cfg: Config, checks: list[ModelCheck]) -> list[str]:
    """`guidance.models.sanity.role_problems` of the located required models (reads config.json files only)."""
    located = {c.spec.key: (c.spec, c.path) for c in checks if c.path is not None}
    return role_problems(located, f"models.{cfg.fit.geometry.isd.model}")
