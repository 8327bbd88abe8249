"""The geometry stage's diffusion prior: identity-aware score distillation on random views.

Each guidance step renders the current mesh from a random orbit view, turns it into the image the
prior judges (the normal map in `fit.geometry.isd.normal_encoding`, as in the seed paper: see the table
in guidance/normal_encoding.py; or a Lambert-shaded grey render), draws the
subject's 3D landmarks from that view for the landmark ControlNet, and returns the ISD loss with
the subject's identity embedding (identity tokens only near the front; guidance/isd.py decides).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from fitter.context import RunContext
from guidance.control import draw_face_landmarks, to_control_tensor
from guidance.isd import ISDGuidance
from guidance.models import effective_models_config, load_isd_models
from guidance.normal_encoding import ENCODINGS, NormalEncoding, encode
from representations.cameras import OrbitRange, sample_orbits
from representations.render import Rasterizer

log = logging.getLogger("headfit")
LIGHT = (0.3, 0.5, 1.0)
"""Light direction for `shaded` renders, in the camera frame (from the upper right, behind the camera)."""


def load_identity(ctx: RunContext) -> Optional[Tensor]:
    """(512,) ArcFace embedding on the run's device (`Subject.arcface_embedding`; None when there is none)."""
    embedding = ctx.subject.arcface_embedding(ctx.cfg.models)
    return None if embedding is None else torch.from_numpy(embedding).to(ctx.device)


def shaded(normal_cam: Tensor, mask: Tensor) -> Tensor:
    """(1, 3, H, W) grey Lambert shading of camera-frame normals (H, W, 3) on black."""
    light = torch.nn.functional.normalize(normal_cam.new_tensor(LIGHT), dim=0)
    grey = 0.15 + 0.85 * (normal_cam @ light).clamp_min(0.0)
    return (grey[..., None] * mask).expand(*mask.shape[:2], 3).permute(2, 0, 1)[None]


@dataclass
class GuidanceStep:
    isd: ISDGuidance
    landmarks: np.ndarray  # (478, 3) world
    identity: Optional[Tensor]  # (512,) ArcFace, or None
    ranges: OrbitRange
    size: int
    image_kind: str
    encoding: NormalEncoding  # how a normal-map image is written for the prior
    landmark_control: bool
    rng: np.random.Generator
    rasterizer: Rasterizer

    def loss(self, verts: Tensor, faces: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        view = sample_orbits(self.rng, 1, self.ranges)[0]
        camera = view.camera(self.size)
        out = self.rasterizer.render(verts, faces, camera, ("mask", "normal_cam", "depth"))
        image = self.image(out["normal_cam"], out["mask"])
        control = None
        if self.landmark_control:
            depth = out["depth"][..., 0].detach().cpu().numpy()
            drawing = draw_face_landmarks(self.landmarks, camera, depth=np.where(depth > 0, depth, np.inf), azimuth_deg=view.azimuth)
            control = to_control_tensor(drawing, verts.device)
        loss, info = self.isd.loss(image, [view.azimuth], control=control, step=step, identity=self.identity)
        return loss, info

    def image(self, normal_cam: Tensor, mask: Tensor) -> Tensor:
        """(1, 3, H, W) image the prior judges of a render's camera-frame normals (H, W, 3) and mask (H, W, 1)."""
        return encode(normal_cam, mask, self.encoding) if self.image_kind == "normal" else shaded(normal_cam, mask)


def build_guidance(ctx: RunContext, rng: np.random.Generator, rasterizer: Rasterizer) -> GuidanceStep:
    """Load the ISD models the config asks for and set up the guidance step."""
    g = ctx.cfg.fit.geometry
    models = load_isd_models(effective_models_config(ctx.cfg.models), ctx.device, g.isd.precision,
                             identity=g.isd.identity_tokens, controlnets=("landmarks",) if g.isd.landmark_control else (),
                             name=g.isd.model)
    isd = ISDGuidance.from_models(models, g.isd, prompt=ctx.cfg.prompt, seed=ctx.cfg.run.seed)
    identity = load_identity(ctx) if g.isd.identity_tokens else None
    landmarks = ctx.subject.landmarks_world
    return GuidanceStep(isd, landmarks, identity, g.views, g.guidance_size, g.isd.image, ENCODINGS[g.isd.normal_encoding],
                        g.isd.landmark_control, rng, rasterizer)


def guidance_state(step: GuidanceStep) -> tuple[callable, callable]:
    """Checkpoint hooks for what the prior keeps outside the field: its noise generator and, with
    VSD, the LoRA weights and their optimiser (so a resumed fit draws the same noise)."""
    isd = step.isd

    def get() -> dict:
        state = {"isd_generator": isd.generator.get_state()}
        if isd.lora is not None:
            state["lora_params"] = [p.detach().cpu().clone() for p in isd.lora.parameters]
            state["lora_optimizer"] = isd.lora.optimizer.state_dict()
        return state

    def put(state: dict) -> None:
        isd.generator.set_state(state["isd_generator"])
        if isd.lora is not None:
            with torch.no_grad():
                for p, saved in zip(isd.lora.parameters, state["lora_params"]):
                    p.copy_(saved.to(p.device))
            isd.lora.optimizer.load_state_dict(state["lora_optimizer"])

    return get, put
