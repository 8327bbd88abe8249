"""Stage `init`: a starting head in the world frame.

Writes `init/init.json` (what the start is), `init/sdf.npz` (its signed distance field on a grid,
closed at the box; the geometry stage fits to it and keeps it as a prior) and `init/mesh.ply` (its
surface). Kinds: `parametric` (default) — the prior stage's fitted anny head (`prior/neutral.ply`, or
`posed.ply` when the prior kept the photo's expression), closed, with a hair layer over its scalp read off the
reference silhouette (`fitter/stages/init/parametric.py`, `hair.py`), plus `init/prior_surface.npz` (skin
points the geometry stage's `lambda_prior_surface` holds the surface to); `template` — the analytic head of
`fitter/stages/init/template_head.py` scaled to the subject's 3D landmarks, united with the inflated reference silhouette above the chin (hair volume);
`mesh` — a user OBJ/PLY/GLB turned into our axes (`init.up_axis`, `init.front_axis`), centred and
scaled to the template's size; `gan_inversion` — PanoHead inverted on the photo (`fitter/stages/init/gan.py`:
its density's surface and SDF, plus `init/normals/`); `multiview` — a surface fitted to a folder of
views (`fitter/stages/init/from_views.py`), plus its texture from the views in `init/textured.obj`.
"""

from __future__ import annotations

import json
import logging

import torch
from skimage.measure import marching_cubes

from common import atomic
from common.errors import UserError
from fitter.config import Config
from fitter.context import RunContext
from fitter.stages.init.from_views import check_multiview_input, multiview_init
from fitter.stages.init.gan import gan_inversion_init
from fitter.stages.init.parametric import parametric_init
from fitter.stages.init.sdf_grid import GridSDF
from fitter.stages.init.silhouette import SilhouetteVolume
from fitter.stages.init.template_head import CHIN, TemplateHead, fit_to_landmarks, smooth_min
from fitter.stages.init.user_mesh import check_encloses_volume, check_mesh_input, mesh_grid_sdf, user_mesh
from representations.mesh import Mesh, keep_largest_component, read_mesh, save_ply

log = logging.getLogger("headfit")

GRID_HALF_EXTENT = 1.3
"""Half side of the cube (world units) that holds the head; the same as fit.geometry.bound's default."""
MESH_SDF_RESOLUTION = 80
SILHOUETTE_SIZE = 256


def run(ctx: RunContext) -> None:
    out = ctx.stage_dir("init")
    kind = ctx.cfg.init.kind
    bound = ctx.cfg.fit.geometry.bound
    surface = None
    if kind == "parametric":
        sdf, info = parametric_init(ctx, out, bound, ctx.cfg.init.sdf_resolution)
    elif kind == "template":
        head = fit_to_landmarks(ctx.subject.landmarks_world)
        hair = silhouette_volume(ctx)
        sdf = GridSDF.from_function(lambda p: smooth_min(head.sdf(p), hair(p), 0.05), ctx.cfg.init.sdf_resolution, bound)
        info = {"kind": "template", "template": head.to_dict(), "silhouette": True}
    elif kind == "mesh":
        sdf, info = _mesh_init(ctx, bound)
    elif kind == "gan_inversion":
        sdf, surface, info = gan_inversion_init(ctx, out, bound)
    elif kind == "multiview":
        sdf, surface, info = multiview_init(ctx, out, bound)
    else:  # validated by the config; a new kind must be added here
        raise UserError(f"init.kind={kind} is not available")
    sdf = sdf.closed()
    surface = grid_to_mesh(sdf) if surface is None else surface
    info.update({"bound": bound, "sdf_resolution": sdf.resolution, "num_verts": surface.num_verts, "num_faces": surface.num_faces})
    sdf.save(out / "sdf.npz")
    save_ply(surface, out / "mesh.ply")
    atomic.write_json(out / "init.json", info)
    log.info("init: %s head with %d faces", kind, surface.num_faces)


def check_init_inputs(cfg: Config) -> None:
    """Before the intake: the init's own inputs (the mesh file, the view folder) are usable, so a bad
    one is refused with one line before anything is written. Reads headers and small files only."""
    if cfg.init.kind == "mesh":
        check_mesh_input(cfg.init)
    elif cfg.init.kind == "multiview":
        check_multiview_input(cfg.init, cfg.intake.max_pixels)


def silhouette_volume(ctx: RunContext) -> SilhouetteVolume:
    subject = ctx.subject
    chin_row = float(subject.landmarks_px(SILHOUETTE_SIZE)[CHIN, 1])
    return SilhouetteVolume(subject.mask(SILHOUETTE_SIZE).numpy(), subject.camera(SILHOUETTE_SIZE), chin_row)


def grid_to_mesh(sdf: GridSDF) -> Mesh:
    """Marching cubes of a grid SDF (negative inside); outward faces, largest component."""
    n = sdf.resolution
    spacing = 2 * sdf.bound / (n - 1)
    verts, faces, _, _ = marching_cubes(sdf.values.numpy(), level=0.0, spacing=(spacing,) * 3)
    mesh = Mesh(torch.as_tensor(verts.copy() - sdf.bound, dtype=torch.float32), torch.as_tensor(faces.copy(), dtype=torch.long))
    return keep_largest_component(mesh)


def _mesh_init(ctx: RunContext, bound: float) -> tuple[GridSDF, dict]:
    mesh = user_mesh(ctx.cfg.init)
    sdf = mesh_grid_sdf(mesh, MESH_SDF_RESOLUTION, bound)
    check_encloses_volume(sdf, ctx.cfg.init.mesh_path)
    return sdf, {"kind": "mesh", "source": str(ctx.cfg.init.mesh_path), "mesh_faces_used": mesh.num_faces}


def read_init(ctx: RunContext) -> tuple[dict, GridSDF, Mesh]:
    """What the init stage wrote: its info, its SDF and its surface."""
    folder = ctx.out / "init"
    info = json.loads((folder / "init.json").read_text())
    return info, GridSDF.load(folder / "sdf.npz"), read_mesh(folder / "mesh.ply")


def template_of(info: dict) -> TemplateHead | None:
    return TemplateHead.from_dict(info["template"]) if info.get("kind") == "template" else None
