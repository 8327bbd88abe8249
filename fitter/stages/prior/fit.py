"""The prior fit: anny's head posed, shaped and given an expression to match the photo, coarse to fine.

1. Start: the closed-form similarity (`head.umeyama`) that puts the average head's 468 mesh landmarks on the
   intake's world landmarks (on the camera rays through the photo's landmarks, at MediaPipe's depth).
2. Pose (the first fifth of `prior.steps`): similarity, neck and head; landmarks, iris, depth, silhouette, pose prior.
3. Expression (the next third): + the 52 facial actions with their L1 sparsity.
4. Shape (the rest): + phenotype and local changes with the shape prior; everything moves together.

The expression comes before the shape: many local changes of the mouth, eyes and brows move the same landmarks as
facial actions do (a wide mouth or a smile), and started first they would take the photo's expression into the
head's shape, leaving the neutral head smiling.

Each step is a Levenberg-Marquardt step on the terms' residuals (losses.py), with the Jacobian by forward differences
(all parameters in one batch through the head, computing only the vertices the terms look at: the landmarks'
triangles and the vertices outside the mask; torch.func's forward mode also works, but imports torch._dynamo on
first use, ~3 s, and was slower per step), bounds
kept by an active set (a parameter at its bound that the gradient pushes out stays there: facial actions the photo
does not show stay exactly 0) and the L1 sparsity as its linear gradient. A few dozen such steps converge where
first-order steps need thousands: the terms couple (a smile, a wide mouth and dimples move the same landmarks).
All in float32 on the CPU (float64 for the small linear solves).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from fitter.config import HeadPriorConfig
from fitter.stages.prior import losses
from fitter.stages.prior.head import GROUPS, FitHead, HeadParams, Rows, umeyama
from fitter.stages.prior.targets import IRIS, NUM_MESH, Targets, sample
from representations.parametric import HeadModel
from representations.parametric.landmarks import LandmarkMap

log = logging.getLogger("headfit")

PHASES = (("pose", ("pose",)), ("expression", ("pose", "expression")), ("shape", ("pose", "expression", "shape")))
"""(name, the parameter groups that move)."""
PHASE_SHARES = (0.2, 1 / 3)
"""Shares of `prior.steps` of all phases but the last, which has the rest."""
TERM_PHASE = {"shape_prior": "shape", "cephalic": "shape", "expression_sparsity": "expression"}
"""Terms that start with a later phase (the others run throughout)."""
MAX_DAMPING_TRIES = 6
MAX_DAMPING = 1e6
GLABELLA = 9
"""MediaPipe face-mesh point between the brows."""
FD_STEP = 1e-3
"""Forward-difference step of the Jacobian (radians, world units, log-scale, parameter units alike)."""


@dataclass
class FitResult:
    head: FitHead
    params: HeadParams
    losses: dict[str, float]
    """Each term's final unweighted value."""
    landmark_rmse_px: float
    """RMS 2D error of the 468 mesh landmarks, pixels at 512²."""
    iris_rmse_px: float
    history: list[float] = field(default_factory=list)
    """The weighted objective after each step."""


def start(head: FitHead, landmark_map: LandmarkMap, targets: Targets) -> HeadParams:
    """Initial parameters, with the similarity's start set on ``head`` (module docstring, 1)."""
    params = head.initial_params()
    with torch.no_grad():
        anny = landmark_map.points(head.anny_vertices(params), head.model.faces)[0, :NUM_MESH]
    src = (anny @ head.axes.T).double().numpy()
    rotation, scale, translation = umeyama(src, targets.world[:NUM_MESH].double().numpy())
    head.set_start(rotation, scale, translation)
    return params


def phase_lengths(steps: int) -> list[int]:
    """Steps per phase; with fewer steps than phases, all go to the last one (where everything moves)."""
    if steps < len(PHASES):
        return [0] * (len(PHASES) - 1) + [steps]
    lengths = [max(1, round(steps * share)) for share in PHASE_SHARES]
    return lengths + [steps - sum(lengths)]


