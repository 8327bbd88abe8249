"""Whether a model is present on this machine, and where it was looked for.

A model is named by a Hugging Face hub id (looked up in the local cache only: nothing is downloaded
here) or by a local folder/file, optionally with a subfolder inside it (a repository that holds
several models) and a diffusers weight variant (``fp16``). `locate` reports where it looked, so a
missing model is one line that a user can act on. A hub id is looked for first as a local path, then
in `converted_dir` (where `python run.py convert-weights` puts the safetensors conversion of a
pickle-only repository), then in the Hugging Face cache.
"""

from __future__ import annotations

import json
import os
import re
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
        probe: a file whose presence shows the model is there ("" = the path itself must exist),
            relative to the subfolder.
        subfolder: the folder inside the repository/folder that holds the model ("" = its root).
        variant: the diffusers weight variant to load (e.g. "fp16" for `*.fp16.safetensors`; "" = plain).
    """

    role: str
    key: str
    source: Optional[str]
    probe: str = "model_index.json"
    subfolder: str = ""
    variant: str = ""

    def describe(self) -> str:
        """``key=source`` plus the subfolder and variant when set."""
        extra = [f"subfolder {self.subfolder}"] * bool(self.subfolder) + [f"variant {self.variant}"] * bool(self.variant)
        return f"{self.key}={self.source}" + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class Location:
    """Where a model was found: ``found`` is the root (local folder or file, converted folder, or hub-cache
    snapshot), `model_path` the model itself (the root's subfolder); ``looked`` every place tried."""

    spec: ModelSpec
    found: Optional[Path]
    looked: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.found is not None

    @property
    def model_path(self) -> Optional[Path]:
        if self.found is None:
            return None
        return self.found / self.spec.subfolder if self.spec.subfolder else self.found


def headfit_cache() -> Path:
    """``$HEADFIT_CACHE`` (``~/.cache/headfit`` when unset): the tiny models, converted weights."""
    return Path(os.environ.get("HEADFIT_CACHE") or Path.home() / ".cache" / "headfit").expanduser()


def converted_dir(repo_id: str) -> Path:
    """Where the safetensors conversion of hub repository ``owner/name`` goes and is looked for:
    ``$HEADFIT_CACHE/converted/owner--name`` (the repository's layout inside, subfolders included)."""
    owner, _, name = repo_id.partition("/")
    return headfit_cache() / "converted" / f"{owner}--{name}"


def safetensors_name(name: str) -> str:
    """The safetensors file that `python run.py convert-weights` writes for pickle weight file ``name``:
    ``diffusion_pytorch_model[.fp16].bin`` → ``diffusion_pytorch_model[.fp16].safetensors``,
    ``pytorch_model[.fp16].bin`` → ``model[.fp16].safetensors`` (the names diffusers/transformers look for),
    sharded ``pytorch_model-00001-of-00002.bin`` → ``model-00001-of-00002.safetensors``, ``x.pt`` → ``x.safetensors``."""
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in PICKLE_SUFFIXES:
        return name
    if stem.startswith("pytorch_model"):
        stem = "model" + stem[len("pytorch_model"):]
    return stem + ".safetensors"


def hub_cache_dir(cfg_cache: Optional[str]) -> Path:
    if cfg_cache:
        return Path(cfg_cache).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def _probe(spec: ModelSpec) -> str:
    """The probe file's path relative to the root (``subfolder/probe``)."""
    return "/".join(part for part in (spec.subfolder, spec.probe) if part)


def locate(spec: ModelSpec, cache_dir: Optional[str] = None) -> Location:
    """Find a model as a local path, else (hub ids) in `converted_dir`, else in the hub cache; never
    touches the network. The probe is ``subfolder/probe`` under each root."""
    if not spec.source:
        return Location(spec, None, (f"{spec.key} is not set",))
    local = Path(spec.source).expanduser()
    probe = _probe(spec)
    looked = [str(local.resolve() / probe) if probe else str(local.resolve())]
    target = local / probe if probe else local
    if target.exists():
        return Location(spec, local, tuple(looked))
    if _looks_like_hub_id(spec.source):
        converted = converted_dir(spec.source)
        # a converted pickle probe (the IP-Adapter's .bin) is its .safetensors there
        converted_probe = "/".join(part for part in (spec.subfolder, safetensors_name(spec.probe)) if part)
        looked.append(f"converted weights {converted / converted_probe}")
        if (converted / converted_probe).is_file():
            return Location(spec, converted, tuple(looked))
        cache = hub_cache_dir(cache_dir)
        looked.append(f"hub cache {cache} (repo {spec.source}, file {probe or 'config.json'})")
        found = _in_hub_cache(spec.source, probe, cache)
        if found is not None:
            return Location(spec, found, tuple(looked))
    return Location(spec, None, tuple(looked))


def _in_hub_cache(repo_id: str, probe: str, cache: Path) -> Optional[Path]:
    """The snapshot folder (the repository's root) that holds ``probe``, or None."""
    from huggingface_hub import try_to_load_from_cache

    filename = probe or "config.json"
    hit = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache))
    if isinstance(hit, str) and os.path.exists(hit):
        return Path(hit).parents[len(Path(filename).parts) - 1]
    return None


# --- which weight files a model folder holds ------------------------------------------------------
SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_PIPELINE_SKIPPED = ("safety_checker", "feature_extractor", "image_encoder")


def weight_variant(name: str) -> Optional[str]:
    """The variant of weight file ``name`` ("" for plain weights, ``fp16`` for ``x.fp16.safetensors``),
    or None when ``name`` is not a safetensors/pickle weight file."""
    stem, suffix = os.path.splitext(name)
    if suffix.lower() not in (SAFETENSORS_SUFFIX, *PICKLE_SUFFIXES):
        return None
    stem = _SHARD.sub("", stem)
    return stem.rpartition(".")[2] if "." in stem else ""


def weight_folders(model: Path, probe: str) -> list[Path]:
    """The folders whose weights loading ``model`` reads: a pipeline's components (those ``model_index.json``
    names, less the safety checker and image encoders), else the folder of the probe file."""
    if probe == "model_index.json":
        try:
            index = json.loads((model / probe).read_text())
        except (OSError, ValueError):
            index = {}
        names = [key for key, value in (index.items() if isinstance(index, dict) else ())
                 if not key.startswith("_") and isinstance(value, list) and value and value[0] and key not in _PIPELINE_SKIPPED]
        return [model / name for name in names if (model / name).is_dir()]
    return [(model / probe).parent if probe else model]


def weights_in(folder: Path, variant: str) -> tuple[list[Path], list[Path], list[Path]]:
    """(safetensors, pickles) of ``variant`` directly in ``folder``, and every weight file there of any variant."""
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    weights = [p for p in files if weight_variant(p.name) is not None]
    chosen = [p for p in weights if weight_variant(p.name) == variant]
    safe = [p for p in chosen if p.suffix.lower() == SAFETENSORS_SUFFIX]
    pickles = [p for p in chosen if p.suffix.lower() in PICKLE_SUFFIXES]
    return safe, pickles, weights
