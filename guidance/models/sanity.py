"""Load-time role sanity: do the models a config names fit the roles they are given?

Read before any work from each located model's ``config.json`` files (and a safetensors header for the
IP-Adapter), never its weights, so a wrong checkpoint is one line at start-up instead of a shape error
(or, worse, silent nonsense) minutes into a fit. Checked:

* an SD-family pipeline (ISD base, normal/depth-adapted SD, texture base): UNet ``in_channels`` 4, and
  its text encoder's ``hidden_size`` equals the UNet's ``cross_attention_dim``;
* the texture's inpainting UNet (``fit.texture.inpaint_model``): ``in_channels`` 9, and the texture
  base's cross-attention width;
* each ControlNet's ``cross_attention_dim`` equals that of the UNet it conditions (landmarks → the ISD
  base, canny → the normal/depth-adapted SD, normal → the texture base and inpainting UNet);
* the texture VAE has 4 latent channels;
* the IP-Adapter's identity-token width (``image_proj.norm.weight``, read from a safetensors header)
  equals the cross-attention width of every SD UNet it is attached to (also checked when attached).

A model that is not located, or a config file that is not there (a hub cache holding only part of a
repository), is skipped: the loaders report those. ``problems`` are one line each, naming the model,
the key and the mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

from safetensors import safe_open

from guidance.registry import ModelSpec

SD_KEYS = ("models.base", "models.normal_sd", "models.depth_sd", "models.texture_base")
INPAINT_KEY = "fit.texture.inpaint_model"
CONTROLNET_BASES = {
    "models.controlnet_canny": ("models.normal_sd", "models.depth_sd"),
    "models.controlnet_normal": ("models.texture_base", INPAINT_KEY),
}
"""ControlNet → the UNets it conditions (the landmark ControlNet's is the ISD base, given by the caller)."""
SD15_LANDMARKS = "diffusion_sd15"
UNET_CHANNELS = 4
INPAINT_CHANNELS = 9

Located = Mapping[str, tuple[ModelSpec, Path]]
"""Config key → (spec, the model's folder, or file for the IP-Adapter) of every located model."""


def read_config(path: Path) -> Optional[dict[str, Any]]:
    """A ``config.json`` as a dict, or None when absent or unreadable (the loader reports that)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def cross_dim(config: Optional[dict[str, Any]]) -> Optional[int]:
    """``cross_attention_dim`` of a UNet/ControlNet config (one width even when given per block)."""
    value = (config or {}).get("cross_attention_dim")
    if isinstance(value, (list, tuple)):
        widths = set(value)
        value = widths.pop() if len(widths) == 1 else None
    return value if isinstance(value, int) else None


def short_role(spec: ModelSpec) -> str:
    return spec.role.split(" (")[0]


def named(spec: ModelSpec) -> str:
    return f"{short_role(spec)} {spec.describe()}"


def role_problems(located: Located, isd_base: str = "models.base") -> list[str]:
    """One line per model that does not fit its role (see the module docstring); ``isd_base`` is the key
    of the checkpoint identity-aware score distillation runs on (``models.<fit.geometry.isd.model>``)."""
    unets: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for key in (*SD_KEYS, INPAINT_KEY):
        if key not in located:
            continue
        spec, folder = located[key]
        unet = read_config(folder / "unet" / "config.json")
        if unet is None:
            continue
        unets[key] = unet
        need = INPAINT_CHANNELS if key == INPAINT_KEY else UNET_CHANNELS
        got = unet.get("in_channels")
        if isinstance(got, int) and got != need:
            why = ("an SD inpainting UNet" if need == INPAINT_CHANNELS
                   else "not an inpainting or depth-to-image UNet; an inpainting one goes in fit.texture.inpaint_model")
            problems.append(f"{named(spec)} has a UNet with in_channels {got} but this role needs {need} ({why})")
        text = read_config(folder / "text_encoder" / "config.json")
        width, hidden = cross_dim(unet), (text or {}).get("hidden_size")
        if width is not None and isinstance(hidden, int) and hidden != width:
            problems.append(f"{named(spec)} has a text encoder with hidden_size {hidden} but its UNet's cross_attention_dim "
                            f"is {width}: its components come from different models")
    if INPAINT_KEY in unets and "models.texture_base" in unets:
        problems += _mismatch(located[INPAINT_KEY][0], cross_dim(unets[INPAINT_KEY]), located["models.texture_base"][0],
                              cross_dim(unets["models.texture_base"]))
    bases = {**CONTROLNET_BASES, "models.controlnet_landmarks": (isd_base,)}
    for control, targets in bases.items():
        if control not in located:
            continue
        spec, folder = located[control]
        width = cross_dim(read_config(folder / "config.json"))
        for target in targets:
            if target in unets:
                problems += _mismatch(spec, width, located[target][0], cross_dim(unets[target]), isd=target == isd_base)
    if "models.texture_vae" in located:
        spec, folder = located["models.texture_vae"]
        latents = (read_config(folder / "config.json") or {}).get("latent_channels")
        if isinstance(latents, int) and latents != UNET_CHANNELS:
            problems.append(f"{named(spec)} has latent_channels {latents} but the SD1.5 UNets take {UNET_CHANNELS}")
    if "models.ip_adapter" in located:
        spec, path = located["models.ip_adapter"]
        tokens = ip_token_dim(path)
        for key in (*SD_KEYS, INPAINT_KEY):
            width = cross_dim(unets.get(key))
            if tokens is not None and width is not None and tokens != width:
                problems.append(f"{named(spec)} makes {tokens}-d identity tokens but {_unet_name(located[key][0], key == isd_base)} "
                                f"has cross_attention_dim {width}: wrong IP-Adapter for this base model")
    return problems


def _unet_name(spec: ModelSpec, isd: bool) -> str:
    role = "ISD base" if isd else short_role(spec)
    return f"the {role} UNet ({spec.key})"


def _mismatch(spec: ModelSpec, width: Optional[int], base: ModelSpec, base_width: Optional[int], isd: bool = False) -> list[str]:
    if width is None or base_width is None or width == base_width:
        return []
    hint = "use one made for that base model"
    if spec.key == "models.controlnet_landmarks" and width == 1024 and base_width == 768 and spec.subfolder != SD15_LANDMARKS:
        hint = f"this is the SD2.1 ControlNet; use models.subfolders.controlnet_landmarks={SD15_LANDMARKS}"
    return [f"{named(spec)} has cross_attention_dim {width} but {_unet_name(base, isd)} has {base_width}: {hint}"]


def ip_token_dim(path: Path) -> Optional[int]:
    """Width of the IP-Adapter's identity tokens from a safetensors header (None for a pickle: never opened here)."""
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            if "image_proj.norm.weight" not in handle.keys():
                return None
            shape = handle.get_slice("image_proj.norm.weight").get_shape()
    except Exception:  # a damaged file: the loader reports it
        return None
    return int(shape[0]) if shape else None
