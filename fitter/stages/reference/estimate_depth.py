"""`reference.source=estimator`: depth from any transformers depth-estimation model.

`models.depth_estimator` names a folder or hub id that `AutoModelForDepthEstimation` and
`AutoImageProcessor` load (DPT, Depth Anything, ZoeDepth, …; safetensors unless models.allow_pickle names depth_estimator).
Its `predicted_depth` (B, h, w) is resized to the crop. Relative models (DPT, Depth Anything with
`depth_estimation_type` "relative" or unset) predict inverse depth, bigger = nearer; a config that
says `depth_estimation_type: metric` predicts depth, bigger = farther. `estimate_depth` returns
"larger = farther" either way: relative predictions are negated. For a head a few units from the
camera that is depth up to scale and shift within about its relative depth range (a few percent),
which is what the depth losses assume. Normals (models.normal_estimator, a Marigold normals
pipeline) are fitter/stages/reference/estimate_normals.py.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from guidance.models.bundle import load_options
from guidance.models.config import ModelsConfig
from guidance.models.loading import from_pretrained
from guidance.models.sources import resolve
from guidance.registry import ModelSpec

log = logging.getLogger("headfit")


def depth_estimator_spec(models: ModelsConfig) -> ModelSpec:
    return ModelSpec("depth estimator (transformers depth estimation)", "models.depth_estimator", models.depth_estimator, "config.json")


def _load_depth_estimator(models: ModelsConfig, device: torch.device):  # type: ignore[no-untyped-def]
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    src = resolve(depth_estimator_spec(models), models.cache_dir)
    opts = load_options(models, device, "fp32")
    model = from_pretrained(AutoModelForDepthEstimation, src, opts, dtype_kw="dtype")
    processor = from_pretrained(AutoImageProcessor, src, opts, weights=False)
    return model, processor


@torch.no_grad()
def estimate_depth(models: ModelsConfig, crop: np.ndarray, device: torch.device) -> np.ndarray:
    """(S, S) float32 depth, larger = farther (up to scale and shift), of an (S, S, 3) uint8 crop."""
    model, processor = _load_depth_estimator(models, device)
    inputs = processor(images=crop, return_tensors="pt").to(device)
    predicted = model(**inputs).predicted_depth.float()
    size = crop.shape[:2]
    resized = torch.nn.functional.interpolate(predicted.reshape(1, 1, *predicted.shape[-2:]), size=size, mode="bicubic", align_corners=False)
    depth = resized[0, 0].cpu().numpy()
    metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
    log.info("reference: estimated depth with %s (%s output)", models.depth_estimator, "metric depth" if metric else "inverse depth")
    return (depth if metric else -depth).astype(np.float32)
