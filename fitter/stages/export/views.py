"""Renders of the textured head: the export views, the evaluation views and the reference view's image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common import atomic
from fitter.config import ExportConfig
from representations.cameras import EVAL_VIEWS, EXPORT_AZIMUTHS, Camera, view_name
from representations.mesh import Mesh
from representations.render import render

WHITE = (1.0, 1.0, 1.0)


def render_rgb(mesh: Mesh, camera: Camera, background=WHITE) -> np.ndarray:
    """(H, W, 3) float image of the textured mesh."""
    with torch.no_grad():
        out = render(mesh.verts.float(), mesh.faces, camera, ("rgb", "mask"), uv=mesh.uv.float(), uv_faces=mesh.uv_faces,
                     texture=mesh.texture.float(), background=background, backend="auto")
        rgb = out["rgb"] * out["mask"] + torch.as_tensor(background, dtype=out["rgb"].dtype) * (1 - out["mask"])
    return rgb.clamp(0, 1).cpu().numpy()


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_views(mesh: Mesh, cfg: ExportConfig, folder: Path) -> dict[str, np.ndarray]:
    views = {}
    for azimuth in EXPORT_AZIMUTHS:
        camera = Camera.orbit(azimuth, 0.0, cfg.view_radius, cfg.view_fov_deg, cfg.view_size)
        image = to_uint8(render_rgb(mesh, camera))
        name = view_name(azimuth, 0.0)
        atomic.write_png(folder / f"{name}.png", image)
        views[name] = image
    return views


def render_eval_views(mesh: Mesh, cfg: ExportConfig) -> dict[str, np.ndarray]:
    """{view name: (S, S, 3) uint8} at the export radius, field of view and size, elevation 0."""
    return {name: to_uint8(render_rgb(mesh, Camera.orbit(az, 0.0, cfg.view_radius, cfg.view_fov_deg, cfg.view_size)))
            for name, az in EVAL_VIEWS.items()}


def write_eval_views(views: dict[str, np.ndarray], folder: Path) -> dict[str, Path]:
    paths = {name: folder / f"eval_{name}.png" for name in views}
    for name, image in views.items():
        atomic.write_png(paths[name], image)
    return paths
