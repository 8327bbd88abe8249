"""Renders of a mesh with per-vertex colours (the fit's colour field evaluated at its vertices)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from representations.cameras import Camera
from representations.render import Rasterizer, interpolate_packed, vertex_normals
from representations.render.fragments import scatter_image


def render_coloured(rasterizer: Rasterizer, verts: Tensor, faces: Tensor, camera: Camera,
                    colours: Optional[Tensor] = None, with_normals: bool = False) -> dict[str, Tensor]:
    """Differentiable passes at one camera.

    verts (V, 3), faces (F, 3), colours (V, 3). Returns mask (H, W, 1) antialiased coverage,
    covered (H, W) bool, and when asked rgb (H, W, 3) (0 on the background) and normal_cam (H, W, 3)
    (OpenGL camera frame).
    """
    frags = rasterizer.rasterize(verts, faces.long(), camera)
    out = {"mask": rasterizer.antialias_mask(frags), "covered": frags.covered}
    if colours is not None:
        out["rgb"] = scatter_image(interpolate_packed(colours, frags), frags)
    if with_normals:
        world = torch.nn.functional.normalize(interpolate_packed(vertex_normals(verts, faces.long()), frags), dim=1, eps=1e-12)
        rotation = torch.as_tensor(np.asarray(camera.w2c)[:3, :3], dtype=world.dtype, device=world.device)
        out["normal_cam"] = scatter_image(world @ rotation.T, frags)
    return out
