"""The ``tiny-random`` preset: every hero model, tiny and random, saved once under the cache.

``models.preset=tiny-random`` only changes *which folders* are loaded: `tiny_models_config` builds
(once, seeded, atomically) ``$HEADFIT_CACHE/tiny-random/v1/`` and returns a `ModelsConfig` whose
fields point into it; everything is then loaded through the same code as real weights.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from guidance.models import tiny_builders as tb
from guidance.models.config import ModelsConfig
from guidance.models.ip_adapter import flatten

VERSION = "v1"
IP_WEIGHT = "ip-adapter-faceid-portrait_sd15.safetensors"
SD_FOLDERS = {"base": 0, "normal_sd": 1, "depth_sd": 2, "texture_base": 3}
CONTROLNETS = {"controlnet_landmarks": 10, "controlnet_normal": 11, "controlnet_canny": 12}
TINY_FIELDS = frozenset({*SD_FOLDERS, *CONTROLNETS, "texture_vae", "ip_adapter", "arcface"})
"""`ModelsConfig` fields the tiny-random preset replaces (`tiny_models_config`)."""


def tiny_root() -> Path:
    """``$HEADFIT_CACHE/tiny-random/v1`` (``~/.cache/headfit`` when HEADFIT_CACHE is unset)."""
    base = Path(os.environ.get("HEADFIT_CACHE") or Path.home() / ".cache" / "headfit")
    return base / "tiny-random" / VERSION


def _save_sd(folder: Path, seed: int) -> None:
    torch.manual_seed(seed)
    tokenizer = tb.tiny_tokenizer()
    tb.tiny_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id).save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    tb.tiny_unet().save_pretrained(folder / "unet")
    tb.tiny_vae().save_pretrained(folder / "vae")
    tb.tiny_scheduler().save_pretrained(folder / "scheduler")
    tb.write_model_index(folder)


def build_tiny_models(root: Path) -> None:
    """Write every tiny model into ``root`` (deterministic: the same files for the same version)."""
    for name, seed in SD_FOLDERS.items():
        _save_sd(root / name, seed)
    for name, seed in CONTROLNETS.items():
        torch.manual_seed(seed)
        tb.tiny_controlnet(tb.tiny_unet()).save_pretrained(root / name)
    torch.manual_seed(20)
    tb.tiny_vae().save_pretrained(root / "texture_vae")
    torch.manual_seed(30)
    (root / "ip_adapter").mkdir(parents=True)
    save_file(flatten(tb.tiny_ip_adapter(tb.tiny_unet())), str(root / "ip_adapter" / IP_WEIGHT))
    (root / "arcface").mkdir(parents=True)
    tb.tiny_arcface_onnx(root / "arcface" / "tiny_arcface.onnx", seed=40)


def ensure_tiny_models(root: Path | None = None) -> Path:
    """Build the tiny models once; concurrent builders race on an atomic rename and one wins."""
    root = root or tiny_root()
    if (root / "complete").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-building-"))
    try:
        with torch.random.fork_rng():
            build_tiny_models(scratch)
        (scratch / "complete").write_text(VERSION)
        if root.exists():  # a damaged earlier build (no `complete` marker)
            shutil.rmtree(root, ignore_errors=True)
        os.rename(scratch, root)
    except OSError:
        if not (root / "complete").is_file():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return root


def tiny_models_config(models: ModelsConfig, root: Path | None = None) -> ModelsConfig:
    """``models`` with every model field pointing at the tiny folders (built if needed)."""
    root = ensure_tiny_models(root)
    fields: dict[str, Any] = {name: str(root / name) for name in TINY_FIELDS - {"arcface"}}
    return dataclasses.replace(models, preset="real", ip_adapter_weight=IP_WEIGHT, arcface=str(root / "arcface" / "tiny_arcface.onnx"),
                               subfolders={}, variants={}, **fields)  # the tiny folders are the models themselves
