"""Which models a config needs (each stage's contract says), and whether they are present."""

from __future__ import annotations

from fitter.config import Config
from fitter.stages.registry import CONTRACTS
from guidance.models.tiny import TINY_FIELDS
from guidance.registry import Location, ModelSpec, locate


def required_models(cfg: Config) -> list[ModelSpec]:
    """Every model the config's stages will load, once each, in stage order.

    The tiny-random preset builds the SD-family models, ControlNets, IP-Adapter and ArcFace in code;
    what it does not build (estimators, PanoHead, face parsing, the texture's optional models) is
    still needed from the user."""
    unique: dict[str, ModelSpec] = {}
    for contract in CONTRACTS:
        for spec in contract.models(cfg):
            unique.setdefault(spec.key, spec)
    specs = list(unique.values())
    if cfg.models.preset == "tiny-random":
        specs = [spec for spec in specs if spec.key.removeprefix("models.") not in TINY_FIELDS]
    return specs


def check_models(cfg: Config) -> list[Location]:
    return [locate(spec, cfg.models.cache_dir) for spec in required_models(cfg)]
