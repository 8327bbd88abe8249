"""Smooth where the photo is silent (issue 19): the geometry stage's post-process of its final mesh.

The hash-grid SDF leaves fine lumps all over the surface and the mask loss grows ridges and fins at the silhouette.
Only where the reference photo sees the surface, and the head faces it, does the photo say anything about fine
detail; elsewhere the sculpt keeps its broad shape (hair volume, the symmetric side) but takes the fine shape of the
init surface (with init.kind=parametric the fitted parametric head with its hair layer: smooth skin, its ears).
`photo_support` weighs each vertex from 1 (seen, facing the camera: left exactly as sculpted) to 0, and
`representations.mesh.fair_to_reference` moves the others onto the init's shape at their smoothed offset from it;
near the outline of the photo's mask (which the mask loss fitted) they move only along their camera rays
(`keep_outline`), so the silhouette stays. geometry/geometry.json records the side/back roughness before and after (`representations.mesh.roughness_deg`, the
figure of bench/fidelity.py).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F

from fitter.config import GeometryConfig
from fitter.stages.intake.masking import convex_hull_mask
from representations.cameras import Camera
from representations.mesh import Mesh
from representations.mesh.smooth import (
    SDF,
    directed_edges,
    fair_to_reference,
    mean_edge_length,
    ring_average,
    ring_reduce,
    roughness_deg,
    rounds_for_sigma,
)
from representations.render import Rasterizer

log = logging.getLogger("headfit")

ERODE_ROUNDS = 3
"""1-ring erosions of the facing weight: its edge moves 3 rings towards the face, so a ridge or fin standing on the
silhouette falls on the smoothed side."""
CLOSE_ROUNDS = 3
"""1-ring dilations then erosions of the visibility: pits and dimples (hidden behind their own rim) count as seen."""
FEATHER_ROUNDS = 4
"""1-ring averaging rounds after that: no seam where the smoothing starts."""
FACING_SCALE = 0.1
"""Step (world units, ~1.3 cm) of the central differences that give the init's normals for the facing test: the
head's broad orientation, not the nose's or the nostrils' (the sides of the nose are seen as well as the face).
"""
FULL_SUPPORT_SLACK = 1e-3
"""Support within this of 1 counts as 1 (float rounding and the ramp's last thousandth move nothing)."""
OUTLINE_BAND = 3.0 / 256.0
"""`keep_outline`: vertices projecting within half of this distance from the photo mask's outline (a fraction of the
image side: 3 pixels at 256) move only along their camera rays; the lock fades out at this distance."""
DEPTH_TOLERANCE = 0.01
"""Relative depth difference within which a vertex counts as seen (not occluded), as `texel_visibility`'s."""


def photo_support(verts: torch.Tensor, faces: torch.Tensor, camera: Camera, normals: torch.Tensor, *, min_cosine: float,
                  full_cosine: float, rasterizer: Rasterizer, face_pixels: np.ndarray | None = None,
                  erode_rounds: int = ERODE_ROUNDS, feather_rounds: int = FEATHER_ROUNDS, edges: torch.Tensor | None = None) -> torch.Tensor:
    """(V,) in [0, 1]: how much the photo taken by `camera` supports fine detail at each vertex.

    1 where the vertex is visible (its depth matches the mesh's z-buffer at its pixel) and `normals` face the camera
    by a cosine of at least `full_cosine`, 0 below `min_cosine` or where hidden, a smoothstep between. The facing
    weight is eroded `erode_rounds` times over the 1-ring, the visibility closed (`CLOSE_ROUNDS`), their product
    feathered by `feather_rounds` of 1-ring averaging. Pass the normals of a smooth surface (the init's): a lump's or
    fin's own normal may face the camera where the head does not. face_pixels: (N, 2) landmark pixels of `camera`;
    a seen vertex inside their convex hull (the face the photo shows, whatever the init's normals there) counts 1."""
    edges = directed_edges(faces) if edges is None else edges.to(faces.device)
    with torch.no_grad():
        zbuffer = rasterizer.rasterize(verts, faces, camera).depth.to(verts.device)
        pixel, depth = camera.project(verts)
        col, row = pixel[:, 0].floor().long(), pixel[:, 1].floor().long()
        inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height) & (depth > 0)
        seen = zbuffer[row.clamp(0, camera.height - 1), col.clamp(0, camera.width - 1)]
        visible = inside & (seen > 0) & ((seen - depth).abs() <= DEPTH_TOLERANCE * depth)
        to_camera = F.normalize(torch.as_tensor(camera.position, dtype=verts.dtype, device=verts.device) - verts, dim=1)
        cosine = (to_camera * normals.to(verts)).sum(dim=1)
        t = ((cosine - min_cosine) / (full_cosine - min_cosine)).clamp(0.0, 1.0)
        facing = ring_reduce(t * t * (3.0 - 2.0 * t), edges, erode_rounds, "amin")
        if face_pixels is not None and len(face_pixels) >= 3:
            in_face = inside & torch.from_numpy(convex_hull_mask(face_pixels, (camera.height, camera.width)) > 0).to(verts.device)[row.clamp(0, camera.height - 1), col.clamp(0, camera.width - 1)]
            facing = torch.maximum(facing, in_face.to(facing.dtype))
        # Close the pits of the visibility (a vertex at the bottom of a dimple hides behind its rim) before it counts.
        seen_closed = ring_reduce(ring_reduce(visible.to(verts.dtype), edges, CLOSE_ROUNDS, "amax"), edges, CLOSE_ROUNDS, "amin")
    weight = ring_average(facing * seen_closed, faces, feather_rounds, edges).clamp(0.0, 1.0)
    return torch.where(weight > 1.0 - FULL_SUPPORT_SLACK, torch.ones_like(weight), weight)  # the seen face: exactly as sculpted


