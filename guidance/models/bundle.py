"""Load the models a stage needs from a `ModelsConfig` (real folders/hub ids or the tiny preset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from guidance.models import loading
from guidance.models.config import ModelsConfig
from guidance.models.ip_adapter import attach_ip_adapter, read_ip_adapter
from guidance.models.presets import effective_models_config
from guidance.models.sources import LoadOptions, default_dtype, hub_offline, missing, model_spec, resolve
from guidance.registry import _looks_like_hub_id, locate, safetensors_name

CONTROLNET_FIELDS = {"landmarks": "controlnet_landmarks", "normal": "controlnet_normal", "canny": "controlnet_canny"}


@dataclass
class StableDiffusion:
    """One SD1.5-family checkpoint: frozen modules on one device/dtype."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype


@dataclass
class GuidanceModels:
    """What ISD needs: the base checkpoint (IP-Adapter attached when ``identity``) and ControlNets."""

    sd: StableDiffusion
    controlnets: dict[str, Any] = field(default_factory=dict)
    identity: bool = False


def load_options(models: ModelsConfig, device: str | torch.device = "cpu", precision: str = "fp16") -> LoadOptions:
    return LoadOptions(cache_dir=models.cache_dir, device=str(device), dtype=default_dtype(device, precision),
                       pickle_fields=frozenset(models.allow_pickle))


def load_stable_diffusion(models: ModelsConfig, name: str = "base", device: str | torch.device = "cpu", precision: str = "fp16", scheduler: str = "ddpm") -> StableDiffusion:
    """UNet, VAE, text encoder, tokenizer and a DDPM/DDIM scheduler of ``models.<name>``."""
    models = effective_models_config(models)
    opts = load_options(models, device, precision)
    src = resolve(model_spec(models, name), models.cache_dir)
    return StableDiffusion(
        unet=loading.load_unet(src, opts),
        vae=loading.load_vae(src, opts),
        text_encoder=loading.load_text_encoder(src, opts),
        tokenizer=loading.load_tokenizer(src, opts),
        scheduler=loading.load_scheduler(src, opts, scheduler),
    )


def load_controlnet(models: ModelsConfig, which: str, device: str | torch.device = "cpu", precision: str = "fp16"):
    """The ``landmarks``, ``normal`` or ``canny`` ControlNet."""
    models = effective_models_config(models)
    name = CONTROLNET_FIELDS[which]
    return loading.load_controlnet(resolve(model_spec(models, name), models.cache_dir), load_options(models, device, precision))


def ip_adapter_file(models: ModelsConfig) -> Path:
    """Path of the IP-Adapter weight file: a file, or ``ip_adapter_weight`` in a folder (its subfolder) or in
    the converted folder / hub cache of a hub id. A pickle's ``<stem>.safetensors`` conversion next to it (what
    `python run.py convert-weights` writes) is taken instead of the pickle."""
    models = effective_models_config(models)
    spec = model_spec(models, "ip_adapter")
    if spec.source and Path(spec.source).expanduser().is_file():
        return _converted_or(Path(spec.source).expanduser())
    location = locate(spec, models.cache_dir)
    if location.model_path is not None:
        return _converted_or(location.model_path / models.ip_adapter_weight)
    if spec.source and _looks_like_hub_id(spec.source) and not hub_offline():
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(spec.source, models.ip_adapter_weight, subfolder=spec.subfolder or None,
                                        cache_dir=models.cache_dir))
        except Exception as exc:  # network and hub errors of many kinds
            raise missing(spec, location.looked, f"could not be downloaded ({type(exc).__name__})") from None
    raise missing(spec, location.looked)


def _converted_or(path: Path) -> Path:
    converted = path.with_name(safetensors_name(path.name))
    return converted if converted.is_file() else path


def load_identity_adapter(unet: Any, models: ModelsConfig, scale: float = 1.0) -> None:
    """Attach IP-Adapter-FaceID to ``unet`` (in place), on the UNet's device and dtype."""
    state = read_ip_adapter(ip_adapter_file(models), effective_models_config(models).pickle_allowed("ip_adapter"))
    attach_ip_adapter(unet, state, scale)


def load_isd_models(models: ModelsConfig, device: str | torch.device = "cpu", precision: str = "fp16", identity: bool = True, controlnets: tuple[str, ...] = ("landmarks",), name: str = "base") -> GuidanceModels:
    """Everything identity-aware score distillation needs, loaded and frozen; ``name`` is the `ModelsConfig`
    field of the SD1.5-family checkpoint it runs on (``ISDConfig.model``)."""
    sd = load_stable_diffusion(models, name, device, precision)
    if identity:
        load_identity_adapter(sd.unet, models)
    nets = {which: load_controlnet(models, which, device, precision) for which in controlnets}
    return GuidanceModels(sd, nets, identity)
