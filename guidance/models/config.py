"""`models.*`, the run config's `models` section: where each model comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class ModelsConfig:
    """Where each model comes from: a Hugging Face hub id (looked up in the local cache) or a folder."""

    preset: Literal["real", "tiny-random"] = "real"
    """`real` (the ids/folders below) or `tiny-random` (tiny random models built in code, for dry runs and tests)."""
    cache_dir: Optional[str] = None
    """Hugging Face cache to look in (default: $HF_HUB_CACHE, ~/.cache/huggingface/hub)."""
    allow_pickle: bool = False
    """Allow non-safetensors (pickle) weights. Off by default: a pickle can run code when loaded."""
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    """SD1.5-family base for identity-aware score distillation (diffusers layout)."""
    controlnet_landmarks: str = "CrucibleAI/ControlNetMediaPipeFace"
    controlnet_normal: str = "lllyasviel/control_v11p_sd15_normalbae"
    controlnet_canny: str = "lllyasviel/control_v11p_sd15_canny"
    ip_adapter: str = "h94/IP-Adapter-FaceID"
    ip_adapter_weight: str = "ip-adapter-faceid-portrait_sd15.safetensors"
    texture_base: str = "SG161222/Realistic_Vision_V4.0_noVAE"
    texture_vae: str = "stabilityai/sd-vae-ft-mse"
    normal_sd: str = "xanderhuang/normal-adapted-sd1.5"
    depth_sd: str = "xanderhuang/depth-adapted-sd1.5"
    arcface: Optional[str] = None
    """ArcFace ONNX file (e.g. insightface buffalo_l `w600k_r50.onnx`); identity tokens need it."""
    face_parsing: Optional[str] = None
    """Face-parsing segmentation model (hub id or folder) for the foreground mask."""
    clip: Optional[str] = None
    """CLIP model (transformers layout; hub id or folder) for the CLIP-I metric of `run.py eval`."""
    lpips: Optional[str] = None
    """LPIPS (AlexNet) weight file for `run.py eval`: torchvision `features.N.*` plus LPIPS `linK.model.1.weight`."""
    normal_estimator: Optional[str] = None
    """Normal estimator for reference.source=estimator: a diffusers `MarigoldNormalsPipeline` folder/hub id
    (e.g. prs-eth/marigold-normals-v1-1); its frame is reference.estimator_normal_convention, its settings
    reference.estimator_*. See fitter/stages/reference/estimate_normals.py."""
    depth_estimator: Optional[str] = None
    """Depth estimator for reference.source=estimator: a transformers `AutoModelForDepthEstimation` folder/hub id
    (DPT, Depth Anything) with its image processor."""
    panohead: Optional[str] = None
    """PanoHead generator for init.kind=gan_inversion: the official network pickle (read without running
    its code) or its safetensors conversion (`python run.py convert-panohead CKPT.pkl OUT.safetensors`)."""
