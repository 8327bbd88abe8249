"""xatlas in its own process: xatlas can segfault or hang, which must not take the caller down.

Usage: python -I _xatlas_worker.py WORKDIR
Reads WORKDIR/verts.npy (V, 3) float32, WORKDIR/faces.npy (F, 3) uint32, WORKDIR/options.json;
writes vmapping.npy (N,) uint32, indices.npy (F, 3) uint32, uvs.npy (N, 2) float32, atlas.json.
Imports nothing from the project, so it starts fast and runs from any working directory.

Test hook: HEADFIT_XATLAS_WORKER_FAULT = "segv" | "exit" | "hang" makes the worker die by
SIGSEGV, exit with status 139, or sleep forever before doing any work.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np


def _inject_fault() -> None:
    fault = os.environ.get("HEADFIT_XATLAS_WORKER_FAULT", "")
    if fault == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "exit":
        os._exit(139)
    elif fault == "hang":
        while True:
            time.sleep(60)


def _options(xatlas, options: dict):
    chart = xatlas.ChartOptions()
    chart.max_iterations = int(options["max_chart_iterations"])
    pack = xatlas.PackOptions()
    pack.resolution = int(options["resolution"])
    pack.padding = int(options["padding"])
    pack.bilinear = True
    pack.blockAlign = bool(options["block_align"])
    pack.bruteForce = bool(options["brute_force"])
    return chart, pack


def main(workdir: Path) -> None:
    _inject_fault()
    import xatlas

    verts = np.load(workdir / "verts.npy", allow_pickle=False)
    faces = np.load(workdir / "faces.npy", allow_pickle=False)
    options = json.loads((workdir / "options.json").read_text())
    atlas = xatlas.Atlas()
    atlas.add_mesh(verts, faces)
    atlas.generate(*_options(xatlas, options))
    vmapping, indices, uvs = atlas[0]
    np.save(workdir / "vmapping.npy", vmapping)
    np.save(workdir / "indices.npy", indices)
    np.save(workdir / "uvs.npy", uvs)
    info = {"atlas_count": atlas.atlas_count, "chart_count": atlas.chart_count, "width": atlas.width, "height": atlas.height, "utilization": float(atlas.get_utilization(0))}
    (workdir / "atlas.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