class Problem:
    """The terms of one photo as functions of a batch of packed parameter vectors (`FitHead.pack`)."""

    def __init__(self, head: FitHead, landmark_map: LandmarkMap, targets: Targets, weights: dict[str, float],
                 cephalic_band: tuple[float, float]):
        self.head, self.targets, self.weights, self.cephalic_band = head, targets, weights, cephalic_band
        corners = head.model.faces.long()[landmark_map.faces]  # (478, 3)
        self.corner_ids, inverse = torch.unique(corners.reshape(-1), return_inverse=True)
        self.corner_index = inverse.reshape(-1, 3)
        self.barycentrics = landmark_map.barycentrics
        self.num_vertices = head.model.num_vertices
        self.cranium_ids = cranium_candidates(head, landmark_map)
        self.all_rows = head.rows()
        self.landmark_rows = head.rows(self.corner_ids)
        self.mean_depth = targets.mean_depth
        self.lower, self.upper = head.bounds()

    def outside_vertices(self, theta: Tensor) -> Tensor:
        """Ids of the vertices that project farther than the tolerance outside the photo's mask at ``theta`` (n,)."""
        px, _ = self.targets.camera.project(self.head.world_vertices(self.head.unpack(theta), rows=self.all_rows)[0])
        return torch.nonzero(sample(self.targets.outside, px) > losses.SILHOUETTE_TOLERANCE_PX)[:, 0]

    def depth_scale(self, theta: Tensor) -> Tensor:
        """`losses.depth_scale` at ``theta`` (n,)."""
        vertices = self.head.world_vertices(self.head.unpack(theta), rows=self.landmark_rows)
        _, depth = self.targets.camera.project(self._points(vertices))
        to_px = self.targets.camera.fx / self.mean_depth
        return losses.depth_scale(depth[0, :NUM_MESH] * to_px, self.targets.depth[:NUM_MESH])

    def _points(self, vertices: Tensor) -> Tensor:
        """(B, 478, 3) landmark points from vertices (B, N, 3) whose first rows are `corner_ids`'."""
        corners = vertices[:, : len(self.corner_ids)][:, self.corner_index]  # (B, 478, 3, 3)
        return (corners * self.barycentrics[:, :, None]).sum(2)

    def rows(self, outside_ids: Tensor) -> Rows:
        """The rows `terms` computes: the landmarks' triangles' vertices, the skull's candidates for its greatest
        breadth and length (`cranium_candidates`), then those of ``outside_ids``."""
        return self.head.rows(torch.cat([self.corner_ids, self.cranium_ids, outside_ids]))

    def terms(self, theta: Tensor, rows: Rows, scale: Tensor, active: set[str]) -> dict[str, Tensor]:
        """The ``active`` terms at ``theta`` (B, n) on ``rows`` (`Problem.rows`): residuals (B, m), the sparsity its
        value (B,)."""
        head, t = self.head, self.targets
        p = head.unpack(theta)
        anny = head.anny_vertices(p, rows=rows)
        vertices = head.to_world(p, anny)
        px, depth = t.camera.project(self._points(vertices))
        skull_end = len(self.corner_ids) + len(self.cranium_ids)
        out: dict[str, Tensor] = {}
        if "landmarks" in active:
            out["landmarks"] = losses.loss_landmarks(px[:, :NUM_MESH], t.landmarks[:NUM_MESH])
        if "landmark_depth" in active:
            out["landmark_depth"] = losses.loss_landmark_depth(depth[:, :NUM_MESH], t.depth[:NUM_MESH], self.mean_depth,
                                                               t.camera.fx, scale)
        if "iris" in active:
            out["iris"] = losses.loss_iris(px[:, IRIS], t.landmarks[IRIS])
        if "silhouette" in active:
            outside_px, _ = t.camera.project(vertices[:, skull_end:])
            out["silhouette"] = losses.loss_silhouette(sample(t.outside, outside_px), self.num_vertices)
        if "cephalic" in active:
            out["cephalic"] = losses.loss_cephalic(anny[:, len(self.corner_ids):skull_end] @ head.axes.T, self.cephalic_band)
        if "shape_prior" in active:
            out["shape_prior"] = losses.loss_shape_prior(p.phenotype, head.phenotype_centre, p.local)
        if "pose_prior" in active:
            out["pose_prior"] = losses.loss_pose_prior(p.neck, p.head)
        if "expression_sparsity" in active:
            out["expression_sparsity"] = losses.loss_expression_sparsity(p.facial)
        return out

    def weighted(self, terms: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Weighted residuals (B, m) and linear part (B,): the objective is r·r + linear."""
        squared = [math.sqrt(self.weights[k]) * r for k, r in terms.items() if k != "expression_sparsity"]
        sparsity = terms.get("expression_sparsity")
        linear = self.weights["expression_sparsity"] * sparsity if sparsity is not None else squared[0].new_zeros(len(squared[0]))
        return torch.cat(squared, dim=1), linear


def cranium_candidates(head: FitHead, landmark_map: LandmarkMap, share: float = 0.15) -> Tensor:
    """Ids of the average head's vertices above the glabella (MediaPipe point 9, between the brows) within ``share``
    of the skull's extent from its left, right, front or back end: where its greatest breadth and length lie."""
    with torch.no_grad():
        anny = head.anny_vertices(head.initial_params())
        glabella = (landmark_map.points(anny, head.model.faces)[0, GLABELLA] @ head.axes.T)[1]
        points = anny[0] @ head.axes.T
    skull = points[:, 1] > glabella
    x, z = points[:, 0], points[:, 2]
    span_x, span_z = float(x[skull].max() - x[skull].min()), float(z[skull].max() - z[skull].min())
    extreme = ((x > x[skull].max() - share * span_x) | (x < x[skull].min() + share * span_x)
               | (z > z[skull].max() - share * span_z) | (z < z[skull].min() + share * span_z))
    return torch.nonzero(skull & extreme)[:, 0]


def weights_of(cfg: HeadPriorConfig) -> dict[str, float]:
    return {name[len("lambda_"):]: float(getattr(cfg, name)) for name in vars(cfg) if name.startswith("lambda_")}


@torch.no_grad()
def fit_head(model: HeadModel, landmark_map: LandmarkMap, targets: Targets, cfg: HeadPriorConfig) -> FitResult:
    """Fit the head to ``targets`` (module docstring). It takes seconds and keeps no checkpoint: a stop request
    (Ctrl-C, SIGTERM) ends it at once (`fitter.context.StopFlag`) and the stage reruns from the start."""
    head = FitHead(model, cfg.tie_symmetric)
    theta = head.pack(start(head, landmark_map, targets))[0]
    problem = Problem(head, landmark_map, targets, weights_of(cfg), tuple(cfg.cephalic_band))
    offsets = head.offsets()
    history: list[float] = []
    done: set[str] = set()
    for (phase, groups), steps in zip(PHASES, phase_lengths(cfg.steps)):
        done.add(phase)
        active = {k for k, w in problem.weights.items() if w > 0 and TERM_PHASE.get(k, "pose") in done}
        index = torch.cat([torch.arange(*offsets[name]) for g in groups for name in GROUPS[g]])
        damping = cfg.damping
        for _ in range(steps):
            theta, damping, objective = lm_step(problem, theta, index, active, damping)
            history.append(objective)
            if damping > MAX_DAMPING:  # no step lowers the objective: this phase has converged
                break
        log.debug("prior %s phase: objective %.4f", phase, history[-1] if history else float("nan"))
    final = problem.terms(theta[None], problem.rows(problem.outside_vertices(theta)), problem.depth_scale(theta),
                          set(problem.weights))
    values = {k: float(losses.value(r)[0]) if k != "expression_sparsity" else float(r[0]) for k, r in final.items()}
    return FitResult(head, head.unpack(theta[None]), values, math.sqrt(values["landmarks"]), math.sqrt(values["iris"]), history)


def lm_step(problem: Problem, theta: Tensor, index: Tensor, active: set[str], damping: float) -> tuple[Tensor, float, float]:
    """One Levenberg-Marquardt step on the entries ``index`` of ``theta`` (n,): (new theta, new damping, objective).
    When no damping up to `MAX_DAMPING_TRIES` quadruplings lowers the objective, theta stays and the damping grows."""
    rows = problem.rows(problem.outside_vertices(theta) if "silhouette" in active else torch.zeros(0, dtype=torch.long))
    scale = problem.depth_scale(theta)
    lo, hi = problem.lower[index], problem.upper[index]

    def objective_parts(thetas: Tensor) -> tuple[Tensor, Tensor]:
        return problem.weighted(problem.terms(thetas, rows, scale, active))

    x = theta[index]
    r, linear, jacobian, linear_grad = forward_differences(objective_parts, theta, index, hi)
    J, r = jacobian.double(), r.double()
    gradient = 2 * J.T @ r + linear_grad.double()
    current = float(r @ r + linear)
    stuck = ((x <= lo) & (gradient > 0)) | ((x >= hi) & (gradient < 0))
    free = torch.nonzero(~stuck)[:, 0]
    h = 2 * J[:, free].T @ J[:, free]
    diagonal = torch.diag(h).clamp(min=1e-6)
    for _ in range(MAX_DAMPING_TRIES):
        step = torch.linalg.solve(h + damping * torch.diag(diagonal), -gradient[free])
        candidate = x.clone()
        candidate[free] += step.float()
        candidate = torch.maximum(torch.minimum(candidate, hi), lo)
        trial = theta.index_put((index,), candidate)
        r_new, linear_new = objective_parts(trial[None])
        new = float(r_new[0].double() @ r_new[0].double() + linear_new[0])
        if new < current:
            return trial, max(damping / 3, 1e-7), new
        damping *= 4
    return theta, damping, current


def forward_differences(parts: Callable[[Tensor], tuple[Tensor, Tensor]], theta: Tensor, index: Tensor,
                        upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The residuals (m,) and linear part () at ``theta`` and their Jacobians (m, k) and (k,) over its entries ``index``
    (k,), by forward differences in one batch (backward ones at an upper bound: anny does not extrapolate)."""
    k = len(index)
    h = torch.full((k,), FD_STEP)
    h = torch.where(theta[index] + h > upper, -h, h)
    batch = theta.repeat(k + 1, 1)
    batch[torch.arange(1, k + 1), index] += h
    residuals, linear = parts(batch)
    return residuals[0], linear[0], ((residuals[1:] - residuals[0]) / h[:, None]).T, (linear[1:] - linear[0]) / h
