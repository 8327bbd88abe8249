"""Init kind `multiview`: a head fitted to a folder of views (issue 7).

The views (`init.views_dir`: images plus `cameras.json`, or images matched to `init.views_preset`)
are segmented (alpha, else MediaPipe selfie segmentation), the visual hull of their masks starts an
explicit-SDF DMTet that is fitted to the masks with photometric consistency (and normal maps when
given), and the views are back-projected into a UV texture of the result. Writes, besides what
every init writes (`init.json`, `sdf.npz`, `mesh.ply` — see fitter/stages/init/stage.py),
`init/textured.obj` (+ `.mtl`, `.png`): the texture stage takes colour from it where the reference
photo does not reach. The views must share the project's world frame (representations/cameras.py:
head near the origin, about ±0.9 units, facing +z); the reference photo stays the reference view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fitter.config import InitConfig
from fitter.context import RunContext
from fitter.stages.init.multiview.fit import FitSettings, fit_surface
from fitter.stages.init.multiview.loading import ViewSet, check_view_images, load_view_set, view_specs
from fitter.stages.init.multiview.texture import bake_texture
from fitter.stages.init.multiview.views import ViewSpec
from fitter.stages.init.sdf_grid import GridSDF
from fitter.stages.init.user_mesh import mesh_grid_sdf
from representations.mesh import Mesh, save_obj

log = logging.getLogger("headfit")

SDF_RESOLUTION = 64
"""Grid of `init/sdf.npz` (the fitted surface's exact signed distance; trilinear error ~h²/8R, < 0.003 units
for the nose's ~0.1 curvature radius at this spacing of 0.041)."""
TEXTURED_MESH = "textured.obj"


@dataclass
class MultiviewInit:
    mesh: Mesh
    """The fitted surface (outward faces, largest component)."""
    sdf: GridSDF
    """Its signed distance on a grid over the fitting box (negative inside)."""
    textured: Mesh
    """The surface (decimated for the atlas) with uv, uv_faces and the views' texture."""
    info: dict


def init_from_views(views: ViewSet, settings: FitSettings, texture_resolution: int, texture_max_faces: int,
                    sdf_resolution: int = SDF_RESOLUTION) -> MultiviewInit:
    """Fit, grid SDF and texture from loaded views (no run context needed)."""
    result = fit_surface(views, settings)
    baked = bake_texture(result.mesh, views, result.colour, texture_resolution, texture_max_faces)
    info = {"views": len(views), "fit_steps": settings.steps, "grid_resolution": settings.grid_resolution,
            "final_losses": result.losses, "texture_seen_fraction": baked.seen_fraction,
            "normal_maps": sum(n is not None for n in views.normals)}
    return MultiviewInit(result.mesh, mesh_grid_sdf(result.mesh, sdf_resolution, settings.bound), baked.mesh, info)


def multiview_init(ctx: RunContext, out: Path, bound: float) -> tuple[GridSDF, Mesh, dict]:
    """The `multiview` branch of the init stage: (grid SDF, surface, info); writes `out/textured.obj`."""
    c = ctx.cfg.init
    folder = Path(c.views_dir)
    specs = _specs(c)
    views = load_view_set(folder, specs, c.views_size, ctx.cfg.intake.max_pixels)
    settings = FitSettings(steps=c.views_fit_steps, grid_resolution=c.views_grid_resolution, bound=bound, seed=ctx.cfg.run.seed)
    made = init_from_views(views, settings, c.views_texture_resolution, c.views_texture_max_faces)
    save_obj(made.textured, out / TEXTURED_MESH)
    info = {"kind": "multiview", "views_dir": str(folder), "preset": c.views_preset, **made.info,
            "cameras": [vars(s) for s in specs], "textured_mesh": TEXTURED_MESH}
    log.info("init: multi-view fit to %d views, %.0f%% of the texture seen", len(views), 100 * made.info["texture_seen_fraction"])
    return made.sdf, made.mesh, info


def check_multiview_input(init_cfg: InitConfig, max_pixels: int) -> None:
    """Before the intake: the view folder, its cameras and its images' headers (no decoding)."""
    check_view_images(Path(init_cfg.views_dir), _specs(init_cfg), max_pixels)


def _specs(c: InitConfig) -> list[ViewSpec]:
    return view_specs(Path(c.views_dir), c.views_preset, c.preset_azimuth, c.preset_elevation, c.preset_radius, c.preset_fov_deg)
