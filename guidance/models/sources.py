"""Where a model's weights come from: a local folder, the Hugging Face cache, or (online) the hub.

Every model is named by a `ModelsConfig` field (e.g. ``base``). `resolve` turns that into a path to
pass to ``from_pretrained`` plus the ``local_files_only`` flag: a model found on disk (folder or hub
cache) is always loaded with ``local_files_only=True``; a hub id that is not cached is downloaded
only when the hub is not offline (``HF_HUB_OFFLINE``), otherwise it is a `MissingModelError` naming
the model and every place looked in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from common.errors import MissingModelError
from guidance.models.config import ModelsConfig
from guidance.registry import ModelSpec, _looks_like_hub_id, locate

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
    """How to load: HF cache folder, whether pickle weights are allowed, and device/dtype."""

    cache_dir: str | None = None
    allow_pickle: bool = False
    device: str = "cpu"
    dtype: torch.dtype = torch.float32


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, not only at import time)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().lower() in ("1", "true", "yes", "on") or bool(constants.HF_HUB_OFFLINE)


def model_spec(models: ModelsConfig, field: str) -> ModelSpec:
    """The `ModelSpec` of a `ModelsConfig` field (``ip_adapter`` probes for its weight file)."""
    if field == "ip_adapter":
        return ModelSpec("IP-Adapter-FaceID (portrait)", "models.ip_adapter", models.ip_adapter, models.ip_adapter_weight)
    role, probe = MODEL_ROLES[field]
    return ModelSpec(role, f"models.{field}", getattr(models, field), probe)


def missing(spec: ModelSpec, looked: tuple[str, ...], why: str = "not found") -> MissingModelError:
    hint = f" (download it with `hf download {spec.source}`)" if spec.source and _looks_like_hub_id(spec.source) else ""
    return MissingModelError(f"{spec.role} {spec.key}={spec.source!r} {why}; looked in: {'; '.join(looked)}{hint}")


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
