"""Blended-latent DDIM inpainting (Avrahami et al. 2023) with a `GuidedPrior`.

Given an image x (1, 3, H, W) in [0, 1] and a keep mask m (1, 1, H, W) (1 = keep the pixel):

    z0 = E(x);  m_z = m resized to the latents (area average, then > 0.5)
    timesteps t_0 = t_start > t_1 > … > t_{S-1} ≥ 0 (S = steps, evenly spaced), t_S = −1 (ᾱ = 1)
    z = √ᾱ_{t_0} z0 + √(1−ᾱ_{t_0}) ε
    for each i:  ε̂ = guided noise(z, t_i);  x̂0 = (z − √(1−ᾱ) ε̂)/√ᾱ
                 z = √ᾱ_{t_{i+1}} x̂0 + √(1−ᾱ_{t_{i+1}}) ε̂               (DDIM, η = 0)
                 z = m_z·(√ᾱ_{t_{i+1}} z0 + √(1−ᾱ_{t_{i+1}}) ε_i) + (1 − m_z)·z   (re-blend the kept region)
    out = m·x + (1 − m)·D(z)

With an inpainting UNet (9 input channels) wrap it in `MaskConditionedUNet` before building the
prior's denoiser and pass that wrapper: the UNet then sees [z, 1 − m_z, E(m·x + (1 − m)·½)] (the
ControlNet still sees z alone), and the re-blend keeps the known latents exact. The pixels to fill are
grey in the masked image (½ in [0, 1], 0 in [−1, 1]), as SD inpainting UNets were trained and as
diffusers' inpainting pipeline prepares them (the [−1, 1] image times the keep mask), not black.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import require
from guidance.sdedit import GuidedPrior, ddim_step, ddim_timesteps


@dataclass
class InpaintConfig:
    """The DDIM schedule, the run config's `fit.texture.inpaint.ddim` section."""

    t_start: int = 950
    steps: int = 20

    def __post_init__(self) -> None:
        require(0 < self.t_start < 1000 and 1 <= self.steps <= 1000, "t_start", "must be in (0, 1000) with steps in [1, 1000]")


def masked_image(image: Tensor, keep: Tensor) -> Tensor:
    """The inpainting UNet's masked image (1, 3, H, W) in [0, 1]: kept pixels as they are, the rest grey (½)."""
    return image * keep + 0.5 * (1.0 - keep)


def latent_keep_mask(keep: Tensor, size: tuple[int, ...]) -> Tensor:
    """(1, 1, h, w) float {0, 1}: latent cells whose pixels are mostly kept, of keep (1, 1, H, W)."""
    return (F.interpolate(keep.float(), size=size, mode="area") > 0.5).float()


class MaskConditionedUNet(torch.nn.Module):
    """An SD inpainting UNet (9 input channels) that takes 4-channel latents: ``condition``
    (1, 5, h, w) = [mask to fill, masked-image latents] is appended to every sample of a call."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.inner = unet
        self.condition: Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, z: Tensor, t: Tensor, **kwargs: Any) -> Any:
        if self.condition is None:
            raise RuntimeError("MaskConditionedUNet called without a condition (set it per inpainting call)")
        cond = self.condition.to(z).expand(z.shape[0], -1, -1, -1)
        return self.inner(torch.cat([z, cond], dim=1), t, **kwargs)


class BlendedInpainter:
    """``inpaint(image, keep, azimuth, identity, control) -> image`` (see module docstring)."""

    def __init__(self, prior: GuidedPrior, cfg: InpaintConfig, conditioned_unet: MaskConditionedUNet | None = None, *,
                 seed: int = 0) -> None:
        self.prior, self.cfg, self.conditioned_unet = prior, cfg, conditioned_unet
        self.generator = torch.Generator().manual_seed(seed)

    def _randn(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.generator).to(like.device)

    def _noise(self, z: Tensor, t: int, azimuth: float, identity: Tensor | None, control: Tensor | None) -> Tensor:
        tt = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
        return self.prior.noise(z, tt, [azimuth] * z.shape[0], identity, control)

    @torch.no_grad()
    def inpaint(self, image: Tensor, keep: Tensor, azimuth: float, identity: Tensor | None = None, control: Tensor | None = None) -> Tensor:
        """image (1, 3, H, W) in [0, 1]; keep (1, 1, H, W) in {0, 1}; control (1, 3, H, W) or None.
        Returns (1, 3, H, W): the kept pixels unchanged, the rest generated."""
        codec, alpha_bar = self.prior.codec, self.prior.alpha_bar
        z0 = codec.encode(image.float())
        m = latent_keep_mask(keep, z0.shape[-2:]).to(z0)
        if self.conditioned_unet is not None:
            self.conditioned_unet.condition = torch.cat([1.0 - m, codec.encode(masked_image(image.float(), keep.float()))], dim=1)
        ts = ddim_timesteps(self.cfg.t_start, self.cfg.steps)
        a0 = alpha_bar(torch.tensor([ts[0]], device=z0.device))
        z = a0.sqrt() * z0 + (1.0 - a0).sqrt() * self._randn(z0)
        for t, t_next in zip(ts[:-1], ts[1:]):
            a = alpha_bar(torch.tensor([t], device=z0.device))
            a_next = alpha_bar(torch.tensor([t_next], device=z0.device))
            eps = self._noise(z, t, azimuth, identity, control)
            z = ddim_step(z, eps, a, a_next)
            known = a_next.sqrt() * z0 + (1.0 - a_next).sqrt() * self._randn(z0)
            z = m * known + (1.0 - m) * z
        generated = codec.decode(z)
        return keep * image + (1.0 - keep) * generated
