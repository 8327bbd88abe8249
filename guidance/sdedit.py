"""A conditioned image prior for texturing, and one SDEdit target.

`GuidedPrior` is the texture stage's diffusion model: guided noise ε (CFG with view prompts, identity
tokens (at every view by default, `PriorConfig.identity_max_azimuth`), normal ControlNet) computed by ISD's own batching
(`ISDGuidance.guided_noise`), plus an image codec that can also decode.

SDEdit target of a render x (B, 3, H, W) in [0, 1] from timestep t (B,), in S DDIM steps (η = 0):

    z = E(x), z = √ᾱ_t z + √(1−ᾱ_t) ε;  timesteps t = s_0 > s_1 > … > s_{S−1} = 0, s_S = −1 (ᾱ = 1)
    for each i:  ε̂ = guided noise(z, s_i),  x̂0 = (z − √(1−ᾱ_{s_i}) ε̂) / √ᾱ_{s_i},
                 z = √ᾱ_{s_{i+1}} x̂0 + √(1−ᾱ_{s_{i+1}}) ε̂
    target = D(z)

S = 1 is the one-step estimate D(x̂0). The authors' texture refinement (jinkun-hao/ID-Sculpt,
`threestudio/models/guidance/ip_controlnet_inpaint.py`, `edit_latents` with `diffusion_steps: 20`)
runs S = 20 with diffusers' DDIM: it sets the scheduler's `num_train_timesteps` to t so that its 20
"leading" timesteps are spaced t // 20 apart below t; ours are spaced evenly from t itself to 0
(the two differ by less than one spacing), with the same ᾱ table and no x̂0 clipping.
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


AUTHORS_NEGATIVE_PROMPT = ("(face painting, artifact, flag, decorative design,deformed iris, deformed pupils, semi-realistic, "
                           "cgi, 3d, render, sketch, cartoon, drawing, anime:1.4), worst quality, low quality, jpeg artifacts, "
                           "bad anatomy")
"""The texture stage's negative prompt in the authors' code (jinkun-hao/ID-Sculpt `run_exp.py`, passed only to
the texture run) less two terms that describe their example subject, not defects: "dark" and "white hair"
(they would push an unseen head away from dark skin or white hair). Their "(…:1.4)" weighting syntax
reaches CLIP as plain text there too (no prompt-weighting parser), so it is kept as written."""


@dataclass
class PriorConfig:
    """The settings of the texture prior, the run config's `fit.texture.prior` section (the prompt is the run's)."""

    negative_prompt: str = AUTHORS_NEGATIVE_PROMPT
    guidance_scale: float = 10.0
    ip_scale: float = 1.0
    control_scale: float = 1.0
    identity_max_azimuth: float = 180.0
    """Identity tokens only for views within this azimuth of the face (as ISD); 180: at every view, as the
    authors' texture stage does (`use_ip = True` for every view in ID-Sculpt's `ip_controlnet_inpaint.py`)."""
    view_prompts: bool = True

    def __post_init__(self) -> None:
        require(self.guidance_scale >= 0 and self.ip_scale >= 0 and self.control_scale >= 0, "guidance_scale",
                "and ip_scale, control_scale must be >= 0")
        require(0.0 <= self.identity_max_azimuth <= 180.0, "identity_max_azimuth", "must be in [0, 180]")

    def isd_config(self) -> ISDConfig:
        return ISDConfig(negative_prompt=self.negative_prompt, guidance_scale=self.guidance_scale, ip_scale=self.ip_scale,
                         control_scale=self.control_scale, identity_max_azimuth=self.identity_max_azimuth,
                         view_prompts=self.view_prompts, prompt_suffix="")  # not the geometry's "normal map" suffix


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
        if identity is not None and self.cfg.identity_max_azimuth >= 180.0:
            batch.use_identity = torch.ones_like(batch.use_identity)  # ISD's gate is strict: |azimuth| = 180 would miss
        return self.guidance.guided_noise(z_t.float(), t, batch, identity, control)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """ᾱ_t (B,) for integer timesteps t (B,); t = -1 means ᾱ = 1 (the clean image)."""
        table = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod]).to(t.device)
        return table[t.long() + 1]


def x0_from_noise(z_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x̂0 = (z_t − √(1−ᾱ) ε) / √ᾱ with ᾱ (B,) broadcast over (B, C, h, w)."""
    a = alpha_bar.view(-1, 1, 1, 1)
    return (z_t - (1.0 - a).sqrt() * eps) / a.sqrt()


def ddim_step(z_t: Tensor, eps: Tensor, alpha_bar: Tensor, alpha_bar_next: Tensor) -> Tensor:
    """One deterministic DDIM step (η = 0): √ᾱ' x̂0 + √(1−ᾱ') ε with ᾱ, ᾱ' (B,); ᾱ' = 1 gives x̂0."""
    a_next = alpha_bar_next.view(-1, 1, 1, 1)
    return a_next.sqrt() * x0_from_noise(z_t, eps, alpha_bar) + (1.0 - a_next).sqrt() * eps


def ddim_timesteps(t_start: int, steps: int) -> list[int]:
    """S = ``steps`` integer timesteps from ``t_start`` down to 0, then −1 (the clean end)."""
    ts = torch.linspace(float(t_start), 0.0, steps).round().long().tolist() if steps > 1 else [t_start]
    return ts + [-1]


DDIM_STEPS = 20
"""DDIM steps of the SDEdit target in the authors' code (`diffusion_steps`, see module docstring)."""


@torch.no_grad()
def sdedit_target(prior: GuidedPrior, images: Tensor, t: Tensor, noise_generator: torch.Generator | None, azimuths: Sequence[float],
                  identity: Tensor | None = None, control: Tensor | None = None, steps: int = DDIM_STEPS) -> Tensor:
    """SDEdit of renders ``images`` (B, 3, H, W) in [0, 1] noised to ``t`` (B,) and denoised in ``steps``
    DDIM steps with the same conditioning at every step (see module docstring); (B, 3, H, W) in [0, 1].

    ``noise_generator`` draws ε on the CPU (None: torch's global generator, which checkpoints save)."""
    require(steps >= 1, "steps", "must be >= 1")
    z = prior.codec.encode(images.float())
    noise = torch.randn(z.shape, generator=noise_generator).to(z.device)
    schedule = torch.tensor([ddim_timesteps(int(ti), steps) for ti in t.tolist()], device=z.device)  # (B, S + 1)
    z = sds.add_noise(z, noise, prior.alpha_bar(schedule[:, 0]))
    for i in range(steps):
        now, after = schedule[:, i], schedule[:, i + 1]
        eps = prior.noise(z, now, azimuths, identity, control)
        z = ddim_step(z, eps, prior.alpha_bar(now), prior.alpha_bar(after))
    return prior.codec.decode(z).clamp(0.0, 1.0)


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
