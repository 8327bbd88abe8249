"""Identity-aware score distillation (ISD, the seed paper's geometry prior).

    z = E(render)                       (B, 4, h, w)   VAE latents of the rendered normal map/RGB
    t ~ U[t_min, t_max]·T, ε ~ N(0, I), z_t = √ᾱ_t z + √(1−ᾱ_t) ε
    ε_c = ε̂(z_t; view prompt, identity tokens if |azimuth| < 70°, landmark ControlNet)
    ε_u = ε̂(z_t; negative prompt, zero identity embedding, same control)
    grad = w(t)·(ε_u + s(ε_c − ε_u) − ε_ref)       ε_ref = ε (SDS) or the LoRA UNet (VSD)
    loss = 0.5‖z − sg(z − grad)‖² / B

Build it from loaded models with `ISDGuidance.from_models`, or from any `Denoiser`/`LatentCodec`
and text encoder (tests use analytic ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Sequence

import torch
from torch import Tensor

from common.errors import require
from guidance import sds
from guidance.denoiser import Denoiser, LatentCodec, SDDenoiser, VAECodec
from guidance.prompts import TextEncoder, view_direction, with_view
from guidance.vsd import LoRAEstimator

DEFAULT_PROMPT = "a DSLR portrait photo of a person, high detail"
NEGATIVE_VIEWS = {"front": ("back",), "side": ("front",), "back": ("front",)}
"""Perp-Neg: the views whose prompts push away from each view's own."""


