"""`OUT/report.html`: one page per run with an interactive viewer of `head.glb`, the turntable,
the evaluation views beside the input photo, loss curves, the metrics and the resolved config.

Support files go to `OUT/report/` (viewer bundle, loss curves, evaluation views). Without the
model-viewer bundle (`python run.py install-viewer`; see `viewer`) the page is written without the
3D viewer and says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from common import atomic
from fitter.config import Config
from fitter.stages.export.report.curves import write_loss_curves
from fitter.stages.export.report.page import build_page
from fitter.stages.export.report.viewer import copy_bundle
from fitter.stages.export.views import render_eval_views, write_eval_views
from representations.mesh import Mesh, read_mesh

log = logging.getLogger("headfit")
REPORT_DIR = "report"


def write_report(out: Path, cfg: Config, mesh: Optional[Mesh] = None) -> Path:
    """Write `out/report.html` and `out/report/`; returns the page's path."""
    folder = out / REPORT_DIR
    mesh = mesh if mesh is not None else read_mesh(out / "head.glb")
    eval_paths = write_eval_views(render_eval_views(mesh, cfg.export), folder)
    curves = write_loss_curves(out, folder)
    problem = copy_bundle(folder)
    page = build_page(
        out,
        eval_views={name: _rel(p, out) for name, p in eval_paths.items()},
        export_views=[_rel(p, out) for p in sorted((out / "views").glob("az*.png"), key=_azimuth)],
        curves=[_rel(p, out) for p in curves],
        viewer_problem=problem,
        turntable_size=min(cfg.export.turntable_size, 512),
    )
    path = out / "report.html"
    atomic.write_text(path, page)
    log.info("report: %s%s", path, "" if problem is None else " (without the 3D viewer)")
    return path


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _azimuth(path: Path) -> int:
    return int(path.stem[2:6])
