"""The rig stage's cost and wrap error on finished preview runs: `python bench/rig.py OUT [OUT ...]` reruns the stage on
a copy of each run folder (its prior, geometry and texture outputs as they are) and reports the stage's wall time, each
step's time (from rig/rig.json), the wrap error (mean, 95th percentile, max; % of crown-to-chin height) and the
topology of the rigged skin; with two or more folders, whether their rigged heads share vertex count, faces and UVs.

Prints one JSON object on its last line. Targets: stage <= 30 s on this 2-core CPU, mean wrap error <= 0.5 %.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fitter.config import load_config  # noqa: E402
from fitter.context import RunContext  # noqa: E402
from fitter.stages.rig.stage import RIG_GLB, RIG_JSON, run  # noqa: E402
from tests.helpers import accessor, read_glb  # noqa: E402

NEEDED = ("config.yaml", "subject", "prior", "geometry", "texture")


def skin_topology(glb: Path) -> tuple[np.ndarray, np.ndarray]:
    """(indices, uvs) of the rigged skin (the mesh with morph targets)."""
    doc, blob = read_glb(glb)
    primitive = next(m for m in doc["meshes"] if m["primitives"][0].get("targets"))["primitives"][0]
    return accessor(doc, blob, primitive["indices"]), accessor(doc, blob, primitive["attributes"]["TEXCOORD_0"])


def bench_one(folder: Path, tmp: Path) -> dict:
    out = tmp / folder.name
    out.mkdir()
    for name in NEEDED:
        source = folder / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, out / name)
    start = time.perf_counter()
    run(RunContext(cfg=load_config(out / "config.yaml"), out=out, device=torch.device("cpu")))
    record = json.loads((out / "rig" / RIG_JSON).read_text())
    return {"run": str(folder), "stage_s": round(time.perf_counter() - start, 2), "steps_s": record["seconds"],
            "wrap_error_pct": record["wrap_error"], "wrapped_fraction": record["wrapped_fraction"],
            "vertices": record["vertices"], "faces": record["faces"], "hair_faces": (record["hair"] or {}).get("faces"),
            "glb_mb": round((out / "rig" / RIG_GLB).stat().st_size / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (OUT of `run.py --image ...`)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_one(folder, Path(tmp)) for folder in args.runs]
        topologies = [skin_topology(Path(tmp) / folder.name / "rig" / RIG_GLB) for folder in args.runs]
    shared = all(np.array_equal(t[0], topologies[0][0]) and np.array_equal(t[1], topologies[0][1]) for t in topologies)
    for result in results:
        print(json.dumps(result))
    print(json.dumps({"runs": len(results), "stage_s_max": max(r["stage_s"] for r in results),
                      "wrap_mean_pct_max": max(r["wrap_error_pct"]["mean_pct"] for r in results),
                      "shared_topology_and_uvs": shared if len(results) > 1 else None}))


if __name__ == "__main__":
    main()
