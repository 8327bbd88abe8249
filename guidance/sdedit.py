"""A conditioned image prior for texturing, and one SDEdit target.

`GuidedPrior` is the texture stage's diffusion model: guided noise ε (CFG with view prompts, identity
tokens for near-frontal views, normal ControlNet) computed by ISD's own batching
(`ISDGuidance.guided_noise`), plus an image codec that can also decode.

SDEdit target of a render x (B, 3, H, W) in [0, 1] at timesteps t (B,):

    z = E(x), z_t = √ᾱ_t z + √(1−ᾱ_t) ε,  ε̂ = guided noise,  x̂0 = D((z_t − √(1−ᾱ_t) ε̂) / √ᾱ_t)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor

from common.errors import require
from guidance import sds
from guidance.controlnet_sample import decode_latents
from guidance.denoiser import Denoiser, SDDenoiser, VAECodec
from guidance.isd import DEFAULT_PROMPT, ISDConfig, ISDGuidance
from guidance.models import effective_models_config, load_controlnet, load_identity_adapter, load_stable_diffusion
from guidance.models.bundle import load_options
from guidance.models.loading import load_vae
from guidance.models.sources import model_spec, resolve
from guidance.prompts import TextEncoder


class ImageCodec(Protocol):
    def encode(self, images: Tensor) -> Tensor: ...

    def decode(self, latents: Tensor) -> Tensor: ...


class VAEImageCodec(VAECodec):
    """`VAECodec` that also decodes: latents (n, 4, h, w) → images (n, 3, H, W) in [0, 1]."""

    def decode(self, latents: Tensor) -> Tensor:
        return decode_latents(self.vae, latents)


@dataclass
class PriorConfig:
    """The settings of the texture prior, the run config's `fit.texture.prior` section (the prompt is the run's)."""

    negative_prompt: str = ""
    guidance_scale: float = 10.0
    ip_scale: float = 1.0
    control_scale: float = 1.0
    identity_max_azimuth: float = 70.0
    """Identity tokens only for views within this azimuth of the face (as ISD)."""
    view_prompts: bool = True

    def __post_init__(self) -> None:
        require(self.guidance_scale >= 0 and self.ip_scale >= 0 and self.control_scale >= 0, "guidance_scale",
                "and ip_scale, control_scale must be >= 0")
        require(0.0 <= self.identity_max_azimuth <= 180.0, "identity_max_azimuth", "must be in [0, 180]")

    def isd_config(self) -> ISDConfig:
        return ISDConfig(negative_prompt=self.negative_prompt, guidance_scale=self.guidance_scale, ip_scale=self.ip_scale,
                         control_scale=self.control_scale, identity_max_azimuth=self.identity_max_azimuth,
                         view_prompts=self.view_prompts)


class GuidedPrior:
    """Guided noise prediction and an image codec (see module docstring)."""

    def __init__(self, cfg: PriorConfig, denoiser: Denoiser, codec: ImageCodec, text_encoder: Callable[[list[str]], Tensor],
                 alphas_cumprod: Tensor, *, prompt: str = DEFAULT_PROMPT) -> None:
        self.cfg, self.codec, self.prompt = cfg, codec, prompt
        self.guidance = ISDGuidance(cfg.isd_config(), denoiser, codec, text_encoder, alphas_cumprod, prompt=prompt)
        self.alphas_cumprod = self.guidance.alphas_cumprod

    @torch.no_grad()
    def noise(self, z_t: Tensor, t: Tensor, azimuths: Sequence[float], identity: Tensor | None, control: Tensor | None) -> Tensor:
        """Guided ε (B, C, h, w) of latents z_t (B, C, h, w) at integer timesteps t (B,).

        identity: (E,) ArcFace embedding or None; control: (B, 3, H, W) normal-ControlNet images or None."""
        n = z_t.shape[0]
        if identity is not None:
            identity = identity.reshape(-1, identity.shape[-1]).expand(n, -1).to(z_t.device)
        batch = self.guidance.view_conditioning(azimuths, identity)
        return self.guidance.guided_noise(z_t.float(), t, batch, identity, control)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """ᾱ_t (B,) for integer timesteps t (B,); t = -1 means ᾱ = 1 (the clean image)."""
        table = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod]).to(t.device)
        return table[t.long() + 1]


def x0_from_noise(z_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x̂0 = (z_t − √(1−ᾱ) ε) / √ᾱ with ᾱ (B,) broadcast over (B, C, h, w)."""
    a = alpha_bar.view(-1, 1, 1, 1)
    return (z_t - (1.0 - a).sqrt() * eps) / a.sqrt()


@torch.no_grad()
def sdedit_target(prior: GuidedPrior, images: Tensor, t: Tensor, noise_generator: torch.Generator | None, azimuths: Sequence[float],
                  identity: Tensor | None = None, control: Tensor | None = None) -> Tensor:
    """One-step SDEdit estimate x̂0 (B, 3, H, W) in [0, 1] of renders ``images`` (B, 3, H, W) noised to ``t`` (B,).

    ``noise_generator`` draws ε on the CPU (None: torch's global generator, which checkpoints save)."""
    z = prior.codec.encode(images.float())
    noise = torch.randn(z.shape, generator=noise_generator).to(z.device)
    alpha_bar = prior.alpha_bar(t.to(z.device))
    z_t = sds.add_noise(z, noise, alpha_bar)
    eps = prior.noise(z_t, t.to(z.device), azimuths, identity, control)
    return prior.codec.decode(x0_from_noise(z_t, eps, alpha_bar)).clamp(0.0, 1.0)


def load_texture_prior(models: Any, cfg: PriorConfig, device: str | torch.device = "cpu", precision: str = "fp16",
                       identity: bool = True, control: bool = True, *, prompt: str = DEFAULT_PROMPT) -> GuidedPrior:
    """The texture base (`models.texture_base`, VAE `models.texture_vae`), IP-Adapter-FaceID when
    ``identity`` and the normal ControlNet when ``control``, from a `guidance.models.config.ModelsConfig`."""
    models = effective_models_config(models)
    sd = load_stable_diffusion(models, "texture_base", device, precision)
    vae = sd.vae
    if models.texture_vae:
        vae = load_vae(resolve(model_spec(models, "texture_vae"), models.cache_dir), load_options(models, device, precision), subfolder=None)
    if identity:
        load_identity_adapter(sd.unet, models, cfg.ip_scale)
    controlnet = load_controlnet(models, "normal", device, precision) if control else None
    denoiser = SDDenoiser(sd.unet, controlnet, cfg.ip_scale, cfg.control_scale)
    return GuidedPrior(cfg, denoiser, VAEImageCodec(vae), TextEncoder(sd.tokenizer, sd.text_encoder), sd.scheduler.alphas_cumprod,
                       prompt=prompt)
