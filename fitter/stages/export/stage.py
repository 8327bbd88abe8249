"""Stage `export`: the deliverables in OUT.

Reads `texture/head.obj`, `rig/` and `subject/`; writes `head.glb`, `head.obj` + `head.mtl` + `head.png`,
`head_albedo.png` (a copy of `texture/albedo.png`, the texture with the photo's lighting divided out, when there is one),
`head_rigged.glb` (a copy of the rig stage's, when rig.enabled; `head_rigged.fbx` too with rig.fbx=true),
`views/az{+000}_el{+00}.png`, `turntable.mp4` and `metrics.json` (per-stage wall time,
reference-view PSNR/SSIM inside the mask, dlib identity distance of every view to the input, the texture
stage's estimated lighting), and
last `report.html` (`fitter/stages/export/report`) unless export.report=false.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from common import atomic
from fitter.config import STAGES, ExportConfig
from fitter.context import RunContext
from fitter.evaluate.metrics import identity_distance, psnr_masked, ssim_masked
from fitter.stages.export.report import write_report
from fitter.stages.export.video import write_mp4
from fitter.stages.export.views import render_rgb, to_uint8, write_views
from fitter.stages.intake.identity import dlib_embedding
from fitter.subject import Subject
from representations.cameras import turntable
from representations.mesh import Mesh, read_mesh, save_glb, save_obj

log = logging.getLogger("headfit")
RIGGED_GLB, RIGGED_FBX = "head_rigged.glb", "head_rigged.fbx"
ALBEDO = "head_albedo.png"


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.export
    mesh = read_mesh(ctx.out / "texture" / "head.obj")
    save_glb(mesh, ctx.out / "head.glb")
    save_obj(mesh, ctx.out / "head.obj")
    rig = rig_summary(ctx.out)
    if rig is not None:
        for name in (RIGGED_GLB, RIGGED_FBX):  # the FBX only with rig.fbx=true
            if (ctx.out / "rig" / name).is_file():
                atomic.write_bytes(ctx.out / name, (ctx.out / "rig" / name).read_bytes())
    if (ctx.out / "texture" / "albedo.png").is_file():
        atomic.write_bytes(ctx.out / ALBEDO, (ctx.out / "texture" / "albedo.png").read_bytes())
    views = write_views(mesh, cfg, ctx.out / "views")
    write_mp4(ctx.out / "turntable.mp4", turntable_frames(mesh, cfg), fps=cfg.turntable_fps)
    metrics = {
        "stage_wall_s": stage_times(ctx.out, ctx.subject),
        "reference": reference_metrics(mesh, ctx),
        "identity": identity_metrics(views, ctx),
        "mesh": {"vertices": mesh.num_verts, "faces": mesh.num_faces, "texture": list(mesh.texture.shape[:2])},
    }
    if rig is not None:
        metrics["rig"] = rig
    lighting = lighting_summary(ctx.out)
    if lighting is not None:
        metrics["lighting"] = lighting
    atomic.write_json(ctx.out / "metrics.json", metrics)
    ref = metrics["reference"]
    log.info("export: reference PSNR %.2f dB, SSIM %.3f (in mask)", ref["psnr_db"], ref["ssim"])
    if cfg.report:
        write_report(ctx.out, ctx.cfg, mesh)


def rig_summary(out: Path) -> dict | None:
    """metrics.json's `rig` entry from `rig/rig.json` (None when the rig stage was off)."""
    path = out / "rig" / "rig.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if not record.get("enabled"):
        return None
    keys = ("wrap_error", "wrapped_fraction", "vertices", "faces", "bones", "morph_targets", "texture_size", "hair")
    return {key: record[key] for key in keys} | {"wall_s": round(sum(record["seconds"].values()), 3)}


def lighting_summary(out: Path) -> dict | None:
    """metrics.json's `lighting` entry from `texture/texture.json`: the face's SH lighting (3 × 9, RGB rows, albedo
    included; `fitter/stages/texture/lighting.py`), the fit's RMS residual, its face samples (None: not estimated)."""
    path = out / "texture" / "texture.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if record.get("lighting_sh") is None:
        return None
    return {"sh": record["lighting_sh"], "fit_rmse": record["lighting_fit_rmse"], "face_samples": record["lighting_face_samples"]}


def turntable_frames(mesh: Mesh, cfg: ExportConfig):
    for view in turntable(cfg.turntable_frames, cfg.turntable_elevation_deg, cfg.view_radius, cfg.view_fov_deg):
        yield to_uint8(render_rgb(mesh, view.camera(cfg.turntable_size)))


def stage_times(out: Path, subject: Subject) -> dict[str, float]:
    times = {}
    timings = subject.timings_s
    if timings:
        times["intake"] = float(timings.get("total", sum(timings.values())))
    for stage in STAGES[1:-1]:
        marker = out / stage / "done.json"
        if marker.is_file():
            times[stage] = json.loads(marker.read_text())["wall_s"]
    return times


def reference_metrics(mesh: Mesh, ctx: RunContext) -> dict[str, float]:
    """PSNR/SSIM between the photo and the head rendered at the reference camera, inside the mask."""
    subject = ctx.subject
    size = subject.small_size
    photo, mask, camera = subject.image(size).numpy(), subject.mask(size).numpy(), subject.camera(size)
    rendered = render_rgb(mesh, camera, background=(0.0, 0.0, 0.0)).astype(np.float32)
    atomic.write_png(ctx.out / "views" / "reference.png", to_uint8(rendered))
    return {"psnr_db": psnr_masked(rendered, photo, mask), "ssim": ssim_masked(rendered, photo, mask)}


def identity_metrics(views: dict[str, np.ndarray], ctx: RunContext) -> dict[str, float | None]:
    """dlib distance between the input's embedding and each view (None: no face found there)."""
    reference = ctx.subject.dlib_embedding
    return {name: identity_distance(reference, dlib_embedding(image)) for name, image in views.items()}
