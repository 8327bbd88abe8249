"""Score-distillation arithmetic shared by ISD/SDS/VSD: timesteps, weights, guidance, the loss.

Shapes: N samples, latents (N, C, h, w); ``alphas_cumprod`` (T,) from the scheduler.
"""

from __future__ import annotations

import torch
from torch import Tensor

WEIGHTINGS = ("sds", "uniform", "fantasia3d")


def annealed_t_max(step: int, t_max: float, t_max_end: float, anneal_steps: int, schedule: str) -> float:
    """Upper end of the timestep range at ``step``: fixed (``constant``) or linear to ``t_max_end``."""
    if schedule == "constant" or anneal_steps <= 0:
        return t_max
    if schedule != "linear":
        raise ValueError(f"unknown timestep schedule {schedule!r} (constant or linear)")
    frac = min(max(step / anneal_steps, 0.0), 1.0)
    return t_max + (t_max_end - t_max) * frac


def sample_timesteps(n: int, t_min: float, t_max: float, num_train: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """(n,) integer timesteps uniform in [t_min·T, t_max·T] (fractions of T = num_train)."""
    low = int(round(t_min * num_train))
    high = max(int(round(t_max * num_train)), low)
    high = min(high, num_train - 1)
    return torch.randint(low, high + 1, (n,), generator=generator).to(device)


def timestep_weights(alpha_bar: Tensor, weighting: str) -> Tensor:
    """w(t) per sample from ᾱ_t (n,): ``sds`` 1 − ᾱ, ``uniform`` 1, ``fantasia3d`` √ᾱ·(1 − ᾱ)."""
    if weighting == "sds":
        return 1.0 - alpha_bar
    if weighting == "uniform":
        return torch.ones_like(alpha_bar)
    if weighting == "fantasia3d":
        return alpha_bar.sqrt() * (1.0 - alpha_bar)
    raise ValueError(f"unknown weighting {weighting!r}; choose from {WEIGHTINGS}")


def add_noise(latents: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """z_t = √ᾱ_t · z + √(1 − ᾱ_t) · ε, with ᾱ_t (n,) broadcast over (n, C, h, w)."""
    a = alpha_bar.view(-1, *([1] * (latents.dim() - 1))).to(latents.dtype)
    return a.sqrt() * latents + (1.0 - a).sqrt() * noise


def classifier_free_guidance(eps_cond: Tensor, eps_uncond: Tensor, scale: float) -> Tensor:
    """ε_u + s·(ε_c − ε_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def perpendicular(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample component of ``a`` perpendicular to ``b`` (both (n, ...))."""
    dims = tuple(range(1, a.dim()))
    along = (a * b).sum(dims, keepdim=True) / (b * b).sum(dims, keepdim=True).clamp_min(1e-12)
    return a - along * b


def perp_neg_guidance(eps_cond: Tensor, eps_uncond: Tensor, eps_negs: list[Tensor], weights: list[float], scale: float) -> Tensor:
    """Perp-Neg (Armandpour et al. 2023): ε_u + s·[(ε_c − ε_u) − Σ_i w_i·⊥(ε_i − ε_u ; ε_c − ε_u)].

    Only the part of each negative prompt's direction that is perpendicular to the positive one is
    removed, so a negative view ("back view") cannot cancel what the positive prompt asks for."""
    positive = eps_cond - eps_uncond
    delta = positive
    for eps_neg, weight in zip(eps_negs, weights):
        delta = delta - weight * perpendicular(eps_neg - eps_uncond, positive)
    return eps_uncond + scale * delta


def distillation_loss(latents: Tensor, grad: Tensor) -> Tensor:
    """0.5·‖z − sg(z − grad)‖² / N: its gradient with respect to z is grad / N."""
    target = (latents - grad).detach()
    return 0.5 * torch.nn.functional.mse_loss(latents.float(), target.float(), reduction="sum") / latents.shape[0]
