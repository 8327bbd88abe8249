"""Weighted smoothing on (verts, faces) tensors, and the normal-roughness figure it is judged by.

* `fair_to_reference`: where a per-vertex weight says so, replace the surface's fine detail by the shape of a
  reference surface (given as a signed distance field) at the surface's own smoothed offset from it. Lumps, ridges
  and fins go; the reference's own detail (ears) and the low-frequency offset (hair volume over a skull) stay.
* `taubin_smooth`: Taubin's λ|μ smoothing (a low-pass filter that does not shrink the shape), with a per-vertex step
  weight: 0 pins a vertex, 1 smooths it fully.
* `normal_roughness_deg`: the angle between each vertex normal and its neighbourhood's mean normal, the fine lumps a
  shaded view shows; `roughness_deg` its mean over the sides and back of a head (`side_back_region`), the figure of
  bench/fidelity.py and of geometry/geometry.json.

Shapes: verts (V, 3) float, faces (F, 3) long; `edges`, where a function takes it, is `directed_edges(faces)`,
computed once by a caller that makes several calls on one mesh (it is the slow part). Results are detached and on
the input's device (the smoothing runs in scipy.sparse on the CPU: a sparse product is ~20x faster there than torch's
index_add).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .geometry import unique_edges, vertex_normals

SIDES_BACK_MIN_AZIMUTH_DEG = 60.0
"""`side_back_region`: more than this many degrees of azimuth from the face (+z)..."""
SIDES_BACK_MIN_Y = -0.4
"""...and above this height (the eyes are near y = -0.05, the chin near -0.6): the sides and back of a head."""

SDF = Callable[[torch.Tensor], torch.Tensor]
"""A signed distance field: points (N, 3) to distances (N,), negative inside."""


def directed_edges(faces: torch.Tensor) -> torch.Tensor:
    """(2E, 2) each unique edge in both directions: row (i, j) says j is in the 1-ring of i."""
    edges = unique_edges(faces)
    return torch.cat([edges, edges.flip(1)])


def mean_operator(faces: torch.Tensor, num_verts: int, self_weight: float = 0.0, edges: torch.Tensor | None = None) -> sp.csr_matrix:
    """(V, V) sparse matrix M with (M·x)_i the mean of x over the 1-ring of i (and i itself with weight
    `self_weight`); a vertex without neighbours keeps its value only if `self_weight` > 0, else maps to 0."""
    pairs = _edges(faces, edges).cpu().numpy()
    adjacency = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(num_verts, num_verts))
    if self_weight > 0:
        adjacency = adjacency + self_weight * sp.identity(num_verts, format="csr")
    total = np.asarray(adjacency.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(total, 1e-12)) @ adjacency)


def ring_average(values: torch.Tensor, faces: torch.Tensor, rounds: int, edges: torch.Tensor | None = None) -> torch.Tensor:
    """`values` (V,) or (V, C) replaced `rounds` times by their mean over each vertex and its 1-ring (a feather:
    about a Gaussian of sigma sqrt(3·rounds/7) edge lengths)."""
    if rounds <= 0:
        return values
    mean = mean_operator(faces, values.shape[0], self_weight=1.0, edges=edges)
    x = values.detach().cpu().double().numpy()
    for _ in range(rounds):
        x = mean @ x
    return torch.from_numpy(x).to(values.device, values.dtype)


def rounds_for_sigma(sigma: float, edge_length: float) -> int:
    """`ring_average` rounds whose feather has standard deviation about `sigma` (same units as `edge_length`): on a
    regular triangulation each round adds 3/7 of an edge length squared to the variance along any axis."""
    return max(1, math.ceil(7.0 / 3.0 * (sigma / max(edge_length, 1e-12)) ** 2))


def mean_edge_length(verts: torch.Tensor, faces: torch.Tensor, edges: torch.Tensor | None = None) -> float:
    pairs = unique_edges(faces) if edges is None else edges  # both directions of every edge: the same mean
    return float((verts[pairs[:, 0]] - verts[pairs[:, 1]]).norm(dim=1).mean()) if pairs.numel() else 0.0


def normal_roughness_deg(verts: torch.Tensor, faces: torch.Tensor, rounds: int = 4, edges: torch.Tensor | None = None) -> torch.Tensor:
    """(V,) angle in degrees between each vertex normal and its neighbourhood's mean normal (`rounds` rounds of
    1-ring summing, each vertex counting itself once). 0 on a plane; it grows with the mesh's edge length on a
    curved surface, so compare meshes of about the same resolution."""
    normals = vertex_normals(verts, faces)
    edges = _edges(faces, edges)
    smooth = normals
    for _ in range(rounds):
        smooth = F.normalize(smooth.clone().index_add_(0, edges[:, 0], smooth[edges[:, 1]]), dim=1)
    return torch.rad2deg(torch.arccos((normals * smooth).sum(1).clamp(-1.0, 1.0)))


def side_back_region(verts: torch.Tensor) -> torch.Tensor:
    """(V,) bool: the sides and back of a head in the world frame of `representations/cameras.py` (|azimuth| >
    `SIDES_BACK_MIN_AZIMUTH_DEG` from +z, y > `SIDES_BACK_MIN_Y`), what a frontal photo does not see."""
    azimuth = torch.rad2deg(torch.atan2(verts[:, 0], verts[:, 2]))
    return (azimuth.abs() > SIDES_BACK_MIN_AZIMUTH_DEG) & (verts[:, 1] > SIDES_BACK_MIN_Y)


def roughness_deg(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray, region: torch.Tensor | None = None,
                  edges: torch.Tensor | None = None) -> float:
    """Mean `normal_roughness_deg` (4 rounds) over `region` ((V,) bool; default `side_back_region`), NaN when the
    region is empty: the side/back roughness of bench/fidelity.py and geometry/geometry.json."""
    v = torch.as_tensor(verts).detach().float()
    f = torch.as_tensor(faces).long().to(v.device)
    region = side_back_region(v) if region is None else region.to(v.device)
    if not bool(region.any()):
        return math.nan
    return float(normal_roughness_deg(v, f, edges=edges)[region].mean())


def taubin_smooth(verts: torch.Tensor, faces: torch.Tensor, step_weight: torch.Tensor | float = 1.0, iterations: int = 10,
                  lam: float = 0.5, mu: float = -0.53, edges: torch.Tensor | None = None) -> torch.Tensor:
    """(V, 3) vertices after `iterations` rounds of Taubin λ|μ smoothing with the uniform Laplacian.

    Each round moves every vertex by ``w·λ·L(v)`` and then by ``w·μ·L(v)`` (L(v): the mean of its 1-ring minus v),
    w its `step_weight` in [0, 1] ((V,) or a scalar): w = 0 pins a vertex, w = 1 smooths it fully. With μ < −λ < 0
    the pair passes frequencies below about 1/λ + 1/μ (0.11 for the defaults) and removes the ones above without
    shrinking the whole (Taubin 1995, "A signal processing approach to fair surface design")."""
    if not (0.0 < lam < 1.0 and mu < -lam):
        raise ValueError(f"taubin_smooth needs 0 < lam < 1 and mu < -lam (got lam={lam}, mu={mu})")
    weight = _vertex_weight(step_weight, verts.shape[0])[:, None]
    if iterations <= 0 or not weight.any():
        return verts.detach().clone()
    mean = mean_operator(faces, verts.shape[0], edges=edges)
    points = verts.detach().cpu().double().numpy()
    for _ in range(iterations):
        for factor in (lam, mu):
            points = points + (factor * weight) * (mean @ points - points)
    return torch.from_numpy(points).to(verts.device, verts.dtype)


def fair_to_reference(verts: torch.Tensor, faces: torch.Tensor, reference: SDF, weight: torch.Tensor | float, *,
                      offset_rounds: int, max_correction: float, cliff_slope: float = 0.5, relax_iterations: int = 30,
                      fin_rings: int = 1, gradient_step: float = 0.01, projection_steps: int = 3,
                      keep_offset: float = 1.0, edges: torch.Tensor | None = None) -> torch.Tensor:
    """(V, 3) vertices whose fine detail is replaced, where `weight` ((V,) in [0, 1], or a scalar) says so, by the
    shape of the `reference` surface at the surface's own smoothed offset from it.

    1. Each vertex's offset d = reference(v) loses its fins and pits narrower than about 2·`fin_rings` rings (a
       morphological opening, then closing, over the 1-ring: a thin sheet or spike the mask loss grew), then is
       averaged over the surface (`offset_rounds` of 1-ring averaging): d̄. Neighbours whose offsets differ by more
       than about `cliff_slope` edge lengths (a wall steeper than atan(cliff_slope) to the reference, e.g. the edge
       of a hair mass over an ear) count little in that average (a bilateral filter): each side of such a wall keeps
       its own offset instead of both being pressed onto their mean. 0: no such limit (a plain average).
    2. Each vertex moves along the reference's gradient onto its level set d̄ (`projection_steps` Newton steps of
       w·(d − d̄)): a lump, ridge or fin sinks to its neighbours' offset, while the reference's own shape (ears) and
       a broad offset (hair volume) stay. Where the opened offset still differs from d̄ by more than half of
       `max_correction` the move fades out, to none at `max_correction`: a broad structure the reference lacks is
       not folded onto it. `keep_offset` < 1 scales an inward d̄ (< 0) by 1 − (1 − keep_offset)·w: where the weight is
       full only that fraction of the sinking stays (0: back onto the reference). Nothing in a photo asks an unseen
       surface to sink below the init, its regularisers do (a Laplacian shrinks what nothing holds); outward
       offsets (hair beyond the reference) keep their place.
    3. `relax_iterations` of `taubin_smooth` with the same weight even out the triangles and what is left (it
       shrinks a sphere of 40 edges' circumference by about 1%).

    w = 0 leaves a vertex exactly where it was. `gradient_step`: central-difference step of the gradient (about the
    reference grid's spacing). The reference is evaluated on the CPU in float32."""
    num = verts.shape[0]
    w = _vertex_weight(weight, num)
    if num == 0 or not w.any():
        return verts.detach().clone()
    cpu_faces = faces.cpu()
    edges = _edges(cpu_faces, edges).cpu()
    points = verts.detach().cpu().double().numpy()
    offset, _ = _distance_and_direction(reference, points, gradient_step)
    tolerance = cliff_slope * mean_edge_length(verts.detach().cpu().float(), cpu_faces, edges) if cliff_slope > 0 else math.inf
    opened = offset
    if fin_rings > 0:  # a morphological opening, then closing, of the offset: fins and pits narrower than 2·fin_rings go
        for first, second in (("amin", "amax"), ("amax", "amin")):
            for reduce in [first] * fin_rings + [second] * fin_rings:
                opened = ring_reduce(torch.from_numpy(opened), edges, 1, reduce).numpy()
    target = _bilateral_average(opened, edges, offset_rounds, tolerance)
    fade = np.clip(2.0 - 2.0 * np.abs(opened - target) / max_correction, 0.0, 1.0)
    fade = ring_average(torch.from_numpy(fade), cpu_faces, 2, edges).numpy()  # no seam where the fade starts
    step = (w * fade)[:, None]
    target = np.where(target < 0, target * (1.0 - (1.0 - keep_offset) * w), target)
    points = _project(reference, points, target, step, gradient_step, projection_steps)
    moved = torch.from_numpy(points).to(verts.device, verts.dtype)
    return taubin_smooth(moved, faces, torch.from_numpy(w).to(verts.device), relax_iterations, edges=edges)


def _project(reference: SDF, points: np.ndarray, target: np.ndarray, step: np.ndarray, gradient_step: float, iterations: int) -> np.ndarray:
    """Newton steps of each point (weighted by `step` (N, 1)) along the field's gradient onto its level set `target`."""
    for _ in range(iterations):
        distance, direction = _distance_and_direction(reference, points, gradient_step)
        points = points - step * (distance - target)[:, None] * direction
    return points


def _bilateral_average(values: np.ndarray, edges: torch.Tensor, rounds: int, tolerance: float) -> np.ndarray:
    """`rounds` of 1-ring averaging of (V,) values (each vertex counting itself once) in which a neighbour counts by
    exp(−½((x_i − x_j) / tolerance)²) of the values given (fixed weights: a linear filter); inf: a plain average.
    edges: `directed_edges`."""
    pairs = edges.cpu().numpy()
    n = len(values)
    weight = np.exp(-0.5 * ((values[pairs[:, 0]] - values[pairs[:, 1]]) / tolerance) ** 2)
    matrix = sp.csr_matrix((weight, (pairs[:, 0], pairs[:, 1])), shape=(n, n)) + sp.identity(n, format="csr")
    matrix = sp.csr_matrix(sp.diags(1.0 / np.asarray(matrix.sum(axis=1)).ravel()) @ matrix)
    x = values.copy()
    for _ in range(rounds):
        x = matrix @ x
    return x


def ring_reduce(values: torch.Tensor, edges: torch.Tensor, rounds: int, reduce: str) -> torch.Tensor:
    """(V,) `values` replaced `rounds` times by their minimum (reduce="amin": erosion) or maximum ("amax":
    dilation) over each vertex and its 1-ring (edges: `directed_edges`)."""
    edges = edges.to(values.device)
    for _ in range(rounds):
        values = values.clone().scatter_reduce_(0, edges[:, 0], values[edges[:, 1]], reduce=reduce)
    return values


def _edges(faces: torch.Tensor, edges: torch.Tensor | None) -> torch.Tensor:
    return directed_edges(faces) if edges is None else edges


def _vertex_weight(weight: torch.Tensor | float, num_verts: int) -> np.ndarray:
    w = torch.as_tensor(weight).detach().double().cpu().clamp(0.0, 1.0)
    return np.broadcast_to(w.numpy(), (num_verts,)).copy()


def _distance_and_direction(sdf: SDF, points: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """The field at points (N,) and its unit gradient (N, 3) by central differences of step h."""
    p = torch.from_numpy(points).float()
    with torch.no_grad():
        distance = sdf(p).double().numpy()
        gradient = np.stack([(sdf(p + h * axis) - sdf(p - h * axis)).double().numpy() / (2.0 * h)
                             for axis in torch.eye(3)], axis=1)
    return distance, gradient / np.maximum(np.linalg.norm(gradient, axis=1, keepdims=True), 1e-9)

