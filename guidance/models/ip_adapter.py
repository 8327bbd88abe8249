"""IP-Adapter-FaceID: read the weight file, attach it to a UNet, set its scale.

Layout (the one h94/IP-Adapter-FaceID ships): ``image_proj`` holds the identity projection
``proj.0`` (512 → hidden), GELU, ``proj.2`` (hidden → tokens·D) and ``norm`` (LayerNorm over D);
``ip_adapter`` holds ``{k}.to_k_ip.weight`` / ``{k}.to_v_ip.weight`` for each cross-attention layer
(k = 1, 3, 5, … in the UNet's processor order). A ``.safetensors`` file stores them flat as
``image_proj.<name>`` / ``ip_adapter.<name>``; a pickle (``.bin``, what h94 ships) nests the two dicts and
is read only when ``models.allow_pickle`` names ``ip_adapter`` (and then with ``torch.load(weights_only=True)``);
`python run.py convert-weights` writes the flat safetensors form of it.
The portrait model maps a 512-d ArcFace embedding to 16 tokens of 768 (SD1.5's cross-attention
width); diffusers turns it into an `IPAdapterFaceIDImageProjection` and `IPAdapterAttnProcessor2_0`.

Attaching goes through diffusers' private `UNet2DConditionModel._load_ip_adapter_weights`: the one public
loader, `IPAdapterMixin.load_ip_adapter`, lives on pipelines (it also fetches files, an image encoder and
FaceID LoRAs) and itself calls the private method; a bare UNet has no public way. Pinned to the tested
diffusers release (`TESTED_DIFFUSERS`; tests/guidance/test_ip_adapter_loader.py checks the method there).
"""

from __future__ import annotations

import inspect
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from common.errors import MissingModelError, UserError
from guidance.models.loading import PICKLE_SUFFIXES
from guidance.models.quiet import quiet_loading
from guidance.weights import read_weight_file

PARTS = ("image_proj", "ip_adapter")
TESTED_DIFFUSERS = "0.42.1"
LOADER = "_load_ip_adapter_weights"
LOADER_PARAMETERS = ("state_dicts", "low_cpu_mem_usage")


def split_flat(flat: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """``{'image_proj.proj.0.weight': …}`` → ``{'image_proj': {'proj.0.weight': …}, 'ip_adapter': {…}}``."""
    nested: dict[str, dict[str, Tensor]] = {part: {} for part in PARTS}
    for key, value in flat.items():
        part, _, name = key.partition(".")
        if part in nested:
            nested[part][name] = value
    return nested


def flatten(nested: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    return {f"{part}.{name}": value.contiguous() for part in PARTS for name, value in nested[part].items()}


def read_ip_adapter(path: str | Path, allow_pickle: bool = False) -> dict[str, dict[str, Tensor]]:
    """The two state dicts of an IP-Adapter weight file (see module docstring)."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise MissingModelError(f"refusing pickle IP-Adapter weights {path} (a pickle can run code): `python run.py check-models` "
                                    "prints the convert-weights command that writes its .safetensors (loaded instead), "
                                    "or add ip_adapter to models.allow_pickle if you trust its source")
        state = read_weight_file(path, allow_pickle, "ip_adapter")
        state = state if isinstance(state, dict) else {}
        nested = {part: dict(state.get(part) or {}) for part in PARTS}
    elif path.suffix == ".safetensors":
        nested = split_flat(read_weight_file(path))
    else:
        raise MissingModelError(f"unknown IP-Adapter weight type {path.name} (expected .safetensors)")
    if not nested["image_proj"] or not nested["ip_adapter"]:
        raise MissingModelError(f"{path} is not an IP-Adapter weight file (no image_proj/ip_adapter weights)")
    return nested


def attach_ip_adapter(unet: Any, state: dict[str, dict[str, Tensor]], scale: float = 1.0) -> None:
    """Install the identity projection and IP attention processors into ``unet`` (in place)."""
    tokens_dim = state["image_proj"]["norm.weight"].shape[0]
    if tokens_dim != unet.config.cross_attention_dim:
        raise MissingModelError(f"IP-Adapter tokens are {tokens_dim}-d but the UNet's cross-attention is {unet.config.cross_attention_dim}-d: wrong IP-Adapter for this base model")
    with quiet_loading():
        ip_adapter_loader(unet)([state], low_cpu_mem_usage=False)
    unet.requires_grad_(False)
    set_ip_scale(unet, scale)


def ip_adapter_loader(unet: torch.nn.Module) -> Callable[..., None]:
    """``unet``'s diffusers IP-Adapter loader (see module docstring), or a one-line error naming the tested release."""
    load = getattr(unet, LOADER, None)
    if load is None or tuple(inspect.signature(load).parameters)[:2] != LOADER_PARAMETERS:
        raise UserError(f"diffusers {_diffusers_version()} has no {type(unet).__name__}.{LOADER}(state_dicts, low_cpu_mem_usage), "
                        f"which attaches IP-Adapters; headfit is tested with diffusers {TESTED_DIFFUSERS}: "
                        f"pip install diffusers=={TESTED_DIFFUSERS}")
    return load


def _diffusers_version() -> str:
    try:
        return metadata.version("diffusers")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def set_ip_scale(unet: Any, scale: float) -> None:
    """Identity-token strength of every IP attention processor (0 skips the identity branch)."""
    for processor in unet.attn_processors.values():
        if hasattr(processor, "to_k_ip"):
            processor.scale = [float(scale)] * len(processor.scale)


def has_ip_adapter(unet: torch.nn.Module) -> bool:
    return getattr(unet.config, "encoder_hid_dim_type", None) == "ip_image_proj"


def num_identity_tokens(unet: Any) -> int:
    """Tokens per identity embedding (16 for the portrait model)."""
    return int(unet.encoder_hid_proj.image_projection_layers[0].num_tokens)


def identity_embedding_dim(unet: Any) -> int:
    """Width of the identity embedding the projection expects (512 for ArcFace)."""
    return int(unet.encoder_hid_proj.image_projection_layers[0].ff.net[0].proj.in_features)
