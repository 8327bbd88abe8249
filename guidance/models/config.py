"""`models.*`, the run config's `models` section: where each model comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from common.errors import SettingError, require

DIFFUSERS_FIELDS = ("base", "controlnet_landmarks", "controlnet_normal", "controlnet_canny", "texture_base", "texture_vae",
                    "normal_sd", "depth_sd")
"""Model fields loaded with diffusers' ``from_pretrained``: the ones `subfolders` and `variants` may name
(and ``ip_adapter``, for `subfolders`: the folder that holds ``ip_adapter_weight``)."""
MODEL_FIELDS = (*DIFFUSERS_FIELDS, "ip_adapter", "arcface", "face_parsing", "clip", "lpips", "normal_estimator",
                "depth_estimator", "panohead")
"""Every field of `ModelsConfig` that names a model."""
PICKLE_NAMES = (*MODEL_FIELDS, "inpaint_model")
"""What `allow_pickle` may name: a model field, ``inpaint_model`` (fit.texture.inpaint_model), and ``lpips`` also
covers the LPIPS weights of init.gan.lpips_weights and fit.texture.lpips_weights."""


@dataclass
class ModelsConfig:
    """Where each model comes from: a Hugging Face hub id (looked up in the local cache) or a folder."""

    preset: Literal["real", "tiny-random", "random-full"] = "real"
    """`real` (the ids/folders below), `tiny-random` (tiny random models built in code, for dry runs and tests) or
    `random-full` (every hero model at its real size with random weights, in the public layouts: benchmarks;
    guidance/models/random_full.py)."""
    cache_dir: Optional[str] = None
    """Hugging Face cache to look in (default: $HF_HUB_CACHE, ~/.cache/huggingface/hub)."""
    allow_pickle: Any = field(default_factory=list)
    """Models that may load pickle (non-safetensors) weights, by field name, e.g. ``[normal_sd, ip_adapter]``
    (see `PICKLE_NAMES`). Empty by default: a pickle can run code when loaded; `python run.py convert-weights`
    turns one into safetensors without running it. (A list of names; typed Any only so that the old boolean form
    gets a message that says so instead of OmegaConf's type error.)"""
    subfolders: dict[str, Optional[str]] = field(default_factory=lambda: {"controlnet_landmarks": "diffusion_sd15"})
    """Folder inside a model's repository/folder that holds it, by field name (`DIFFUSERS_FIELDS` and ip_adapter).
    The landmark ControlNet's repository root is the SD2.1 model; its SD1.5 one is in ``diffusion_sd15``.
    ``""`` or null means the root (``models.subfolders.controlnet_landmarks=""`` for a folder that is the model itself)."""
    variants: dict[str, Optional[str]] = field(default_factory=lambda: {"controlnet_landmarks": "fp16"})
    """diffusers weight variant by field name (``fp16`` loads ``*.fp16.safetensors``; the weights are then cast to
    the run's dtype, so fp32 on CPU works); ``""`` or null means the plain weight files."""
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    """SD1.5-family base for identity-aware score distillation (diffusers layout)."""
    controlnet_landmarks: str = "CrucibleAI/ControlNetMediaPipeFace"
    controlnet_normal: str = "lllyasviel/control_v11p_sd15_normalbae"
    controlnet_canny: str = "lllyasviel/control_v11p_sd15_canny"
    ip_adapter: str = "h94/IP-Adapter-FaceID"
    ip_adapter_weight: str = "ip-adapter-faceid-portrait-v11_sd15.bin"
    """The weight file in models.ip_adapter. h94/IP-Adapter-FaceID ships pickles only: after
    `python run.py convert-weights` (the command check-models prints) its ``<stem>.safetensors`` is loaded instead."""
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

    def __post_init__(self) -> None:
        if isinstance(self.allow_pickle, bool) or self.allow_pickle is None:
            raise _old_allow_pickle(self.allow_pickle)
        names = [self.allow_pickle] if isinstance(self.allow_pickle, str) else list(self.allow_pickle)
        require(all(isinstance(name, str) for name in names), "allow_pickle", "must be a list of model field names")
        self.allow_pickle = names
        _known(names, PICKLE_NAMES, "allow_pickle")
        _known(self.subfolders, (*DIFFUSERS_FIELDS, "ip_adapter"), "subfolders")
        _known(self.variants, DIFFUSERS_FIELDS, "variants")
        subfolders = {key: value or "" for key, value in self.subfolders.items()}
        self.subfolders, self.variants = dict(subfolders), {key: value or "" for key, value in self.variants.items()}
        for key, folder in subfolders.items():
            parts = folder.replace("\\", "/").split("/")
            require(not folder.startswith("/") and ".." not in parts, f"subfolders.{key}", "must be a relative folder inside the model")

    def pickle_allowed(self, name: str) -> bool:
        """Whether `name` (a `PICKLE_NAMES` entry: a model field, ``inpaint_model`` or ``lpips``) may load pickle weights."""
        return name in self.allow_pickle

    def subfolder(self, name: str) -> str:
        return self.subfolders.get(name) or ""

    def variant(self, name: str) -> str:
        return self.variants.get(name) or ""


def pickle_name(key: str) -> str:
    """The `allow_pickle` name of a config key that names weights: ``models.normal_sd`` → ``normal_sd``,
    ``fit.texture.inpaint_model`` → ``inpaint_model``, any ``*lpips_weights`` → ``lpips``."""
    if key.endswith("lpips_weights"):
        return "lpips"
    return key.removeprefix("models.").rpartition(".")[2]


def _known(names: Any, allowed: tuple[str, ...], key: str) -> None:
    unknown = sorted(str(name) for name in names if name not in allowed)
    require(not unknown, key, f"names unknown model field(s) {', '.join(unknown)}; known: {', '.join(allowed)}")


def _old_allow_pickle(value: object) -> SettingError:
    example = "models.allow_pickle=[normal_sd,depth_sd,ip_adapter]"
    return SettingError("allow_pickle", f"is now a list of the models that may load pickle weights, not {value!r}: "
                        f"e.g. {example} (or convert them: python run.py convert-weights SRC DST)")
