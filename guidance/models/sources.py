"""Where a model's weights come from: a local folder, the Hugging Face cache, or (online) the hub.

Every model is named by a `ModelsConfig` field (e.g. ``base``), with the subfolder and variant that
``models.subfolders``/``models.variants`` give it. `resolve` turns that into a path to pass to
``from_pretrained`` (which adds the spec's subfolder and variant) plus the ``local_files_only`` flag: a
model found on disk (folder, converted folder or hub cache) is always loaded with ``local_files_only=True``;
a hub id that is not cached is downloaded only when the hub is not offline (``HF_HUB_OFFLINE``), otherwise
it is a `MissingModelError` naming the model and every place looked in.

`check_model` says whether a model is ready to load: found, found with only pickle weights that
``models.allow_pickle`` does not name (then the exact `python run.py convert-weights SRC DST` to run,
after which the model is found with no config edit), or missing.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from common.errors import MissingModelError
from guidance.models.config import ModelsConfig, pickle_name
from guidance.registry import (
    Location,
    ModelSpec,
    _looks_like_hub_id,
    converted_dir,
    locate,
    safetensors_name,
    weight_folders,
    weights_in,
)

# field -> (role, probe file that shows the model is present)
MODEL_ROLES: dict[str, tuple[str, str]] = {
    "base": ("ISD base (SD1.5)", "model_index.json"),
    "controlnet_landmarks": ("landmark ControlNet (MediaPipe face)", "config.json"),
    "controlnet_normal": ("normal ControlNet", "config.json"),
    "controlnet_canny": ("canny ControlNet", "config.json"),
    "texture_base": ("texture base (SD1.5 family)", "model_index.json"),
    "texture_vae": ("texture VAE", "config.json"),
    "normal_sd": ("normal-adapted SD1.5", "model_index.json"),
    "depth_sd": ("depth-adapted SD1.5", "model_index.json"),
    "arcface": ("ArcFace ONNX (identity embedding)", ""),
}


@dataclass(frozen=True)
class Resolved:
    """A model ready for ``from_pretrained``: a local folder (or a hub id to download) and the flag."""

    spec: ModelSpec
    path: str
    local_files_only: bool


@dataclass(frozen=True)
class LoadOptions:
    """How to load: HF cache folder, which models may load pickle weights, and device/dtype.

    ``allow_pickle=True`` allows every model; ``pickle_fields`` names some (`ModelsConfig.allow_pickle`)."""

    cache_dir: str | None = None
    allow_pickle: bool = False
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    pickle_fields: frozenset[str] = frozenset()

    def pickle_allowed(self, spec: ModelSpec) -> bool:
        return self.allow_pickle or pickle_name(spec.key) in self.pickle_fields


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, not only at import time)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().lower() in ("1", "true", "yes", "on") or bool(constants.HF_HUB_OFFLINE)


def model_spec(models: ModelsConfig, field: str) -> ModelSpec:
    """The `ModelSpec` of a `ModelsConfig` field (``ip_adapter`` probes for its weight file), with its
    ``models.subfolders``/``models.variants`` entries."""
    if field == "ip_adapter":
        spec = ModelSpec("IP-Adapter-FaceID (portrait)", "models.ip_adapter", models.ip_adapter, models.ip_adapter_weight)
    else:
        role, probe = MODEL_ROLES[field]
        spec = ModelSpec(role, f"models.{field}", getattr(models, field), probe)
    return with_layout(spec, models)


def with_layout(spec: ModelSpec, models: ModelsConfig) -> ModelSpec:
    """``spec`` (of a ``models.<field>`` key) with the subfolder and variant the config gives that field."""
    field = spec.key.removeprefix("models.")
    if not spec.key.startswith("models.") or (field not in models.subfolders and field not in models.variants):
        return spec
    return dataclasses.replace(spec, subfolder=models.subfolder(field), variant=models.variant(field))


def missing(spec: ModelSpec, looked: tuple[str, ...], why: str = "not found", download_hint: bool = True) -> MissingModelError:
    hub = download_hint and spec.source and _looks_like_hub_id(spec.source)
    hint = f" (download it with `hf download {spec.source}`)" if hub else ""
    where = f" (subfolder {spec.subfolder!r}: models.subfolders.{spec.key.removeprefix('models.')})" if spec.subfolder else ""
    return MissingModelError(f"{spec.role} {spec.key}={spec.source!r}{where} {why}; looked in: {'; '.join(looked)}{hint}")


# --- found, needs converting, or missing -------------------------------------------------------------
@dataclass(frozen=True)
class ModelCheck:
    """What `check_model` found. ``state``: ``found`` (ready to load from ``path``), ``convert`` (only pickle
    weights, not allowed: run ``command``, then ``then`` if set) or ``missing`` (``why``, and where it looked)."""

    location: Location
    state: Literal["found", "convert", "missing"]
    path: Optional[Path] = None
    why: str = ""
    command: str = ""
    then: str = ""

    @property
    def spec(self) -> ModelSpec:
        return self.location.spec

    @property
    def ok(self) -> bool:
        return self.state == "found"

    def line(self) -> str:
        """One line for check-models and error messages."""
        if self.state == "found":
            return f"found   {self.path}" + (f" ({self.why})" if self.why else "")
        if self.state == "convert":
            return f"needs convert-weights, {self.why}; run: {self.command}" + (f" and then {self.then}" if self.then else "")
        looked = "; ".join(self.location.looked)
        return f"MISSING ({self.why}) looked in {looked}" if self.why else f"MISSING looked in {looked}"


def convert_command(src: Path, dst: Path) -> str:
    """The command line that converts ``src`` (a pickle file or a model folder) into ``dst``."""
    return f"python run.py convert-weights {shlex.quote(str(src))} {shlex.quote(str(dst))}"


def check_model(spec: ModelSpec, models: ModelsConfig) -> ModelCheck:
    """Whether ``spec`` (with its subfolder/variant) is on this machine and loadable without pickles
    that ``models.allow_pickle`` does not allow; never touches the network."""
    return _check_located(locate(spec, models.cache_dir), models.pickle_allowed(pickle_name(spec.key)))


def check_model_at(src: Resolved) -> ModelCheck:
    """`check_model` of a model already resolved to a local folder (pickles not allowed): for the
    convert-weights command of a load that failed."""
    return _check_located(Location(src.spec, Path(src.path), (src.path,)), allowed=False)


def _check_located(location: Location, allowed: bool) -> ModelCheck:
    spec, model = location.spec, location.model_path
    if model is None:
        return ModelCheck(location, "missing")
    if not spec.probe:  # a single file (ArcFace ONNX, LPIPS, PanoHead): its own reader decides
        return ModelCheck(location, "found", model)
    if spec.key == "models.ip_adapter":
        return _check_weight_file(location, model / spec.probe, allowed)
    pickles: list[Path] = []
    for folder in weight_folders(model, spec.probe):
        safe, pickled, weights = weights_in(folder, spec.variant)
        if safe:
            continue
        if pickled:
            pickles += pickled
        elif weights:
            kinds = sorted({p.name for p in weights})
            wanted = f"variant {spec.variant!r}" if spec.variant else "plain (non-variant)"
            return ModelCheck(location, "missing", why=f"{folder} has no {wanted} weights, only {', '.join(kinds)}; "
                              f"set models.variants.{spec.key.removeprefix('models.')}")
    if not pickles:
        return ModelCheck(location, "found", model)
    if allowed:
        return ModelCheck(location, "found", model, why="pickle weights allowed by models.allow_pickle")
    dst, then = conversion_target(spec, location)
    why = "only pickle weights (" + ", ".join(str(p.relative_to(model)) for p in pickles) + ")"
    return ModelCheck(location, "convert", model, why, convert_command(model, dst), then)


def _check_weight_file(location: Location, path: Path, allowed: bool) -> ModelCheck:
    converted = path.with_name(safetensors_name(path.name))
    if converted.is_file():
        return ModelCheck(location, "found", converted)
    if path.suffix.lower() == ".safetensors" or allowed:
        return ModelCheck(location, "found", path, why="pickle weights allowed by models.allow_pickle" if path.suffix != ".safetensors" else "")
    dst, then = conversion_target(location.spec, location)
    return ModelCheck(location, "convert", path, f"{path.name} is a pickle", convert_command(path, dst), then)


def conversion_target(spec: ModelSpec, location: Location) -> tuple[Path, str]:
    """Where the conversion of a located model goes, and what to set afterwards ("" when nothing): a hub id's
    goes to `converted_dir` (found there next time); a local folder's next to it, ``<folder>-safetensors``."""
    assert location.found is not None and spec.source
    if _looks_like_hub_id(spec.source) and not Path(spec.source).expanduser().exists():
        root = converted_dir(spec.source)
        return (root / spec.subfolder if spec.subfolder else root), ""
    if spec.key == "models.ip_adapter":  # the .safetensors next to the .bin is preferred when present
        return (location.model_path or location.found), ""
    root = location.found.with_name(location.found.name + "-safetensors")
    return (root / spec.subfolder if spec.subfolder else root), f"set {spec.key}={root}"


def resolve(spec: ModelSpec, cache_dir: str | None = None) -> Resolved:
    """Local path (folder or hub-cache snapshot) of a model, or its hub id when it may be downloaded."""
    location = locate(spec, cache_dir)
    if location.found is not None:
        return Resolved(spec, str(location.found), True)
    if spec.source and _looks_like_hub_id(spec.source) and not hub_offline():
        return Resolved(spec, spec.source, False)
    raise missing(spec, location.looked)


def default_dtype(device: str | torch.device, precision: str = "fp16") -> torch.dtype:
    """fp32 on CPU; fp16 (or bf16 with ``precision='bf16'``, fp32 with ``'fp32'``) on CUDA."""
    if torch.device(device).type != "cuda":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
