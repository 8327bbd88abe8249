"""`reference.source=generate`: ID-aware normal and depth maps of the reference crop.

Per map (ARCHITECTURE.md "Reference normal/depth"): the normal- or depth-adapted SD1.5 (HumanNorm),
the canny ControlNet on canny(reference crop, 100/200), IP-Adapter-FaceID portrait tokens of the
subject's ArcFace embedding (scale `reference.normal_ip_scale` 0.5 / `depth_ip_scale` 0.1), the
prompt "<prompt>, black background, normal map, head only" ("depth map" for depth), DDIM with
`reference.steps` (30) steps and CFG `reference.guidance_scale` (7.5) at `reference.size` (512)².
Returns the raw model images; fitter/stages/reference/maps.py converts them to our file conventions.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from common.errors import MissingModelError
from fitter.config import Config
from fitter.subject import Subject
from guidance.control import canny_control
from guidance.controlnet_sample import SampleSettings, decode_latents, sample_latents, vae_factor
from guidance.denoiser import SDDenoiser
from guidance.models import load_controlnet, load_identity_adapter, load_stable_diffusion
from guidance.prompts import TextEncoder

log = logging.getLogger("headfit")
MODEL_FIELDS = {"normal": "normal_sd", "depth": "depth_sd"}


def prompt_for(kind: str, prompt: str) -> str:
    return f"{prompt}, black background, {kind} map, head only"


def subject_identity(subject: Subject, cfg: Config) -> np.ndarray:
    """(512,) ArcFace embedding (`Subject.arcface_embedding`); this source cannot go without one."""
    identity = subject.arcface_embedding(cfg.models)
    if identity is None:
        raise MissingModelError("reference.source=generate needs identity tokens: set models.arcface (an ArcFace ONNX file)")
    return identity


def generate_map(kind: str, cfg: Config, control: np.ndarray, identity: np.ndarray, prompt: str, device: torch.device) -> np.ndarray:
    """(S, S, 3) float32 in [0, 1]: the model's ``kind`` ('normal' or 'depth') image for an
    (S, S, 3) uint8 canny control image and a (512,) identity embedding."""
    r = cfg.reference
    ip_scale = r.normal_ip_scale if kind == "normal" else r.depth_ip_scale
    sd = load_stable_diffusion(cfg.models, MODEL_FIELDS[kind], device, scheduler="ddim")
    load_identity_adapter(sd.unet, cfg.models, ip_scale)
    controlnet = load_controlnet(cfg.models, "canny", device)
    denoiser = SDDenoiser(sd.unet, controlnet, ip_scale)
    encode = TextEncoder(sd.tokenizer, sd.text_encoder)
    text, negative = encode([prompt_for(kind, prompt)]), encode([r.negative_prompt])
    size = control.shape[0]
    f = vae_factor(sd.vae)
    control_t = torch.from_numpy(control).permute(2, 0, 1)[None].float().div(255.0).to(device)
    identity_t = torch.from_numpy(identity).reshape(1, -1).to(device)
    settings = SampleSettings(steps=r.steps, guidance_scale=r.guidance_scale, seed=cfg.run.seed)
    shape = (1, sd.unet.config.in_channels, size // f, size // f)
    latents = sample_latents(denoiser, sd.scheduler, text, negative, identity_t, control_t, shape, settings)
    image = decode_latents(sd.vae, latents)[0].permute(1, 2, 0).cpu().numpy()
    log.info("reference: generated the %s map with %s (%d steps)", kind, getattr(cfg.models, MODEL_FIELDS[kind]), r.steps)
    return image.astype(np.float32)


def generate_maps(cfg: Config, subject: Subject, crop: np.ndarray, prompt: str, device: torch.device) -> dict[str, np.ndarray]:
    """{'normal': (S, S, 3), 'depth': (S, S, 3)} model images in [0, 1] of the (S, S, 3) uint8 crop."""
    control = canny_control(crop)
    identity = subject_identity(subject, cfg)
    return {kind: generate_map(kind, cfg, control, identity, prompt, device) for kind in MODEL_FIELDS}
