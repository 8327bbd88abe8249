"""`reference.source=estimator`: camera-space normals from a diffusers Marigold normals pipeline.

`models.normal_estimator` names a folder or hub id in the `MarigoldNormalsPipeline` layout
(`model_index.json` + unet/ vae/ text_encoder/ tokenizer/ scheduler/, e.g. prs-eth/marigold-normals-v1-1).
Each part is loaded through the project's loaders (`guidance.models.loading`: safetensors unless
models.allow_pickle, fp16 on CUDA and fp32 on CPU) and the pipeline is assembled from them with the
settings in `model_index.json` (prediction type, default steps and processing resolution).

What the pipeline returns (diffusers 0.42 `pipeline_marigold_normals.py`, `MarigoldNormalsOutput`):
`.prediction` holds unit normals in [-1, 1], shape (N, 3, H, W) for output_type "pt" and (N, H, W, 3)
for "np" (`pt_to_numpy` is a permute to channels-last), at the input image's size when
match_input_resolution (the default) and renormalised after that resize. Channels are (x, y, z) in
Marigold's frame, which `MarigoldImageProcessor.visualize_normals` documents as X right, Y top, Z
facing the observer: the OpenGL camera frame of fitter/stages/reference/view.py, so the signs for Marigold are
(1, 1, 1) (`reference.estimator_normal_convention=opengl`). A pipeline trained in the OpenCV camera
frame (x right, y down, z away from the viewer) takes `opencv`: y and z are negated, the same
conversion as user normal maps (`fitter.stages.reference.user.CONVENTION_SIGNS`). Models with
use_full_z_range false predict z in [0, 1] instead of [-1, 1]; that is still "z towards the viewer".

The pipeline runs with output_type "pt", a CPU generator seeded with run.seed (the same noise on
every device), `reference.estimator_steps` / `estimator_ensemble` / `estimator_resolution` (None:
the model's defaults); the prediction is resized to the crop if it is not already that size and
renormalised.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from fitter.stages.reference.user import CONVENTION_SIGNS
from guidance.models import loading
from guidance.models.bundle import load_options
from guidance.models.config import ModelsConfig
from guidance.models.sources import missing, resolve
from guidance.registry import ModelSpec

if TYPE_CHECKING:
    from diffusers import MarigoldNormalsPipeline

    from guidance.models.sources import LoadOptions, Resolved

log = logging.getLogger("headfit")


def normal_estimator_spec(models: ModelsConfig) -> ModelSpec:
    return ModelSpec("normal estimator (Marigold normals pipeline)", "models.normal_estimator", models.normal_estimator, "model_index.json")


def _pipeline_config(src: Resolved, opts: LoadOptions) -> dict[str, Any]:
    """`model_index.json` of the pipeline; a `MissingModelError` when unreadable or not a normals model."""
    from diffusers import MarigoldNormalsPipeline


    try:
        config = dict(MarigoldNormalsPipeline.load_config(src.path, cache_dir=opts.cache_dir, local_files_only=src.local_files_only))
    except (OSError, ValueError) as exc:
        raise missing(src.spec, (src.path,), f"could not be loaded ({type(exc).__name__}: {' '.join(str(exc).split())[:240]})") from None
    kind = config.get("prediction_type")
    if kind not in (None, "normals"):
        raise missing(src.spec, (src.path,), f"predicts {kind!r}, not normals (it is a {config.get('_class_name')})")
    return config


def _load_normal_estimator(models: ModelsConfig, device: torch.device) -> MarigoldNormalsPipeline:
    """A `MarigoldNormalsPipeline` on ``device`` (fp16 on CUDA, fp32 on CPU), progress bars off."""
    from diffusers import DDIMScheduler, LCMScheduler, MarigoldNormalsPipeline

    src = resolve(normal_estimator_spec(models), models.cache_dir)
    opts = load_options(models, device, "fp16")  # fp16 on CUDA, fp32 on CPU
    config = _pipeline_config(src, opts)
    schedulers = {"DDIMScheduler": DDIMScheduler, "LCMScheduler": LCMScheduler}
    named = (config.get("scheduler") or [None, None])[-1]
    if named not in schedulers:
        raise missing(src.spec, (src.path,), f"has scheduler {named!r}; a Marigold pipeline needs one of {sorted(schedulers)}")
    scheduler = loading.from_pretrained(schedulers[named], src, opts, "scheduler", weights=False)
    pipe = MarigoldNormalsPipeline(
        unet=loading.load_unet(src, opts),
        vae=loading.load_vae(src, opts),
        scheduler=type(scheduler).from_config(scheduler.config, clip_sample=False),  # never clip x̂0: latents are not in [-1, 1]
        text_encoder=loading.load_text_encoder(src, opts),
        tokenizer=loading.load_tokenizer(src, opts),
        prediction_type=config.get("prediction_type", "normals"),
        use_full_z_range=config.get("use_full_z_range", True),
        default_denoising_steps=config.get("default_denoising_steps"),
        default_processing_resolution=config.get("default_processing_resolution"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prediction_to_normals(prediction: np.ndarray | torch.Tensor, size: tuple[int, int], convention: str) -> np.ndarray:
    """(H, W, 3) float32 OpenGL camera-frame unit normals of a Marigold ``.prediction`` of one image.

    ``prediction`` in ``convention``'s frame, laid out as the pipeline returns it: a tensor
    (output_type "pt") is channels-first, (1, 3, h, w) or (3, h, w); an array (output_type "np") is
    channels-last, (1, h, w, 3) or (h, w, 3). Resized (bilinear) to ``size`` when it differs,
    renormalised, then turned into the OpenGL frame."""
    channels_first = isinstance(prediction, torch.Tensor)
    pred = torch.as_tensor(prediction).detach().float().cpu()
    if pred.ndim == 4 and pred.shape[0] == 1:
        pred = pred[0]
    chw = pred if channels_first or pred.ndim != 3 else pred.permute(2, 0, 1)
    if chw.ndim != 3 or chw.shape[0] != 3:
        layout = "(1, 3, H, W) tensor" if channels_first else "(1, H, W, 3) array"
        raise ValueError(f"expected the normal prediction of one image as a {layout}, got shape {tuple(prediction.shape)}")
    if tuple(chw.shape[-2:]) != tuple(size):
        chw = torch.nn.functional.interpolate(chw[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    chw = torch.nn.functional.normalize(torch.nan_to_num(chw), dim=0, eps=1e-6)
    signs = torch.tensor(CONVENTION_SIGNS[convention], dtype=torch.float32)[:, None, None]
    return (chw * signs).permute(1, 2, 0).contiguous().numpy().astype(np.float32)


@torch.no_grad()
def estimate_normals(models: ModelsConfig, crop: np.ndarray, device: torch.device, *, steps: int | None = None,
                     ensemble: int = 1, resolution: int | None = None, convention: str = "opengl", seed: int = 0) -> np.ndarray:
    """(S, S, 3) float32 unit normals in our OpenGL camera frame of an (S, S, 3) uint8 crop.

    ``steps``/``resolution`` None: the model's defaults; ``ensemble``: Marigold's ensemble size;
    ``convention``: the frame the model predicts in (``opengl`` for Marigold, or ``opencv``)."""
    pipe = _load_normal_estimator(models, device)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    output = pipe(Image.fromarray(np.ascontiguousarray(crop)), num_inference_steps=steps, ensemble_size=ensemble,
                  processing_resolution=resolution, generator=generator, output_type="pt")
    normals = prediction_to_normals(output.prediction, crop.shape[:2], convention)
    log.info("reference: estimated normals with %s (%s frame, %s steps, ensemble %d)", models.normal_estimator, convention,
             steps if steps is not None else f"default {pipe.default_denoising_steps}", ensemble)
    return normals
