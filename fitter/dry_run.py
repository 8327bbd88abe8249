"""A dry run: the whole configured pipeline at a schedule a CPU finishes in minutes.

`models.preset=tiny-random` checks that every part of the hero fit runs (loading, ISD, reference
maps, inpainting, refinement, exports) before a GPU is rented; at the hero schedule (6000 geometry
steps at 512², 15 x 20 inpainting steps, 400 refinement steps with 20-step DDIM targets) that would
take hours on a CPU with any models. So the dry run keeps every stage and every switch, and shrinks
only step counts and sizes. It is on by default with the tiny preset (`run.dry_run`), logged, and recorded in
OUT/config.yaml. With `models.preset=random-full` (real-size random models: timings and memory of
the hero models) it is off unless `run.dry_run=true`, and then shrinks only the schedule; the
models keep their real sizes.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from fitter.config import Config

SCHEDULE = {
    "prior.steps": 8,
    "init.sdf_resolution": 64,
    "fit.geometry.steps": 24,
    "fit.geometry.init_fit_steps": 60,
    "fit.geometry.init_view_steps": 8,
    "fit.geometry.init_view_batch": 2,
    "fit.geometry.grid_resolution": 48,
    "fit.geometry.band_rebuild_every": 8,
    "fit.geometry.render_size": 96,
    "fit.geometry.guidance_size": 64,
    "fit.texture.resolution": 256,
    "fit.texture.unwrap.max_faces": 4000,
    "fit.texture.inpaint.gen_size": 64,
    "fit.texture.inpaint.ddim.steps": 4,
    "fit.texture.refine.steps": 8,
    "fit.texture.refine.ddim_steps": 2,
    "fit.texture.refine.render_size": 64,
    "rig.texture_size": 512,
    "rig.hair_texture_size": 256,
    "rig.hair_resolution": 64,
    "reference.size": 64,
    "reference.steps": 4,
    "export.view_size": 256,
    "export.turntable_frames": 12,
    "export.turntable_size": 128,
}


def wanted(cfg: Config) -> bool:
    return cfg.run.dry_run if cfg.run.dry_run is not None else cfg.models.preset == "tiny-random"


def scaled(cfg: Config) -> Config:
    """``cfg`` at the dry-run schedule (values already smaller are kept)."""
    values = {}
    for dotted, small in SCHEDULE.items():
        current = OmegaConf.select(OmegaConf.structured(cfg), dotted)
        values[dotted] = min(current, small)
    merged = OmegaConf.merge(OmegaConf.structured(cfg), OmegaConf.from_dotlist([f"{k}={v}" for k, v in values.items()]))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]
