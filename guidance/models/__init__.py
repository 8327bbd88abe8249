"""Diffusion model loading: hub ids or local folders, safetensors by default, the tiny-random and random-full presets."""

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
from guidance.models.presets import effective_models_config, preset_fields
from guidance.models.random_full import ensure_random_full_models, random_full_config
from guidance.models.sources import LoadOptions, Resolved, default_dtype, hub_offline, model_spec, resolve
from guidance.models.tiny import ensure_tiny_models, tiny_models_config

__all__ = [
    "GuidanceModels",
    "LoadOptions",
    "Resolved",
    "StableDiffusion",
    "attach_ip_adapter",
    "default_dtype",
    "effective_models_config",
    "ensure_random_full_models",
    "ensure_tiny_models",
    "hub_offline",
    "ip_adapter_file",
    "load_controlnet",
    "load_identity_adapter",
    "load_isd_models",
    "load_stable_diffusion",
    "model_spec",
    "preset_fields",
    "random_full_config",
    "read_ip_adapter",
    "resolve",
    "set_ip_scale",
    "tiny_models_config",
]