def keep_outline(verts: torch.Tensor, moved: torch.Tensor, camera: Camera, mask: np.ndarray,
                 band: float = OUTLINE_BAND) -> torch.Tensor:
    """`moved` (V, 3) with the moves of the vertices that project near the outline of the photo's `mask` (H, W) kept
    to their camera rays (fully within `band / 2` image sides of the outline, fading out at `band`): the sculpt's
    silhouette, which the mask loss fitted, stays where the photo puts it; lumps and fins there may still sink in depth."""
    from scipy import ndimage

    inside = np.asarray(mask) > 0.5
    to_outline = np.where(inside, ndimage.distance_transform_edt(inside), ndimage.distance_transform_edt(~inside))
    pixel, _ = camera.project(verts.double())
    col = pixel[:, 0].floor().long().clamp(0, camera.width - 1).numpy()
    row = pixel[:, 1].floor().long().clamp(0, camera.height - 1).numpy()
    band_px = band * max(camera.width, camera.height)
    lock = torch.from_numpy(np.clip(2.0 - 2.0 * to_outline[row, col] / band_px, 0.0, 1.0)).to(verts)[:, None]
    ray = torch.nn.functional.normalize(verts - torch.as_tensor(camera.position, dtype=verts.dtype), dim=1)
    step = moved - verts
    across = step - (step * ray).sum(dim=1, keepdim=True) * ray
    return moved - lock * across


def reference_normals(reference: SDF, verts: torch.Tensor, step: float) -> torch.Tensor:
    """(V, 3) unit gradient of the field at the vertices (central differences of `step`, on the CPU)."""
    with torch.no_grad():
        points = verts.detach().float().cpu()
        gradient = torch.stack([reference(points + step * axis) - reference(points - step * axis) for axis in torch.eye(3)], dim=1)
    return F.normalize(gradient, dim=1, eps=1e-9).to(verts.device)


