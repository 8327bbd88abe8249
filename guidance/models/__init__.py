"""Diffusion model loading: hub ids or local folders, safetensors by default, the tiny-random preset."""

from guidance.models.bundle import (
    GuidanceModels,
    StableDiffusion,
    ip_adapter_file,
    load_controlnet,
    load_identity_adapter,
    load_isd_models,
    load_stable_diffusion,
)
from guidance.models.ip_adapter import attach_ip_adapter, read_ip_adapter, set_ip_scale
from guidance.models.sources import LoadOptions, Resolved, default_dtype, hub_offline, model_spec, resolve
from guidance.models.tiny import effective_models_config, ensure_tiny_models, tiny_models_config

__all__ = [
    "GuidanceModels",
    "LoadOptions",
    "Resolved",
    "StableDiffusion",
    "attach_ip_adapter",
    "default_dtype",
    "effective_models_config",
    "ensure_tiny_models",
    "hub_offline",
    "ip_adapter_file",
    "load_controlnet",
    "load_identity_adapter",
    "load_isd_models",
    "load_stable_diffusion",
    "model_spec",
    "read_ip_adapter",
    "resolve",
    "set_ip_scale",
    "tiny_models_config",
]
