"""Stage `init`: a starting head in the world frame.

Writes `init/init.json` (what the start is) and `init/mesh.ply` (its surface). Kinds:
`template` — the analytic head SDF of `fitter/template_head.py`, scaled to the subject's 3D
landmarks; `mesh` — a user OBJ/PLY/GLB turned into our axes (`init.up_axis`, `init.front_axis`),
centred and scaled to the template's size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from skimage.measure import marching_cubes

from fitter import atomic
from fitter.context import RunContext
from fitter.errors import UserError
from fitter.template_head import TemplateHead, fit_to_landmarks
from representations.mesh import Mesh, MeshFormatError, keep_largest_component, load_mesh, save_ply

log = logging.getLogger("headfit")

GRID_HALF_EXTENT = 1.3
"""Half side of the cube (world units) that holds the head; the geometry stage uses the same box."""

TARGET_HALF_HEIGHT = 0.9
"""A user mesh is scaled so its largest coordinate magnitude (after centring) is this."""


def run(ctx: RunContext) -> None:
    out = ctx.stage_dir("init")
    kind = ctx.cfg.init.kind
    if kind == "template":
        landmarks = np.asarray(ctx.read_json("subject/landmarks.json")["world"], dtype=np.float64)
        head = fit_to_landmarks(landmarks)
        mesh = sdf_to_mesh(head.sdf, resolution=128)
        info = {"kind": "template", "template": head.to_dict()}
    elif kind == "mesh":
        mesh = user_mesh(Path(ctx.cfg.init.mesh_path), ctx.cfg.init.up_axis, ctx.cfg.init.front_axis)
        info = {"kind": "mesh", "source": str(ctx.cfg.init.mesh_path)}
    else:  # validated by the config; a new kind must be added here
        raise UserError(f"init.kind={kind} is not available")
    info.update({"grid_half_extent": GRID_HALF_EXTENT, "num_verts": mesh.num_verts, "num_faces": mesh.num_faces})
    save_ply(mesh, out / "mesh.ply")
    atomic.write_json(out / "init.json", info)
    log.info("init: %s head with %d faces", kind, mesh.num_faces)


def sdf_to_mesh(sdf, resolution: int = 128, half_extent: float = GRID_HALF_EXTENT) -> Mesh:
    """Marching cubes of an SDF callable (points (N, 3) -> (N,)) on a cube grid; outward faces."""
    axis = torch.linspace(-half_extent, half_extent, resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    with torch.no_grad():
        values = torch.cat([sdf(chunk) for chunk in grid.reshape(-1, 3).split(1 << 18)]).reshape(resolution, resolution, resolution)
    values[[0, -1], :, :] = values[:, [0, -1], :] = values[:, :, [0, -1]] = 1.0  # close the surface at the box
    spacing = 2 * half_extent / (resolution - 1)
    verts, faces, _, _ = marching_cubes(values.numpy(), level=0.0, spacing=(spacing,) * 3)
    verts = verts - half_extent
    mesh = Mesh(torch.as_tensor(verts.copy(), dtype=torch.float32), torch.as_tensor(faces.copy(), dtype=torch.long))
    return keep_largest_component(mesh)


def user_mesh(path: Path, up_axis: str, front_axis: str) -> Mesh:
    if not path.is_file():
        raise UserError(f"init.mesh_path {path} does not exist")
    try:
        mesh = load_mesh(path, up_axis=up_axis, front_axis=front_axis)
    except (MeshFormatError, ValueError, OSError) as exc:
        raise UserError(f"cannot use init mesh {path}: {exc}") from None
    if mesh.num_faces == 0:
        raise UserError(f"init mesh {path} has no faces")
    verts = mesh.verts.double()
    centre = 0.5 * (verts.min(0).values + verts.max(0).values)
    scale = TARGET_HALF_HEIGHT / (verts - centre).abs().max().clamp_min(1e-9)
    return Mesh(((verts - centre) * scale).float(), mesh.faces)


def read_init(ctx: RunContext) -> tuple[dict, Mesh]:
    """What the init stage wrote: its info dict and its mesh."""
    from representations.mesh import read_mesh

    info = json.loads((ctx.out / "init" / "init.json").read_text())
    return info, read_mesh(ctx.out / "init" / "mesh.ply")


def template_of(info: dict) -> TemplateHead | None:
    return TemplateHead.from_dict(info["template"]) if info.get("kind") == "template" else None
