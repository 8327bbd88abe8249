"""What a stage declares about itself; the pipeline, the model check and the resume hashes read it.

A stage package declares one `CONTRACT` in `fitter/stages/<name>/contract.py`:

* `reads`: the stages whose outputs it reads. Its hash chains theirs, so a change upstream redoes
  it and everything that reads it, and nothing else.
* `sections`: the config sections (dotted paths) whose values change what it produces.
* `inputs`: files outside its upstream stages' outputs that it reads (a user mesh, a view folder,
  user normal maps), by a name that does not depend on where they are; their contents are hashed.
* `models`: the models it will load under a config (`run.py check-models` and the pre-run check).
* `check`: refuses bad user inputs with one line before the intake writes anything.
* `writes`: what it leaves in OUT (documentation for readers of the run folder).
* `reuse`: a finished run of it under the same hash is reused even without `--resume` (it is
  deterministic and costly); its `done.json` then records its files' digests and a damaged file redoes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from fitter.config import Config
from guidance.registry import ModelSpec

if TYPE_CHECKING:
    from fitter.context import RunContext


def no_sections(cfg: Config) -> tuple[str, ...]:
    return ()


def no_models(cfg: Config) -> list[ModelSpec]:
    return []


def no_inputs(cfg: Config, subject_dir: Path) -> dict[str, Path]:
    return {}


def no_check(cfg: Config, image: Path) -> None:
    return None


@dataclass
class StageContract:
    name: str
    run: Callable[["RunContext"], None]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    sections: Callable[[Config], tuple[str, ...]] = no_sections
    inputs: Callable[[Config, Path], dict[str, Path]] = no_inputs
    """(cfg, subject_dir) -> {stable name: path}; an absent path hashes as None."""
    models: Callable[[Config], list[ModelSpec]] = no_models
    check: Callable[[Config, Path], None] = no_check
    reuse: bool = False
    summary: Optional[str] = None
    """One line for `run.py --help` and the README's stage table."""


def fixed_sections(*names: str) -> Callable[[Config], tuple[str, ...]]:
    """A `sections` function for a stage whose sections do not depend on the config."""

    def sections(cfg: Config) -> tuple[str, ...]:
        return names

    return sections


def identity_models(cfg: Config) -> list[ModelSpec]:
    """What identity conditioning loads: the IP-Adapter-FaceID weights and the ArcFace model."""
    m = cfg.models
    return [
        ModelSpec("IP-Adapter-FaceID (portrait)", "models.ip_adapter", m.ip_adapter, m.ip_adapter_weight),
        ModelSpec("ArcFace ONNX (identity embedding)", "models.arcface", m.arcface, ""),
    ]
