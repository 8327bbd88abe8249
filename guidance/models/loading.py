"""``from_pretrained`` for each kind of model, with one error type for anything missing.

safetensors only unless ``allow_pickle``: diffusers/transformers get ``use_safetensors=True``, so a
folder that holds only ``.bin`` weights is refused with a message that says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import MissingModelError
from guidance.models.sources import LoadOptions, Resolved, missing

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _has_only_pickles(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    files = [p for p in folder.rglob("*") if p.is_file()]
    return any(p.suffix in PICKLE_SUFFIXES for p in files) and not any(p.suffix == ".safetensors" for p in files)


def _failure(src: Resolved, subfolder: str | None, exc: Exception, opts: LoadOptions) -> MissingModelError:
    where = Path(src.path) / (subfolder or "")
    if not opts.allow_pickle and _has_only_pickles(where):
        return missing(src.spec, (str(where),), "has only pickle weights (.bin), refused: convert them to .safetensors or set models.allow_pickle=true")
    reason = " ".join(str(exc).split())[:240]
    return missing(src.spec, (str(where),), f"could not be loaded ({type(exc).__name__}: {reason})")


def from_pretrained(cls: Any, src: Resolved, opts: LoadOptions, subfolder: str | None = None, weights: bool = True, dtype_kw: str = "torch_dtype") -> Any:
    """``cls.from_pretrained`` on a resolved source; errors become `MissingModelError`.

    ``weights=False`` is for tokenizers (no dtype, no safetensors switch); ``dtype_kw`` is the name
    the library uses for the dtype argument (diffusers ``torch_dtype``, transformers 5 ``dtype``)."""
    args: dict[str, Any] = {"cache_dir": opts.cache_dir, "local_files_only": src.local_files_only}
    if subfolder:
        args["subfolder"] = subfolder
    if weights:
        args["use_safetensors"] = None if opts.allow_pickle else True
        args[dtype_kw] = opts.dtype
    try:
        model = cls.from_pretrained(src.path, **args)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _failure(src, subfolder, exc, opts) from None
    if weights:
        model = model.to(opts.device).eval().requires_grad_(False)
    return model


def load_unet(src: Resolved, opts: LoadOptions):
    from diffusers import UNet2DConditionModel

    return from_pretrained(UNet2DConditionModel, src, opts, "unet")


def load_vae(src: Resolved, opts: LoadOptions, subfolder: str | None = "vae"):
    from diffusers import AutoencoderKL

    return from_pretrained(AutoencoderKL, src, opts, subfolder)


def load_text_encoder(src: Resolved, opts: LoadOptions):
    from transformers import CLIPTextModel

    return from_pretrained(CLIPTextModel, src, opts, "text_encoder", dtype_kw="dtype")


def load_tokenizer(src: Resolved, opts: LoadOptions):
    from transformers import CLIPTokenizer

    return from_pretrained(CLIPTokenizer, src, opts, "tokenizer", weights=False)


def load_controlnet(src: Resolved, opts: LoadOptions):
    from diffusers import ControlNetModel

    return from_pretrained(ControlNetModel, src, opts)


def load_scheduler(src: Resolved, opts: LoadOptions, kind: str = "ddpm"):
    """DDPM or DDIM built from the checkpoint's ``scheduler/`` config (whatever class it names)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    classes = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}
    if kind not in classes:
        raise ValueError(f"scheduler kind must be one of {sorted(classes)}, not {kind!r}")
    try:
        config = DDPMScheduler.load_config(src.path, subfolder="scheduler", cache_dir=opts.cache_dir, local_files_only=src.local_files_only)
    except (OSError, ValueError) as exc:
        raise _failure(src, "scheduler", exc, opts) from None
    return classes[kind].from_config(config)
