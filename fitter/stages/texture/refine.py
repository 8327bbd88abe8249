"""Texture refinement: the step function of the `refine` training loop.

The texture is optimised as logits L (T, T, 3), texture = sigmoid(L). Even steps: render a random
view x (B, 3, S, S), noise it to t ~ U[t_min, t_max) and denoise it back in `ddim_steps` DDIM steps
with the prior (SDEdit, identity + normal ControlNet, guidance/sdedit.py) into a target y, then pull
the render towards it with

    λ_sdedit_sse · ½ Σ (x − y)² / B  +  λ_perceptual · perceptual(x, y)

Odd steps: λ_ref·masked L1 between the reference-view render and the photo, plus λ_tv·TV of that
render (Σ of squared neighbour differences, `refine_losses.total_variation`; as the authors).

The SDEdit term is the authors' (jinkun-hao/ID-Sculpt, `threestudio/models/guidance/ip_controlnet_inpaint.py`:
``loss_l2 = 0.5 * F.mse_loss(rgb, target, reduction="sum") / batch_size``, weighted by ``lambda_l2: 0.1`` in
`configs/liudehua_tex.yaml`): a sum over the S²·3 values, not a mean, so that at S = 512 it weighs as
much as the perceptual and reference terms (`tests/fitter/stages/texture/test_texture_refine_balance.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from fitter.config import RefineSettings
from fitter.stages.texture.refine_losses import total_variation
from guidance.control import normal_control
from representations.cameras import Camera, sample_orbits
from representations.mesh import Mesh
from representations.render import Rasterizer

Target = Callable[[Tensor, int, Camera, Tensor], Tensor]
"""(render (1, 3, S, S), timestep, camera, control (1, 3, S, S)) → denoised image (1, 3, S, S)."""


class TextureLogits(nn.Module):
    """A (T, T, 3) texture in logit space; ``forward()`` gives sigmoid(logits)."""

    def __init__(self, texture: Tensor, eps: float = 1e-3) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.logit(texture.detach().float().clamp(eps, 1.0 - eps)))

    def forward(self) -> Tensor:
        return torch.sigmoid(self.logits)


@dataclass
class Reference:
    """The photo at the reference camera: image (S, S, 3), mask (S, S, 1), both at ``camera``'s size."""

    image: Tensor
    mask: Tensor
    camera: Camera


@dataclass
class RefineStep:
    """`fitter.training.loop.StepFn` of texture refinement (see module docstring)."""

    settings: RefineSettings
    mesh: Mesh
    texture: TextureLogits
    target: Target
    reference: Reference
    perceptual: nn.Module
    rng: np.random.Generator
    rasterizer: Rasterizer

    def _render(self, camera: Camera) -> dict[str, Tensor]:
        m = self.mesh
        out = self.rasterizer.render(m.verts, m.faces, camera, ("rgb", "mask", "normal_cam"), uv=m.uv, uv_faces=m.uv_faces,
                                     texture=self.texture())
        out["rgb"] = out["rgb"] * out["mask"] + self.settings.background * (1.0 - out["mask"])
        return out

    def __call__(self, step: int) -> dict[str, Tensor]:
        return self.sdedit_step() if step % 2 == 0 else self.reference_step()

    def sdedit_step(self) -> dict[str, Tensor]:
        s = self.settings
        camera = sample_orbits(self.rng, 1, s.views)[0].camera(s.render_size)
        t = int(self.rng.integers(s.t_range[0], s.t_range[1]))
        out = self._render(camera)
        image = out["rgb"].permute(2, 0, 1)[None]
        control = normal_control(out["normal_cam"].detach(), out["mask"].detach())
        with torch.no_grad():
            target = self.target(image.detach(), t, camera, control).to(image)
        losses = {"loss_sdedit_sse": s.lambda_sdedit_sse * 0.5 * ((image - target) ** 2).sum() / image.shape[0]}
        if s.lambda_perceptual > 0:
            losses["loss_perceptual"] = s.lambda_perceptual * self.perceptual(image, target)
        return losses

    def reference_step(self) -> dict[str, Tensor]:
        s, ref = self.settings, self.reference
        out = self._render(ref.camera)
        mask = ref.mask * out["mask"].detach()
        l1 = ((out["rgb"] - ref.image).abs() * mask).sum() / (3.0 * mask.sum().clamp_min(1.0))
        return {"loss_ref_l1": s.lambda_ref_l1 * l1, "loss_tv": s.lambda_tv * total_variation(out["rgb"])}
