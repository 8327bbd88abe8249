"""``from_pretrained`` for each kind of model, with one error type for anything missing.

safetensors only unless ``models.allow_pickle`` names the model: diffusers/transformers get
``use_safetensors=True``, so a folder that holds only ``.bin`` weights is refused with a message that
gives the `python run.py convert-weights` command. The spec's subfolder is prefixed to a component's
(``diffusion_sd15`` + ``unet``) and its variant passed on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import MissingModelError
from guidance.models.config import pickle_name
from guidance.models.quiet import quiet_loading
from guidance.models.sources import LoadOptions, Resolved, check_model_at, missing

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def _has_only_pickles(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    files = [p for p in folder.rglob("*") if p.is_file()]
    return any(p.suffix in PICKLE_SUFFIXES for p in files) and not any(p.suffix == ".safetensors" for p in files)


def full_subfolder(src: Resolved, subfolder: str | None) -> str | None:
    """The spec's subfolder joined with a component's (``diffusion_sd15/unet``), or None for the root."""
    return "/".join(part for part in (src.spec.subfolder, subfolder or "") if part) or None


def _failure(src: Resolved, subfolder: str | None, exc: Exception, opts: LoadOptions) -> MissingModelError:
    where = Path(src.path) / (full_subfolder(src, subfolder) or "")
    if not opts.pickle_allowed(src.spec) and _has_only_pickles(where):
        check = check_model_at(src)
        how = f"run `{check.command}`" + (f", then {check.then}" if check.then else "") if check.command else "convert them to .safetensors"
        return missing(src.spec, (str(where),), f"has only pickle weights (.bin), refused: {how}, "
                       f"or add {pickle_name(src.spec.key)} to models.allow_pickle if you trust its source", download_hint=False)
    reason = " ".join(str(exc).split())[:240]
    return missing(src.spec, (str(where),), f"could not be loaded ({type(exc).__name__}: {reason})")


def from_pretrained(cls: Any, src: Resolved, opts: LoadOptions, subfolder: str | None = None, weights: bool = True, dtype_kw: str = "torch_dtype") -> Any:
    """``cls.from_pretrained`` on a resolved source; errors become `MissingModelError`.

    ``subfolder`` is the component's (``unet``), under the spec's own subfolder; the spec's variant is
    passed for weights. ``weights=False`` is for tokenizers (no dtype, no safetensors switch); ``dtype_kw``
    is the name the library uses for the dtype argument (diffusers ``torch_dtype``, transformers 5 ``dtype``)."""
    args: dict[str, Any] = {"cache_dir": opts.cache_dir, "local_files_only": src.local_files_only}
    folder = full_subfolder(src, subfolder)
    if folder:
        args["subfolder"] = folder
    if weights:
        args["use_safetensors"] = None if opts.pickle_allowed(src.spec) else True
        args[dtype_kw] = opts.dtype
        if src.spec.variant:
            args["variant"] = src.spec.variant
    try:
        with quiet_loading():
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
        config = DDPMScheduler.load_config(src.path, subfolder=full_subfolder(src, "scheduler"), cache_dir=opts.cache_dir,
                                           local_files_only=src.local_files_only)
    except (OSError, ValueError) as exc:
        raise _failure(src, "scheduler", exc, opts) from None
    return classes[kind].from_config(config, clip_sample=False)  # never clip x̂0: latents are not images in [-1, 1]
