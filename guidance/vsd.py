"""Variational score distillation's ε_ref: a LoRA of the UNet that is really trained.

ProlificDreamer replaces SDS's ε with the noise predicted by a LoRA-adapted copy of the UNet that
is fitted, as it goes, to the current renders with the plain diffusion loss. Here the LoRA sits in
the same UNet (switched on only for its own calls), is conditioned on the view prompt (no identity
tokens, no ControlNet, no camera embedding), and one AdamW step is taken on every ISD call.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from guidance import sds
from guidance.lora import add_lora, lora_enabled, lora_parameters


class LoRAEstimator:
    def __init__(self, unet: Any, denoiser: Any, rank: int = 4, lr: float = 1e-3, seed: int = 0) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.layers = add_lora(unet, rank)
        self.denoiser = denoiser
        self.parameters = lora_parameters(self.layers)
        for p in self.parameters:
            p.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=lr)

    def predict(self, z_t: Tensor, t: Tensor, text: Tensor) -> Tensor:
        """ε_ref (n, C, h, w) of the LoRA-adapted UNet."""
        with lora_enabled(self.layers):
            return self.denoiser.predict(z_t, t, text, None, None)

    def train_step(self, latents: Tensor, text: Tensor, alphas_cumprod: Tensor, generator: torch.Generator) -> float:
        """One AdamW step of ‖ε̂_LoRA(z_t, t) − ε‖² on the (detached) rendered latents; t over the
        whole schedule. Returns the loss."""
        n, num_train = latents.shape[0], alphas_cumprod.shape[0]
        t = torch.randint(0, num_train, (n,), generator=generator).to(latents.device)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        z_t = sds.add_noise(latents, noise, alphas_cumprod.to(latents.device)[t])
        with torch.enable_grad(), lora_enabled(self.layers):
            loss = F.mse_loss(self.denoiser.predict(z_t, t, text, None, None), noise)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        return float(loss.detach())
