"""DMTet extraction cost: dense 64 / 128 and narrow-band 256 / 512 grids, default hash-grid field.

The field (Instant-NGP default config) is first fitted to a head-sized ellipsoid; each resolution then
runs in its own process so its peak memory is its own.  Extraction = ``DMTet.get_mesh()``: SDF over
every grid vertex, the autograd pass on crossed tets, marching tets.  Prints one JSON object on its
last line.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from representations.dmtet import DMTet, DMTetConfig, ellipsoid_sdf  # noqa: E402

HEAD = (0.75, 0.9, 0.85)
CASES = [(64, None), (128, None), (256, 3.0), (512, 3.0)]
RUNS = 3


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_case(resolution: int, band: float | None, weights: str) -> dict:
    """Time grid setup and extraction for one case in this process."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    model = DMTet(DMTetConfig(resolution=resolution, band=band)).to(device)
    model.load_state_dict(torch.load(weights, map_location=device))
    if band:
        model.rebuild_band()
    _sync()
    setup_s = time.perf_counter() - start
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        verts, faces = model.get_mesh()
        _sync()
        times.append(time.perf_counter() - start)
    row = {
        "resolution": resolution, "grid": f"band{band:g}" if band else "dense",
        "grid_setup_s": round(setup_s, 3), "extract_s": round(statistics.median(times), 3),
        "grid_verts": len(model.grid.verts), "tets": len(model.grid.tets),
        "mesh_verts": len(verts), "mesh_faces": len(faces),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if device == "cuda":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def fit_field() -> tuple[float, DMTet]:
    """A default-config field fitted to a head-sized ellipsoid, and its fit error."""
    model = DMTet(DMTetConfig(resolution=64))
    if torch.cuda.is_available():
        model = model.cuda()
    return model.fit_sdf(ellipsoid_sdf(HEAD), steps=200, batch=2**13), model


def main() -> None:
    if len(sys.argv) == 4:
        resolution, band, weights = int(sys.argv[1]), float(sys.argv[2]) or None, sys.argv[3]
        print(json.dumps(run_case(resolution, band, weights)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(Path(tmp) / "field.pt")
        start = time.perf_counter()
        error, model = fit_field()
        torch.save(model.state_dict(), weights)
        result = {"device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
                  "fit_s": round(time.perf_counter() - start, 1), "fit_error": round(error, 5), "cases": []}
        for resolution, band in CASES:
            proc = subprocess.run([sys.executable, __file__, str(resolution), str(band or 0), weights],
                                  capture_output=True, text=True)
            if proc.returncode:
                result["cases"].append({"resolution": resolution, "error": proc.stderr.strip().splitlines()[-1:]})
            else:
                result["cases"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
