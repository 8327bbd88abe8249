"""Geometry phase 1b: fit the DMTet to the init's normal views (the seed paper's first phase).

The paper starts its geometry from the init by 1000 steps of a normal loss (1 − cos) to normal
maps rendered from the init. We keep the SDF regression (`init_fit_steps`, phase 1a) as a warm
start — a freshly initialised hash-grid SDF has no surface for a render loss to move — and then
run this phase for `init_view_steps` steps: each step renders `init_view_batch` views picked at
random and pulls their camera-space normals (`loss_init_normal`) and silhouettes
(`loss_init_mask`) to the init's.

The views are `init/normals/` when the init wrote them (GAN inversion: normal maps of its density
surface on PanoHead's orbit), else they are rendered here from `init/mesh.ply` on a ring of
`init_view_count` cameras (`init_view_elevations` alternate, `init_view_radius`, `init_view_fov`).
Either way they are used at `render_size`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fitter.config import GeometryConfig
from fitter.stages.geometry.losses import loss_mask, loss_normal_cosine
from representations.cameras import Camera
from representations.dmtet import DMTet
from representations.mesh import Mesh
from representations.render import Rasterizer

log = logging.getLogger("headfit")
VIEWS_FOLDER = "normals"


@dataclass
class InitViews:
    """Normal views of the init: cameras at one size S, and per view its normals and coverage."""

    cameras: list[Camera]
    normals: Tensor  # (V, S, S, 3) camera-space (OpenGL) unit normals, 0 outside
    masks: Tensor  # (V, S, S, 1) in {0, 1}

    def __len__(self) -> int:
        return len(self.cameras)


def read_init_views(folder: Path, size: int, device: torch.device) -> Optional[InitViews]:
    """The views in ``folder`` (`cameras.json` + NNN.png, RGB = (n + 1)/2, black outside) at ``size``;
    None when the init wrote none."""
    index = folder / "cameras.json"
    if not index.is_file():
        return None
    cameras, normals, masks = [], [], []
    for entry in json.loads(index.read_text())["views"]:
        camera = Camera.from_dict(entry["camera"])
        image = Image.open(folder / entry["file"]).convert("RGB").resize((size, size), Image.NEAREST)
        rgb = np.asarray(image, dtype=np.float32) / 255.0
        covered = rgb.max(axis=-1, keepdims=True) > 0.0
        normal = torch.nn.functional.normalize(torch.from_numpy(rgb * 2.0 - 1.0), dim=-1) * torch.from_numpy(covered)
        cameras.append(camera.resized(size))
        normals.append(normal)
        masks.append(torch.from_numpy(covered.astype(np.float32)))
    return InitViews(cameras, torch.stack(normals).to(device), torch.stack(masks).to(device))


def ring_cameras(cfg: GeometryConfig) -> list[Camera]:
    """`init_view_count` cameras at azimuth i·360/n, elevations cycling through `init_view_elevations`."""
    n, elevations = cfg.init_view_count, cfg.init_view_elevations
    return [Camera.orbit(360.0 * i / n, elevations[i % len(elevations)], cfg.init_view_radius, cfg.init_view_fov, cfg.render_size)
            for i in range(n)]


@torch.no_grad()
def render_init_views(mesh: Mesh, cameras: list[Camera], rasterizer: Rasterizer, device: torch.device) -> InitViews:
    """Normal views of ``mesh`` (binary coverage, as the files written by the init are)."""
    verts, faces = mesh.verts.to(device), mesh.faces.to(device)
    normals, masks = [], []
    for camera in cameras:
        out = rasterizer.render(verts, faces, camera, ("mask", "normal_cam"))
        covered = (out["mask"] > 0.5).float()
        normals.append(out["normal_cam"] * covered)
        masks.append(covered)
    return InitViews(list(cameras), torch.stack(normals), torch.stack(masks))


def load_init_views(init_dir: Path, mesh: Mesh, cfg: GeometryConfig, rasterizer: Rasterizer, device: torch.device) -> InitViews:
    views = read_init_views(init_dir / VIEWS_FOLDER, cfg.render_size, device)
    if views is not None:
        log.info("geometry: fitting to the init's %d normal views in %s", len(views), init_dir / VIEWS_FOLDER)
        return views
    views = render_init_views(mesh, ring_cameras(cfg), rasterizer, device)
    log.info("geometry: fitting to %d normal views rendered from the init mesh", len(views))
    return views


@dataclass
class InitViewFit:
    """One step of phase 1b (the `StepFn` of the training loop)."""

    cfg: GeometryConfig
    dmtet: DMTet
    views: InitViews
    rng: np.random.Generator
    rasterizer: Rasterizer

    def __call__(self, step: int) -> dict[str, Tensor]:
        verts, faces = self.dmtet.get_mesh()
        picks = self.rng.choice(len(self.views), size=min(self.cfg.init_view_batch, len(self.views)), replace=False)
        totals: dict[str, Tensor] = {}
        for i in picks.tolist():
            for name, value in self._view_losses(verts, faces, i).items():
                totals[name] = totals.get(name, 0.0) + value / len(picks)
        return totals

    def _view_losses(self, verts: Tensor, faces: Tensor, i: int) -> dict[str, Tensor]:
        cfg, target_mask = self.cfg, self.views.masks[i]
        out = self.rasterizer.render(verts, faces, self.views.cameras[i], ("mask", "normal_cam"))
        both = target_mask * (out["mask"].detach() > 0.5)
        losses = {}
        if cfg.lambda_init_normal > 0:
            losses["loss_init_normal"] = cfg.lambda_init_normal * loss_normal_cosine(out["normal_cam"], self.views.normals[i], both)
        if cfg.lambda_init_mask > 0:
            losses["loss_init_mask"] = cfg.lambda_init_mask * loss_mask(out["mask"], target_mask)
        return losses


@torch.no_grad()
def agreement(dmtet: DMTet, views: InitViews, rasterizer: Rasterizer) -> dict[str, float]:
    """Mean normal cosine (where both cover) and silhouette IoU of the DMTet surface over all views."""
    verts, faces = dmtet.get_mesh()
    cosines, ious = [], []
    for i, camera in enumerate(views.cameras):
        out = rasterizer.render(verts, faces, camera, ("mask", "normal_cam"))
        mine, theirs = out["mask"] > 0.5, views.masks[i] > 0.5
        both = (mine & theirs)[..., 0]
        cos = torch.nn.functional.cosine_similarity(out["normal_cam"], views.normals[i], dim=-1)
        cosines.append(float(cos[both].mean()) if bool(both.any()) else 0.0)
        ious.append(float((mine & theirs).sum() / (mine | theirs).sum().clamp_min(1)))
    return {"normal_cosine": float(np.mean(cosines)), "silhouette_iou": float(np.mean(ious))}
