"""A stand-in for the prior stage's outputs (`OUT/prior/`): anny's head at its default parameters in the
project's world frame, (x, y, z)_world = s·(x, z, −y)_anny + t, with s set by the pupil distance (0.5 world
units) and t putting the pupils where the intake's canonical landmark layout has them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from representations.mesh import Mesh, save_ply
from representations.parametric import head_model

CANONICAL_PUPILS = np.array([[-0.25, -0.0455, 0.649], [0.25, -0.0455, 0.649]])
"""The pupils (MediaPipe 468, 473) of fitter/stages/intake/canonical_landmarks.npy."""


def anny_world_head(scale: float | None = None, offset: np.ndarray | None = None) -> Mesh:
    """anny's default head in world units: pupils 0.5 apart at the canonical landmarks' pupils."""
    model = head_model()
    with torch.no_grad():
        anny = model()[0].double().numpy()
    world = anny[:, [0, 2, 1]] * np.array([1.0, 1.0, -1.0])
    pupils = _pupils(world, model.faces.numpy())
    s = scale if scale is not None else 0.5 / float(np.linalg.norm(pupils[1] - pupils[0]))
    t = offset if offset is not None else CANONICAL_PUPILS.mean(0) - s * pupils.mean(0)
    return Mesh(torch.as_tensor(s * world + t, dtype=torch.float32), model.faces.long())


def _pupils(world: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The front-most point of each eyeball (the two small closed parts in front), right then left."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(world)
    graph = coo_matrix((np.ones(2 * len(faces)), (np.r_[faces[:, 0], faces[:, 1]], np.r_[faces[:, 1], faces[:, 2]])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    eyes = [lab for lab in np.argsort(sizes) if sizes[lab] < 150][:2]  # anny's eyeballs: 72 and 40 vertices
    tips = [world[label == lab][world[label == lab][:, 2].argmax()] for lab in eyes]
    return np.array(sorted(tips, key=lambda p: p[0]))


def write_fake_prior(folder: Path, mesh: Mesh | None = None, neutralize: bool = True, posed: Mesh | None = None) -> Path:
    """`folder`/prior with fit.json, neutral.ply and posed.ply (the same head unless `posed` is given)."""
    prior = folder / "prior"
    prior.mkdir(parents=True, exist_ok=True)
    mesh = mesh if mesh is not None else anny_world_head()
    save_ply(mesh, prior / "neutral.ply")
    save_ply(posed if posed is not None else mesh, prior / "posed.ply")
    (prior / "fit.json").write_text(json.dumps({"neutralize": neutralize, "phenotype": {}, "facial_actions": {}}))
    return prior
