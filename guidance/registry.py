"""Whether a model is present on this machine, and where it was looked for.

A model is named by a Hugging Face hub id (looked up in the local cache only: nothing is downloaded
here) or by a local folder/file. `locate` reports where it looked, so a missing model is one line
that a user can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class ModelSpec:
    """One model a run needs.

    Attributes:
        role: what it is for (e.g. "ISD base (SD1.5)").
        key: the config key naming it (e.g. "models.base").
        source: hub id, folder or file path.
        probe: a file whose presence shows the model is there ("" = the path itself must exist).
    """

    role: str
    key: str
    source: Optional[str]
    probe: str = "model_index.json"


@dataclass(frozen=True)
class Location:
    spec: ModelSpec
    found: Optional[Path]
    looked: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.found is not None


def hub_cache_dir(cfg_cache: Optional[str]) -> Path:
    if cfg_cache:
        return Path(cfg_cache).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def locate(spec: ModelSpec, cache_dir: Optional[str] = None) -> Location:
    """Find a model as a local path, else in the hub cache; never touches the network."""
    if not spec.source:
        return Location(spec, None, (f"{spec.key} is not set",))
    local = Path(spec.source).expanduser()
    looked = [str(local.resolve())]
    target = local / spec.probe if spec.probe else local
    if target.exists():
        return Location(spec, local, tuple(looked))
    if _looks_like_hub_id(spec.source):
        cache = hub_cache_dir(cache_dir)
        looked.append(f"hub cache {cache} (repo {spec.source})")
        found = _in_hub_cache(spec.source, spec.probe, cache)
        if found is not None:
            return Location(spec, found, tuple(looked))
    return Location(spec, None, tuple(looked))


def _in_hub_cache(repo_id: str, probe: str, cache: Path) -> Optional[Path]:
    from huggingface_hub import try_to_load_from_cache

    filename = probe or "config.json"
    hit = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache))
    if isinstance(hit, str) and os.path.exists(hit):
        return Path(hit).parent
    return None
