"""The noise predictor ISD queries, and the VAE as a latent codec (both swappable in tests).

A denoiser maps noisy latents to predicted noise: ``predict(z_t, t, text, identity, control)`` with
z_t (n, 4, h, w), t (n,), text (n, 77, D), identity (n, 1, E) ArcFace embeddings or None (no
identity tokens), control (n, 3, H, W) in [0, 1] or None (no ControlNet).
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

from guidance.models.ip_adapter import has_ip_adapter, identity_embedding_dim, set_ip_scale


class Denoiser(Protocol):
    def predict(self, z_t: Tensor, t: Tensor, text: Tensor, identity: Tensor | None, control: Tensor | None) -> Tensor: ...


class LatentCodec(Protocol):
    def encode(self, images: Tensor) -> Tensor: ...


class SDDenoiser:
    """SD1.5 UNet + optional landmark ControlNet + optional IP-Adapter-FaceID identity tokens."""

    def __init__(self, unet: Any, controlnet: Any | None = None, ip_scale: float = 1.0, control_scale: float = 1.0) -> None:
        self.unet, self.controlnet = unet, controlnet
        self.ip_scale, self.control_scale = ip_scale, control_scale
        self.identity_dim = identity_embedding_dim(unet) if has_ip_adapter(unet) else 0

    def predict(self, z_t: Tensor, t: Tensor, text: Tensor, identity: Tensor | None, control: Tensor | None) -> Tensor:
        dtype = self.unet.dtype
        z_t, text = z_t.to(dtype), text.to(dtype)
        kwargs: dict[str, Any] = {}
        if self.identity_dim:
            set_ip_scale(self.unet, self.ip_scale if identity is not None else 0.0)
            embeds = identity if identity is not None else z_t.new_zeros(z_t.shape[0], 1, self.identity_dim)
            kwargs["added_cond_kwargs"] = {"image_embeds": [embeds.to(dtype)]}
        if self.controlnet is not None and control is not None:
            down, mid = self.controlnet(z_t, t, encoder_hidden_states=text, controlnet_cond=control.to(dtype), conditioning_scale=self.control_scale, return_dict=False)
            kwargs.update(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        return self.unet(z_t, t, encoder_hidden_states=text, **kwargs).sample.float()


class VAECodec:
    """Images (n, 3, H, W) in [0, 1] → scaled latents (n, 4, H/f, W/f), differentiable.

    Uses the posterior mean (not a sample): the same render gives the same latent, and the
    distillation gradient carries no extra VAE noise."""

    def __init__(self, vae: Any) -> None:
        self.vae = vae

    def encode(self, images: Tensor) -> Tensor:
        x = (images * 2.0 - 1.0).to(self.vae.dtype)
        return self.vae.encode(x).latent_dist.mean.float() * self.vae.config.scaling_factor
