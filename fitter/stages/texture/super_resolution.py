"""Optional super-resolution of the final texture with any configured ONNX model.

The model takes one input (1, 3, H, W) float32 in [0, 1] and returns (1, 3, sH, sW) (e.g. a
Real-ESRGAN export); run on the CPU with onnxruntime. The texel validity mask is resized to the new
size (nearest) so that seam dilation still works afterwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import MissingModelError


def upscale_texture(texture: Tensor, model_path: str) -> Tensor:
    """(T, T, 3) in [0, 1] → (sT, sT, 3) in [0, 1] through the ONNX model at ``model_path``."""
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise MissingModelError(f"super-resolution model fit.texture.sr_model={model_path} is not a file (an ONNX model)")
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise MissingModelError(f"cannot load the super-resolution model {path}: {' '.join(str(exc).split())[:200]}") from None
    image = texture.detach().float().cpu().permute(2, 0, 1)[None].numpy().astype(np.float32)
    out = session.run(None, {session.get_inputs()[0].name: image})[0]
    if out.ndim != 4 or out.shape[:2] != (1, 3) or out.shape[2] < image.shape[2]:
        raise ValueError(f"super-resolution model {path} returned shape {out.shape}, expected (1, 3, sH, sW) with s >= 1")
    return torch.from_numpy(np.ascontiguousarray(out[0].transpose(1, 2, 0))).clamp(0.0, 1.0).to(texture)


def resize_valid(valid: Tensor, size: int) -> Tensor:
    """(T, T) bool texel mask resized (nearest) to (size, size)."""
    return F.interpolate(valid[None, None].float(), size=(size, size), mode="nearest")[0, 0] > 0.5