@dataclass
class ISDConfig:
    """The settings of ISD, the run config's `fit.geometry.isd` section. The prompt and the seed are the run's
    (`ISDGuidance` arguments; the prior sees the prompt + `prompt_suffix`). `model`, `identity_tokens`,
    `landmark_control` and `precision` choose what `guidance.models.load_isd_models` loads; `image` and
    `normal_encoding` are what the caller renders for the prior. The defaults are the seed paper's
    geometry setting (the authors' configs/liudehua_geo.yaml and run_exp.py in jinkun-hao/ID-Sculpt)."""

    model: Literal["base", "normal_sd"] = "normal_sd"
    """The `models.*` field whose SD1.5-family UNet, VAE and text encoder ISD runs on: ``normal_sd`` (the
    normal-adapted SD1.5 of HumanNorm, as the authors do) or ``base`` (plain SD1.5). IP-Adapter-FaceID
    and the landmark ControlNet attach to either (both SD1.5, cross-attention 768)."""
    normal_encoding: Literal["normal_adapted_sd", "normal_controlnet"] = "normal_adapted_sd"
    """How the rendered normal map is written for the prior (``image: normal``), an entry of the table in
    guidance/normal_encoding.py: ``normal_adapted_sd`` ((1 + n) / 2 on (0.5, 0.5, 1), the authors') or
    ``normal_controlnet`` (x flipped, on black: the pre-issue-16 hero)."""
    prompt_suffix: str = ", black background, normal map"
    """Appended to the run's prompt for the prior (the authors' geometry prompt, run_exp.py); "" for none."""
    negative_prompt: str = ""
    guidance_scale: float = 50.0
    t_range: tuple[float, float] = (0.02, 0.5)
    t_schedule: Literal["constant", "linear"] = "constant"
    """``constant`` or ``linear`` (t_max moves to ``t_max_end`` over ``anneal_steps``)."""
    t_max_end: float = 0.5
    anneal_steps: int = 5000
    weighting: Literal["sds", "uniform", "fantasia3d"] = "sds"
    """``sds`` (1 − ᾱ_t), ``uniform`` or ``fantasia3d`` (√ᾱ_t·(1 − ᾱ_t))."""
    grad_clip: Optional[float] = None
    """Clamp each element of the latent gradient to ±grad_clip (None: no clamp)."""
    identity_tokens: bool = True
    """IP-Adapter-FaceID identity tokens (for |azimuth| < identity_max_azimuth)."""
    identity_max_azimuth: float = 70.0
    ip_scale: float = 1.0
    landmark_control: bool = True
    """MediaPipe-face landmark ControlNet on the projected 3D landmarks."""
    control_scale: float = 1.0
    view_prompts: bool = True
    front_deg: float = 45.0
    back_deg: float = 45.0
    """View prompts: "front view" within ``front_deg`` of azimuth 0, "back view" within ``back_deg`` of 180."""
    perp_neg: bool = False
    perp_neg_weight: float = 1.0
    vsd: bool = False
    lora_rank: int = 4
    lora_lr: float = 1e-3
    image: Literal["normal", "shaded"] = "normal"
    """What the prior sees: ``normal`` (the rendered normal map written as `normal_encoding`, as in the
    paper) or ``shaded`` (Lambert)."""
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    """fp16 | bf16 | fp32 on CUDA (CPU always runs fp32)."""

    def __post_init__(self) -> None:
        lo, hi = self.t_range
        require(0.0 <= lo <= hi <= 1.0 and 0.0 <= self.t_max_end <= 1.0, "t_range", "must be within [0, 1]")
        require(self.model in ("base", "normal_sd"), "model", "must be base or normal_sd")
        require(self.normal_encoding in ("normal_adapted_sd", "normal_controlnet"), "normal_encoding",
                "must be normal_adapted_sd or normal_controlnet")
        require(self.weighting in sds.WEIGHTINGS, "weighting", f"must be one of {', '.join(sds.WEIGHTINGS)}")
        require(self.t_schedule in ("constant", "linear"), "t_schedule", "must be constant or linear")
        require(self.guidance_scale >= 0 and self.ip_scale >= 0 and self.control_scale >= 0, "guidance_scale",
                "and the scales must be >= 0")
        require(self.anneal_steps >= 1 and self.perp_neg_weight >= 0, "anneal_steps", "must be >= 1 with perp_neg_weight >= 0")
        require(1 <= self.lora_rank <= 256 and self.lora_lr > 0, "lora_rank", "must be in [1, 256] with lora_lr positive")
        require(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be positive or null")
        require(0.0 <= self.identity_max_azimuth <= 180.0, "identity_max_azimuth", "must be in [0, 180]")
        require(self.front_deg >= 0 and self.back_deg >= 0 and self.front_deg + self.back_deg <= 180, "front_deg",
                "and back_deg must be >= 0 with front_deg + back_deg <= 180")


@dataclass
class ViewConditioning:
    """Per-sample conditioning of one batch of views: view prompts, and where identity tokens go."""

    prompts: list[str]
    directions: list[str]
    use_identity: Tensor  # (B,) bool


class ISDGuidance:
    """``loss(images, azimuths, control, step, identity) -> (loss, info)``; see module docstring."""

    def __init__(self, cfg: ISDConfig, denoiser: Denoiser, codec: LatentCodec, text_encoder: Callable[[list[str]], Tensor],
                 alphas_cumprod: Tensor, lora: LoRAEstimator | None = None, *, prompt: str = DEFAULT_PROMPT, seed: int = 0) -> None:
        self.cfg, self.denoiser, self.codec, self.text = cfg, denoiser, codec, text_encoder
        self.prompt = prompt + cfg.prompt_suffix
        self.alphas_cumprod = alphas_cumprod.float()
        self.num_train = int(alphas_cumprod.shape[0])
        self.lora = lora
        if cfg.vsd and lora is None:
            raise ValueError("ISDConfig.vsd needs a LoRAEstimator (use ISDGuidance.from_models)")
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_models(cls, models: Any, cfg: ISDConfig, *, prompt: str = DEFAULT_PROMPT, seed: int = 0) -> "ISDGuidance":
        """From `guidance.models.GuidanceModels` (landmark ControlNet used when loaded)."""
        sd = models.sd
        denoiser = SDDenoiser(sd.unet, models.controlnets.get("landmarks"), cfg.ip_scale, cfg.control_scale)
        lora = LoRAEstimator(sd.unet, denoiser, cfg.lora_rank, cfg.lora_lr, seed) if cfg.vsd else None
        return cls(cfg, denoiser, VAECodec(sd.vae), TextEncoder(sd.tokenizer, sd.text_encoder), sd.scheduler.alphas_cumprod, lora,
                   prompt=prompt, seed=seed)

    # --- conditioning -----------------------------------------------------------------------
    def view_conditioning(self, azimuths: Sequence[float], identity: Tensor | None) -> ViewConditioning:
        """Prompts and identity gating (|azimuth| < ``identity_max_azimuth``, identity given) per view."""
        c = self.cfg
        directions = [view_direction(a, c.front_deg, c.back_deg) for a in azimuths]
        prompts = [with_view(self.prompt, d) if c.view_prompts else self.prompt for d in directions]
        near_front = torch.tensor([abs((float(a) + 180.0) % 360.0 - 180.0) < c.identity_max_azimuth for a in azimuths])
        return ViewConditioning(prompts, directions, near_front & (identity is not None))

    def _negative_prompts(self, batch: ViewConditioning) -> list[list[str]]:
        """Perp-Neg prompts: K lists of B prompts (K = 1: the opposite view of each sample)."""
        return [[with_view(self.prompt, NEGATIVE_VIEWS[d][0]) for d in batch.directions]]

    # --- noise prediction -------------------------------------------------------------------
    def guided_noise(self, z_t: Tensor, t: Tensor, batch: ViewConditioning, identity: Tensor | None, control: Tensor | None) -> Tensor:
        """Guided ε (B, C, h, w): CFG (or Perp-Neg), batched cond/uncond[/negatives], in groups
        of samples that share whether identity tokens are on."""
        out = torch.empty_like(z_t, dtype=torch.float32)
        for on in (True, False):
            index = torch.nonzero(batch.use_identity == on).flatten()
            if len(index):
                out[index] = self._guided_group(z_t, t, batch, identity, control, index, on)
        return out

    def _guided_group(self, z_t: Tensor, t: Tensor, batch: ViewConditioning, identity: Tensor | None, control: Tensor | None, index: Tensor, with_identity: bool) -> Tensor:
        rows = index.tolist()
        prompt_sets = [[batch.prompts[i] for i in rows], [self.cfg.negative_prompt] * len(rows)]
        if self.cfg.perp_neg:
            prompt_sets += [[neg[i] for i in rows] for neg in self._negative_prompts(batch)]
        k = len(prompt_sets)
        text = self.text([p for prompts in prompt_sets for p in prompts]).to(z_t.device)
        ident = None
        if with_identity:
            assert identity is not None  # use_identity is only ever set with an identity
            own = identity[index].unsqueeze(1)
            ident = torch.cat([own, torch.zeros_like(own)] + [own] * (k - 2))
        ctrl = None if control is None else control[index].repeat(k, 1, 1, 1)
        eps = self.denoiser.predict(z_t[index].repeat(k, 1, 1, 1), t[index].repeat(k), text, ident, ctrl).chunk(k)
        if self.cfg.perp_neg:
            return sds.perp_neg_guidance(eps[0], eps[1], list(eps[2:]), [self.cfg.perp_neg_weight] * (k - 2), self.cfg.guidance_scale)
        return sds.classifier_free_guidance(eps[0], eps[1], self.cfg.guidance_scale)

    # --- the loss ---------------------------------------------------------------------------
    def t_bounds(self, step: int) -> tuple[float, float]:
        c = self.cfg
        return c.t_range[0], max(c.t_range[0], sds.annealed_t_max(step, c.t_range[1], c.t_max_end, c.anneal_steps, c.t_schedule))

    def loss(self, images: Tensor, azimuths: Sequence[float], control: Tensor | None = None, step: int = 0, identity: Tensor | None = None, *, latents: bool = False) -> tuple[Tensor, dict[str, float]]:
        """ISD loss of a batch of renders.

        Args:
            images: (B, 3, H, W) in [0, 1] (rendered normal map or shaded/RGB render), or
                (B, C, h, w) latents with ``latents=True``.
            azimuths: B view azimuths in degrees (0 = facing the face).
            control: (B, 3, H, W) landmark control images in [0, 1] (`guidance.control`), or None.
            step: optimisation step (timestep schedule).
            identity: (E,) or (B, E) ArcFace embedding(s); None = text only everywhere.
        Returns:
            the scalar loss (its gradient reaches ``images``) and floats for logging.
        """
        z = images if latents else self.codec.encode(images)
        n = z.shape[0]
        if identity is not None:
            identity = identity.reshape(-1, identity.shape[-1]).expand(n, -1).to(z.device)
        batch = self.view_conditioning(azimuths, identity)
        t_min, t_max = self.t_bounds(step)
        t = sds.sample_timesteps(n, t_min, t_max, self.num_train, self.generator, z.device)
        alpha_bar = self.alphas_cumprod.to(z.device)[t]
        noise = torch.randn(z.shape, generator=self.generator).to(z.device)
        with torch.no_grad():
            z_t = sds.add_noise(z.detach().float(), noise, alpha_bar)
            eps = self.guided_noise(z_t, t, batch, identity, control)
            reference = noise if self.lora is None else self.lora.predict(z_t, t, self.text(batch.prompts))
            weight = sds.timestep_weights(alpha_bar, self.cfg.weighting).view(-1, 1, 1, 1)
            grad = torch.nan_to_num(weight * (eps - reference), nan=0.0, posinf=0.0, neginf=0.0)
            if self.cfg.grad_clip is not None:
                grad = grad.clamp(-self.cfg.grad_clip, self.cfg.grad_clip)
        loss = sds.distillation_loss(z, grad)
        info = {"isd_t": float(t.float().mean()), "isd_grad_norm": float(grad.norm()), "isd_identity_views": float(batch.use_identity.sum())}
        if self.lora is not None:
            info["vsd_lora_loss"] = self.lora.train_step(z.detach().float(), self.text(batch.prompts), self.alphas_cumprod, self.generator)
        return loss, info
