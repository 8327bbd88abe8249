"""`models.preset`: which folders a `ModelsConfig` loads from.

``real`` loads the config's own ids/folders; ``tiny-random`` (guidance/models/tiny.py) and ``random-full``
(guidance/models/random_full.py) build their models once under ``$HEADFIT_CACHE`` and replace the fields
in `PRESET_FIELDS`; everything is then loaded through the same code as real weights.
"""

from __future__ import annotations

from guidance.models import random_full, tiny
from guidance.models.config import ModelsConfig

PRESET_FIELDS: dict[str, frozenset[str]] = {"tiny-random": tiny.TINY_FIELDS, "random-full": random_full.PRESET_FIELDS}
"""Per preset, the `ModelsConfig` fields it provides (the user need not supply those models)."""


def preset_fields(preset: str) -> frozenset[str]:
    """The `ModelsConfig` fields ``preset`` provides (none for ``real``)."""
    return PRESET_FIELDS.get(preset, frozenset())


def effective_models_config(models: ModelsConfig) -> ModelsConfig:
    """The config to load from: the preset's folders (built if needed), or ``models`` itself for ``real``."""
    if models.preset == "tiny-random":
        return tiny.tiny_models_config(models)
    if models.preset == "random-full":
        return random_full.random_full_config(models)
    return models