def smooth_unseen(mesh: Mesh, camera: Camera, reference: SDF, grid_step: float, cfg: GeometryConfig, rasterizer: Rasterizer,
                  device: torch.device | str = "cpu", face_pixels: np.ndarray | None = None,
                  mask: np.ndarray | None = None) -> tuple[Mesh, dict]:
    """The mesh with fine detail kept only where the photo supports it, and the record for geometry.json.

    reference: the init's SDF (world points to distances); grid_step: its grid spacing (the gradient's step);
    device: where the visibility is rasterised (the rest runs on the CPU); face_pixels: the photo's landmarks in
    `camera`'s pixels (see `photo_support`); mask: the photo's (H, W) foreground in `camera`'s pixels, whose outline
    the sculpt keeps (`keep_outline`). `cfg.smooth_unseen_scale` = 0 leaves the mesh as it is (the roughness is
    recorded all the same)."""
    start = time.perf_counter()
    verts, faces = mesh.verts.detach().float().cpu(), mesh.faces.cpu()
    edges = directed_edges(faces)
    before = roughness_deg(verts, faces, edges=edges)
    record: dict = {"enabled": cfg.smooth_unseen_scale > 0, "roughness_sides_back_deg": {"before": round(before, 3)}}
    if cfg.smooth_unseen_scale <= 0 or mesh.num_faces == 0:
        record["roughness_sides_back_deg"]["after"] = round(before, 3)
        return mesh, record
    normals = reference_normals(reference, verts, max(grid_step, FACING_SCALE))
    support = photo_support(verts.to(device), faces.to(device), camera, normals.to(device), min_cosine=cfg.smooth_seen_min_cosine,
                            full_cosine=cfg.smooth_seen_full_cosine, rasterizer=rasterizer, face_pixels=face_pixels,
                            edges=edges.to(device)).cpu()
    edge = mean_edge_length(verts, faces, edges)
    rounds = rounds_for_sigma(cfg.smooth_unseen_scale, edge)
    smoothed = fair_to_reference(verts, faces, reference, 1.0 - support, offset_rounds=rounds,
                                 max_correction=cfg.smooth_unseen_max_correction, cliff_slope=cfg.smooth_unseen_cliff_slope,
                                 relax_iterations=cfg.smooth_unseen_relax_iterations, gradient_step=grid_step,
                                 keep_offset=cfg.smooth_unseen_keep_offset, edges=edges)
    if cfg.smooth_seen_scale > 0:  # the hash grid's lumps on the face: its offset from the init smoothed at a finer scale
        smoothed = fair_to_reference(smoothed, faces, reference, support, offset_rounds=rounds_for_sigma(cfg.smooth_seen_scale, edge),
                                     max_correction=cfg.smooth_unseen_max_correction, cliff_slope=cfg.smooth_unseen_cliff_slope,
                                     relax_iterations=cfg.smooth_seen_relax_iterations, gradient_step=grid_step, edges=edges)
    if mask is not None:
        smoothed = keep_outline(verts, smoothed, camera, mask)
    moved = (smoothed - verts).norm(dim=1)
    after = roughness_deg(smoothed, faces, edges=edges)
    record["roughness_sides_back_deg"]["after"] = round(after, 3)
    record |= {
        "supported_vertices_pct": round(100.0 * float((support > 0.5).float().mean()), 2),
        "untouched_vertices_pct": round(100.0 * float((support >= 1.0).float().mean()), 2),
        "offset_rounds": rounds,
        "mean_edge_length": round(edge, 5),
        "moved_mean": round(float(moved.mean()), 5),
        "moved_max": round(float(moved.max()), 5),
        "seconds": round(time.perf_counter() - start, 3),
    }
    log.info("geometry: smoothed where the photo is silent: side/back roughness %.2f -> %.2f deg (%.1f%% of the vertices "
             "supported by the photo, %.2f s)", before, after, record["supported_vertices_pct"], record["seconds"])
    return mesh.replace(verts=smoothed.to(mesh.verts.device, mesh.verts.dtype)), record
