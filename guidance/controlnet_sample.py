"""Plain text-to-image DDIM sampling with classifier-free guidance, identity tokens and a ControlNet.

What diffusers' SD ControlNet pipeline does for one prompt, on our `Denoiser`:

    z_T ~ N(0, I)·σ_init                              (B, 4, H/f, W/f)   f = VAE downsampling
    for t in the scheduler's S timesteps:
        ε_c = ε̂(z_t; prompt, identity tokens, control)
        ε_u = ε̂(z_t; negative prompt, zero identity embedding, same control)
        z_{t-1} = scheduler.step(ε_u + s·(ε_c − ε_u), t, z_t)
    image = (D(z_0 / vae scaling) + 1) / 2            (B, 3, H, W) in [0, 1]

The unconditional branch keeps the ControlNet and feeds the identity projection a zero embedding,
as ISD does (`guidance.isd`), so only the text and the identity differ between the two branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from guidance.denoiser import Denoiser
from guidance.sds import classifier_free_guidance


@dataclass
class SampleSettings:
    steps: int = 30
    guidance_scale: float = 7.5
    seed: int = 0


def vae_factor(vae: Any) -> int:
    """Pixels per latent cell of an AutoencoderKL (8 for SD1.5)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def sample_latents(denoiser: Denoiser, scheduler: Any, text: Tensor, negative_text: Tensor, identity: Tensor | None,
                   control: Tensor | None, latent_shape: tuple[int, int, int, int], settings: SampleSettings) -> Tensor:
    """Denoised latents (B, C, h, w).

    Args:
        denoiser: e.g. `guidance.denoiser.SDDenoiser` (its IP scale and ControlNet apply).
        scheduler: a diffusers scheduler (DDIM for the paper's sampler); its timesteps are reset.
        text, negative_text: (B, 77, D) prompt embeddings of the two CFG branches.
        identity: (B, E) ArcFace embeddings, or None for no identity tokens.
        control: (B, 3, H, W) control images in [0, 1], or None.
        latent_shape: (B, C, h, w).
    """
    device = text.device
    generator = torch.Generator().manual_seed(settings.seed)
    z = torch.randn(latent_shape, generator=generator).to(device) * scheduler.init_noise_sigma
    scheduler.set_timesteps(settings.steps, device=device)
    both_text = torch.cat([text, negative_text])
    both_identity = None
    if identity is not None:
        own = identity.reshape(identity.shape[0], 1, -1).to(device)
        both_identity = torch.cat([own, torch.zeros_like(own)])
    both_control = None if control is None else torch.cat([control, control]).to(device)
    for t in scheduler.timesteps:
        z_in = scheduler.scale_model_input(torch.cat([z, z]), t)
        steps = t.reshape(1).expand(z_in.shape[0]).to(device)
        cond, uncond = denoiser.predict(z_in, steps, both_text, both_identity, both_control).chunk(2)
        z = scheduler.step(classifier_free_guidance(cond, uncond, settings.guidance_scale), t, z).prev_sample
    return z


@torch.no_grad()
def decode_latents(vae: Any, latents: Tensor) -> Tensor:
    """Images (B, 3, H, W) in [0, 1] of latents (B, C, h, w)."""
    z = (latents / vae.config.scaling_factor).to(vae.dtype)
    return ((vae.decode(z).sample.float() + 1.0) * 0.5).clamp(0.0, 1.0)
