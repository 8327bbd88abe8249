"""Bake a textured mesh's colours into another mesh's UV layout (texture transfer by closest point).

Method (`bake_texture`):

1. The destination is rasterised in its own UV space (`texel_surface`): every texel whose centre lies
   inside a UV triangle ("covered") gets its 3D point ``p`` and unit normal ``n``.
2. For each covered texel the closest point on the source surface is found exactly (point-to-triangle,
   Voronoi-region test), by a pruned search that cannot miss the true closest triangle:

   * Every source face is represented by the centroids of its 4^L regular sub-triangles (L per face, so
     every point of the face is within ``r_s`` of one of its samples, ``r_s`` <= twice the median face
     radius); the samples go into a uniform grid and a `cKDTree`.
   * Texels are grouped into cubic cells (edge `CELL_EDGES` x the source's median edge). A cell with
     centre ``c`` and half-diagonal ``rho`` has all its texels within ``rho + d_up`` of the surface,
     ``d_up`` being the distance from ``c`` to its nearest sample (a point on the surface). Any face that
     can win for one of those texels is therefore within ``R = 2 rho + d_up + slack`` of ``c`` and has a
     sample within ``R + r_s``; a scan of the grid cells around ``c`` lists exactly those faces
     (compiled, numba), sorted by the lower bound ``|c - centroid| - face radius``.
   * A compiled loop (numba, chunks of texels on a few threads) walks each texel's list, starting from
     the previous texel's winner (raster order is coherent), skips faces whose bounding sphere is
     already too far, and stops once the sorted bound says no later face can matter.

3. Thin features (lips, ears, eyelids): when the destination texel sits between two sheets of the source,
   the nearest sheet may be the wrong one. Rule: let ``d_min`` be the distance to the closest source
   face overall. Among faces whose geometric normal agrees with the texel's normal (cosine > 0) and whose
   distance is at most ``d_min + normal_slack``, the closest wins; if there is none, the closest face
   overall wins. ``normal_slack`` defaults to 0.5 % of the source's largest bounding-box side (the wrap's
   tolerance is of that order). Source faces must be wound counter-clockwise seen from outside.
4. The source UV at the closest point is the barycentric blend of its face's ``uv_faces`` corners, and the
   colour is a bilinear sample of the source texture there (`sample_bilinear`, clamped at the border).
   Bilinear taps at the source's own chart borders reach into its gutters, so the source texture should
   have filled gutters (as `combine_views(fill_unseen=True)` / `bake_texture` produce).
5. Gutters: every texel that is not covered takes the colour of the nearest covered texel (Euclidean
   distance transform) when it lies within ``dilate`` texels of one (default: no limit, i.e. the whole
   image is filled); farther texels get the mean covered colour. So no texel is left black and bilinear
   or mip lookups at seams never blend in an unfilled colour.

Everything runs on the CPU (numpy/numba/scipy); the result tensors go to the destination's device.
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit
from scipy import ndimage
from scipy.spatial import cKDTree

from representations.render.texel import texel_surface
from representations.render.texture import sample_bilinear

from .core import Mesh

log = logging.getLogger("headfit")

DEFAULT_SLACK_FRACTION = 0.005
"""Default ``normal_slack`` as a fraction of the source's largest bounding-box side."""
MAX_SUBDIVISION = 5
"""At most 4^5 samples per source face (faces far larger than the median are rare)."""
CELL_EDGES = 2.0
"""Edge of the texel-grouping cells in source median edge lengths."""
GRID_MAX = 128
"""At most this many cells a side in the grid over source samples."""
CHUNK_TEXELS = 262_144
"""Texels per compiled-search task (one task per thread at a time)."""


@dataclass
class BakeResult:
    """A baked texture in the destination's UV layout.

    Attributes:
        texture: (S, S, 3) float in [0, 1], rows as in `core.py` (row 0 = v 1); every texel filled.
        covered: (S, S) bool, texel centre inside some UV triangle of the destination.
        distance: (S, S) float, distance from the texel's 3D point to where its colour was taken
            (0 outside ``covered``).
        seconds: wall-clock time of the bake.
    """

    texture: torch.Tensor
    covered: torch.Tensor
    distance: torch.Tensor
    seconds: float


@dataclass
class _SourceIndex:
    """Source triangles for the closest-point search (float64 / int64 numpy).

    tri (F, 3, 3) corners; normal (F, 3) unit geometric normals; centre (F, 3) centroids; radius (F,)
    largest centroid-corner distance; face_uv (F, 3, 2) corner UVs; samples (K, 3) sub-triangle centroids
    with their face sample_face (K,) and a cKDTree over them; sample_radius: the largest sub-triangle
    radius; edge: median edge length.
    """

    tri: np.ndarray
    normal: np.ndarray
    centre: np.ndarray
    radius: np.ndarray
    face_uv: np.ndarray
    samples: np.ndarray
    sample_face: np.ndarray
    tree: cKDTree
    sample_radius: float
    edge: float


@dataclass
class _Candidates:
    """Per-cell candidate faces in CSR form: cell k owns faces[offsets[k]:offsets[k+1]], ascending in key
    (a lower bound of the face's distance to the cell centre). cell_of (N,) each point's cell, centre (C, 3)."""

    cell_of: np.ndarray
    centre: np.ndarray
    offsets: np.ndarray
    faces: np.ndarray
    keys: np.ndarray


def bake_texture(destination: Mesh, source: Mesh, size: int, *, max_distance: float | None = None,
                 dilate: int | None = None, normal_slack: float | None = None) -> BakeResult:
    """Re-express ``source``'s texture in ``destination``'s UV layout at ``size`` x ``size`` texels.

    Args:
        destination: mesh with ``uv``/``uv_faces`` (its texture, if any, is ignored).
        source: mesh with ``uv``, ``uv_faces`` and ``texture`` (H, W, 3).
        max_distance: texels farther than this from the source still get the nearest colour; their
            count is logged (see ``BakeResult.distance`` for where they are).
        dilate: gutter fill width in texels (None: fill the whole image from the nearest covered texel).
        normal_slack: how much farther a normal-agreeing source face may be than the closest one and
            still win (module docstring, step 3); None: 0.5 % of the source's largest extent.
    Raises:
        ValueError: missing UVs/texture, ``size`` < 2, negative options, or no texel covered.
    """
    start = time.perf_counter()
    _check_inputs(destination, source, size, max_distance, dilate, normal_slack)
    size = int(size)
    dest, src = destination.detach().to("cpu"), source.detach().to("cpu")
    assert dest.uv is not None
    surface = texel_surface(dest.verts, dest.faces, dest.uv, dest.uv_faces, size)
    covered = surface.valid
    if not bool(covered.any()):
        raise ValueError(f"bake_texture: the destination's UV triangles cover no texel centre at size {size}")
    points = surface.position[covered].to(torch.float64).numpy()
    normals = surface.normal[covered].to(torch.float64).numpy()
    uv, dist = closest_source_uv(points, normals, src, normal_slack)
    colour = _sample_source(src.texture, uv)
    texture, distance = _assemble(colour, dist, covered, None if dilate is None else int(dilate))
    _report_far(dist, max_distance)
    device = destination.verts.device
    seconds = time.perf_counter() - start
    return BakeResult(texture.to(device), covered.to(device), distance.to(device), seconds)


def _check_inputs(destination: Mesh, source: Mesh, size: int, max_distance: float | None, dilate: int | None,
                  normal_slack: float | None) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 2:
        raise ValueError(f"bake_texture: size must be an integer >= 2, got {size!r}")
    if destination.uv is None or destination.uv_faces is None:
        raise ValueError("bake_texture: the destination mesh has no UV layout (uv/uv_faces); unwrap it first")
    if source.uv is None or source.uv_faces is None:
        raise ValueError("bake_texture: the source mesh has no UV layout (uv/uv_faces)")
    if source.texture is None:
        raise ValueError("bake_texture: the source mesh has no texture to bake")
    if source.num_faces == 0 or destination.num_faces == 0:
        raise ValueError("bake_texture: source and destination need at least one face each")
    if max_distance is not None and not max_distance >= 0:
        raise ValueError(f"bake_texture: max_distance must be >= 0, got {max_distance!r}")
    if dilate is not None and (not isinstance(dilate, (int, np.integer)) or isinstance(dilate, bool) or dilate < 0):
        raise ValueError(f"bake_texture: dilate must be None or an integer >= 0, got {dilate!r}")
    if normal_slack is not None and not normal_slack >= 0:
        raise ValueError(f"bake_texture: normal_slack must be >= 0, got {normal_slack!r}")


def _default_slack(index: _SourceIndex) -> float:
    extent = index.tri.reshape(-1, 3).max(axis=0) - index.tri.reshape(-1, 3).min(axis=0)
    return DEFAULT_SLACK_FRACTION * float(extent.max())


def _source_index(source: Mesh) -> _SourceIndex:
    """Triangles, bounding spheres, corner UVs and the sample tree of ``source`` (which has UVs)."""
    assert source.uv is not None and source.uv_faces is not None
    verts = source.verts.to(torch.float64).numpy()
    tri = verts[source.faces.numpy()]  # (F, 3, 3)
    centre = tri.mean(axis=1)
    radius = np.linalg.norm(tri - centre[:, None], axis=2).max(axis=1)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-300)
    edge = float(np.median(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2)))
    face_uv = source.uv.to(torch.float64).numpy()[source.uv_faces.numpy()]  # (F, 3, 2)
    samples, sample_face, sample_radius = _face_samples(tri, radius)
    return _SourceIndex(tri, normal, centre, radius, face_uv, samples, sample_face, cKDTree(samples), sample_radius,
                        max(edge, 1e-12))


def _face_samples(tri: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centroids of each face's 4^L regular sub-triangles, L per face so that the sub-triangle radius
    (``radius / 2^L``) is at most twice the median face radius (capped at `MAX_SUBDIVISION`).

    Returns samples (K, 3), their face (K,), and the largest sub-triangle radius.
    """
    target = 2.0 * max(float(np.median(radius)), 1e-300)
    level = np.clip(np.ceil(np.log2(np.maximum(radius / target, 1.0))), 0, MAX_SUBDIVISION).astype(np.int64)
    points, owners = [], []
    for lv in np.unique(level):
        faces = np.nonzero(level == lv)[0]
        weights = _sub_centroid_weights(int(lv))  # (M, 3)
        points.append(np.einsum("mk,fkd->fmd", weights, tri[faces]).reshape(-1, 3))
        owners.append(np.repeat(faces, len(weights)))
    sample_radius = float((radius / 2.0 ** level).max())
    return np.concatenate(points), np.concatenate(owners), sample_radius


def _sub_centroid_weights(level: int) -> np.ndarray:
    """(4^level, 3) barycentric weights of the sub-triangle centroids of a triangle cut into n = 2^level
    segments per side (n^2 upward and downward sub-triangles)."""
    n = 2 ** level
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    up = (i + j) <= n - 1
    down = (i + j) <= n - 2
    a = np.concatenate([(i[up] + 1 / 3) / n, (i[down] + 2 / 3) / n])
    b = np.concatenate([(j[up] + 1 / 3) / n, (j[down] + 2 / 3) / n])
    return np.stack([1.0 - a - b, a, b], axis=1)


def closest_source_uv(points: np.ndarray, normals: np.ndarray, source: Mesh,
                      normal_slack: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For query points (N, 3) float64 with unit normals (N, 3): the UV (N, 2) of the chosen closest point
    on ``source`` (a CPU mesh with UVs) and its distance (N,), by the rule in the module docstring (steps
    2-4; ``normal_slack`` as in `bake_texture`)."""
    index = _source_index(source)
    slack = _default_slack(index) if normal_slack is None else float(normal_slack)
    points = np.ascontiguousarray(points, np.float64)
    normals = np.ascontiguousarray(normals, np.float64)
    cands = _cell_candidates(points, index, slack)
    n = len(points)
    uv = np.empty((n, 2), np.float64)
    dist = np.empty(n, np.float64)
    shared = (cands.centre, cands.offsets, cands.faces, cands.keys, index.tri, index.normal, index.centre,
              index.radius, index.face_uv, slack)

    def run(lo: int) -> None:
        part = slice(lo, min(lo + CHUNK_TEXELS, n))
        _search(points[part], normals[part], cands.cell_of[part], *shared, uv[part], dist[part])

    threads = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(0, n, CHUNK_TEXELS)))
    return uv, dist


def _cell_candidates(points: np.ndarray, index: _SourceIndex, slack: float) -> _Candidates:
    """Group points into cubic cells and list, per cell, every face that can be the answer for one of
    its points (see the module docstring, step 2)."""
    cell_size = CELL_EDGES * index.edge
    cell_of, centre = _cells(points, cell_size)
    rho = 0.5 * math.sqrt(3.0) * cell_size
    d_up, _ = index.tree.query(centre, k=1)
    reach = (2.0 * rho + d_up + slack) * (1.0 + 1e-9) + 1e-12  # (C,): any useful face is this close to the centre
    grid = _grid(index.samples, index.edge)
    offsets, faces, keys = _gather(centre, reach, index.sample_radius, *grid, index.samples, index.sample_face,
                                   index.centre, index.radius)
    return _Candidates(cell_of, centre, offsets, faces, keys)


def _cells(points: np.ndarray, cell_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubic cells of edge ``cell_size`` holding points (N, 3): each point's cell (N,) and the occupied
    cells' centres (C, 3)."""
    low = np.floor(points.min(axis=0) / cell_size)
    dims = (np.floor(points.max(axis=0) / cell_size) - low + 1).astype(np.int64)
    if int(np.prod(dims.astype(np.float64))) <= 4 * len(points) + 1_000_000:
        cell_of, ijk = _cells_dense(points, cell_size, low, dims)
    else:  # sparse (points spread far apart): sort instead of a dense lookup table
        key = (np.floor(points / cell_size) - low).astype(np.int64)
        ijk, cell_of = np.unique(key, axis=0, return_inverse=True)
    return cell_of.reshape(-1), (ijk + low + 0.5) * cell_size


@njit(cache=True, nogil=True)
def _cells_dense(points, cell_size, low, dims):
    """`_cells` with a dense table over the cells' bounding box: cell of each point (N,) and the occupied
    cells' integer coordinates (C, 3) relative to ``low``, in order of first appearance."""
    table = np.full(dims[0] * dims[1] * dims[2], -1, np.int64)
    cell_of = np.empty(points.shape[0], np.int64)
    ijk = np.empty((points.shape[0], 3), np.int64)
    count = 0
    for t in range(points.shape[0]):
        i = min(max(int(math.floor(points[t, 0] / cell_size) - low[0]), 0), dims[0] - 1)
        j = min(max(int(math.floor(points[t, 1] / cell_size) - low[1]), 0), dims[1] - 1)
        k = min(max(int(math.floor(points[t, 2] / cell_size) - low[2]), 0), dims[2] - 1)
        flat = (i * dims[1] + j) * dims[2] + k
        if table[flat] < 0:
            table[flat] = count
            ijk[count, 0], ijk[count, 1], ijk[count, 2] = i, j, k
            count += 1
        cell_of[t] = table[flat]
    return cell_of, ijk[:count].copy()


def _grid(samples: np.ndarray, spacing: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """A uniform grid over samples (K, 3): origin (3,), cell edge, dims (3,), CSR start (G + 1,) and the
    sample indices (K,) ordered by cell. At most `GRID_MAX` cells a side."""
    origin = samples.min(axis=0)
    extent = float((samples.max(axis=0) - origin).max())
    edge = max(spacing, extent / GRID_MAX, 1e-12)
    ijk = np.minimum(((samples - origin) / edge).astype(np.int64), GRID_MAX)
    dims = ijk.max(axis=0) + 1
    flat = (ijk[:, 0] * dims[1] + ijk[:, 1]) * dims[2] + ijk[:, 2]
    order = np.argsort(flat, kind="stable")
    start = np.zeros(int(np.prod(dims)) + 1, np.int64)
    np.cumsum(np.bincount(flat, minlength=int(np.prod(dims))), out=start[1:])
    return origin, edge, dims, start, order


@njit(cache=True, nogil=True)
def _gather(centre, reach, sample_radius, origin, edge, dims, start, order, samples, sample_face, fcentre, fradius):
    """Per cell centre (C, 3): the faces f with |centre - fcentre[f]| - fradius[f] <= reach (C,), found via
    their samples within reach + sample_radius, sorted by that lower bound. Returns CSR offsets (C + 1,),
    faces (M,), keys (M,)."""
    n_cells = centre.shape[0]
    offsets = np.zeros(n_cells + 1, np.int64)
    faces = np.empty(max(64 * n_cells, 1024), np.int64)
    keys = np.empty(faces.shape[0], np.float64)
    mark = np.full(fcentre.shape[0], -1, np.int64)
    count = 0
    for k in range(n_cells):
        radius = reach[k] + sample_radius
        lo = np.empty(3, np.int64)
        hi = np.empty(3, np.int64)
        for a in range(3):
            lo[a] = max(int(math.floor((centre[k, a] - radius - origin[a]) / edge)), 0)
            hi[a] = min(int(math.floor((centre[k, a] + radius - origin[a]) / edge)), dims[a] - 1)
        for i in range(lo[0], hi[0] + 1):
            for j in range(lo[1], hi[1] + 1):
                for m in range(lo[2], hi[2] + 1):
                    g = (i * dims[1] + j) * dims[2] + m
                    for q in range(start[g], start[g + 1]):
                        s = order[q]
                        f = sample_face[s]
                        if mark[f] == k:
                            continue
                        dx, dy, dz = samples[s, 0] - centre[k, 0], samples[s, 1] - centre[k, 1], samples[s, 2] - centre[k, 2]
                        if dx * dx + dy * dy + dz * dz > radius * radius:
                            continue
                        mark[f] = k
                        ex, ey, ez = fcentre[f, 0] - centre[k, 0], fcentre[f, 1] - centre[k, 1], fcentre[f, 2] - centre[k, 2]
                        lower = math.sqrt(ex * ex + ey * ey + ez * ez) - fradius[f]
                        if lower > reach[k]:
                            continue
                        if count == faces.shape[0]:
                            faces = np.concatenate((faces, np.empty_like(faces)))
                            keys = np.concatenate((keys, np.empty_like(keys)))
                        faces[count] = f
                        keys[count] = lower
                        count += 1
        first = offsets[k]
        rank = np.argsort(keys[first:count])
        faces[first:count] = faces[first:count][rank]
        keys[first:count] = keys[first:count][rank]
        offsets[k + 1] = count
    return offsets, faces[:count].copy(), keys[:count].copy()


@njit(cache=True, nogil=True, error_model="numpy")
def _closest_on_triangle(p, a, b, c):
    """Barycentrics (wa, wb, wc) of the point of triangle (a, b, c) closest to p (Voronoi-region test:
    vertex, edge or face region; a zero-length edge or zero area sends it to `_closest_on_degenerate`)."""
    ab0, ab1, ab2 = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    ac0, ac1, ac2 = c[0] - a[0], c[1] - a[1], c[2] - a[2]
    ap0, ap1, ap2 = p[0] - a[0], p[1] - a[1], p[2] - a[2]
    d1 = ab0 * ap0 + ab1 * ap1 + ab2 * ap2
    d2 = ac0 * ap0 + ac1 * ap1 + ac2 * ap2
    if d1 <= 0.0 and d2 <= 0.0:
        return 1.0, 0.0, 0.0
    bp0, bp1, bp2 = p[0] - b[0], p[1] - b[1], p[2] - b[2]
    d3 = ab0 * bp0 + ab1 * bp1 + ab2 * bp2
    d4 = ac0 * bp0 + ac1 * bp1 + ac2 * bp2
    if d3 >= 0.0 and d4 <= d3:
        return 0.0, 1.0, 0.0
    vc = d1 * d4 - d3 * d2
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        if d1 - d3 <= 0.0:
            return _closest_on_degenerate(p, a, b, c)
        t = d1 / (d1 - d3)
        return 1.0 - t, t, 0.0
    cp0, cp1, cp2 = p[0] - c[0], p[1] - c[1], p[2] - c[2]
    d5 = ab0 * cp0 + ab1 * cp1 + ab2 * cp2
    d6 = ac0 * cp0 + ac1 * cp1 + ac2 * cp2
    if d6 >= 0.0 and d5 <= d6:
        return 0.0, 0.0, 1.0
    vb = d5 * d2 - d1 * d6
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        if d2 - d6 <= 0.0:
            return _closest_on_degenerate(p, a, b, c)
        t = d2 / (d2 - d6)
        return 1.0 - t, 0.0, t
    va = d3 * d6 - d5 * d4
    if va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
        if (d4 - d3) + (d5 - d6) <= 0.0:
            return _closest_on_degenerate(p, a, b, c)
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        return 0.0, 1.0 - t, t
    denom = va + vb + vc
    if denom <= 0.0:
        return _closest_on_degenerate(p, a, b, c)
    v = vb / denom
    w = vc / denom
    return 1.0 - v - w, v, w


@njit(cache=True, nogil=True, error_model="numpy")
def _closest_on_degenerate(p, a, b, c):
    """Barycentrics of the point closest to p on the three sides of a (near-)degenerate triangle."""
    best, wa, wb, wc = np.inf, 1.0, 0.0, 0.0
    for k in range(3):
        s = a if k == 0 else (b if k == 1 else c)
        e = b if k == 0 else (c if k == 1 else a)
        d = (e[0] - s[0], e[1] - s[1], e[2] - s[2])
        length2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        t = 0.0
        if length2 > 0.0:
            t = ((p[0] - s[0]) * d[0] + (p[1] - s[1]) * d[1] + (p[2] - s[2]) * d[2]) / length2
            t = min(max(t, 0.0), 1.0)
        q = (s[0] + t * d[0] - p[0], s[1] + t * d[1] - p[1], s[2] + t * d[2] - p[2])
        dist2 = q[0] * q[0] + q[1] * q[1] + q[2] * q[2]
        if dist2 < best:
            best = dist2
            w = (1.0 - t, t, 0.0) if k == 0 else ((0.0, 1.0 - t, t) if k == 1 else (t, 0.0, 1.0 - t))
            wa, wb, wc = w
    return wa, wb, wc


@njit(cache=True, nogil=True, error_model="numpy")
def _search(points, normals, cell_of, centre, offsets, faces, keys, tri, normal, fcentre, fradius, face_uv, slack,
            out_uv, out_dist):
    """The compiled per-point walk over its cell's candidates (module docstring, steps 2-4): writes the
    source UV (N, 2) of the chosen closest point and its distance (N,)."""
    previous = -1
    for t in range(points.shape[0]):
        p = points[t]
        cell = cell_of[t]
        dx, dy, dz = p[0] - centre[cell, 0], p[1] - centre[cell, 1], p[2] - centre[cell, 2]
        from_centre = math.sqrt(dx * dx + dy * dy + dz * dz)
        best_any, face_any, wa_any, wb_any, wc_any = np.inf, -1, 1.0, 0.0, 0.0
        best_fac, face_fac, wa_fac, wb_fac, wc_fac = np.inf, -1, 1.0, 0.0, 0.0
        for m in range(offsets[cell] - 1, offsets[cell + 1]):
            limit = min(best_fac, best_any + slack)
            if m < offsets[cell]:  # warm start: the previous point's face first (any face is a valid bound)
                if previous < 0:
                    continue
                f = previous
            else:
                if keys[m] - from_centre > limit:
                    break  # keys ascend: no later face can be close enough to matter
                f = faces[m]
                if f == previous:
                    continue
            ex, ey, ez = p[0] - fcentre[f, 0], p[1] - fcentre[f, 1], p[2] - fcentre[f, 2]
            lower = math.sqrt(ex * ex + ey * ey + ez * ez) - fradius[f]
            cosine = normals[t, 0] * normal[f, 0] + normals[t, 1] * normal[f, 1] + normals[t, 2] * normal[f, 2]
            if lower > (limit if cosine > 0.0 else best_any):
                continue
            wa, wb, wc = _closest_on_triangle(p, tri[f, 0], tri[f, 1], tri[f, 2])
            qx = wa * tri[f, 0, 0] + wb * tri[f, 1, 0] + wc * tri[f, 2, 0] - p[0]
            qy = wa * tri[f, 0, 1] + wb * tri[f, 1, 1] + wc * tri[f, 2, 1] - p[1]
            qz = wa * tri[f, 0, 2] + wb * tri[f, 1, 2] + wc * tri[f, 2, 2] - p[2]
            d = math.sqrt(qx * qx + qy * qy + qz * qz)
            if d < best_any:
                best_any, face_any, wa_any, wb_any, wc_any = d, f, wa, wb, wc
            if cosine > 0.0 and d < best_fac:
                best_fac, face_fac, wa_fac, wb_fac, wc_fac = d, f, wa, wb, wc
        if face_fac >= 0 and best_fac <= best_any + slack:
            face_any, best_any, wa_any, wb_any, wc_any = face_fac, best_fac, wa_fac, wb_fac, wc_fac
        out_dist[t] = best_any
        previous = face_any
        for a in range(2):
            out_uv[t, a] = wa_any * face_uv[face_any, 0, a] + wb_any * face_uv[face_any, 1, a] + wc_any * face_uv[face_any, 2, a]


def _sample_source(texture: torch.Tensor | None, uv: np.ndarray) -> torch.Tensor:
    """(N, 3) bilinear colours of the source texture (H, W, 3) at uv (N, 2)."""
    assert texture is not None
    level = texture.to(torch.float32).permute(2, 0, 1)[None]
    return sample_bilinear(level, torch.from_numpy(uv).to(torch.float32)).clamp(0.0, 1.0)


def _assemble(colour: torch.Tensor, dist: np.ndarray, covered: torch.Tensor,
              dilate: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter per-texel colours (N, 3) and distances (N,) into (S, S, 3) and (S, S) images and fill the
    gutters."""
    size = covered.shape[0]
    texture = torch.zeros(size, size, 3, dtype=torch.float32)
    texture[covered] = colour
    distance = torch.zeros(size, size, dtype=torch.float32)
    distance[covered] = torch.from_numpy(dist).to(torch.float32)
    return fill_gutters(texture, covered, dilate), distance


def fill_gutters(texture: torch.Tensor, valid: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """Texels outside ``valid`` (H, W) take the nearest valid texel's colour (exact Euclidean distance
    transform) when within ``width`` texels of one (None: no limit), else the mean valid colour.
    texture (H, W, C) on the CPU; ``valid`` must not be empty."""
    valid_np = valid.cpu().numpy()
    if valid_np.all():
        return texture
    height, width_px = valid_np.shape
    nearest = np.empty((2, height, width_px), np.int32)
    distance = ndimage.distance_transform_edt(~valid_np, return_distances=width is not None, return_indices=True,
                                              indices=nearest)
    flat = torch.from_numpy((nearest[0] * width_px + nearest[1]).reshape(-1))
    filled = texture.reshape(height * width_px, -1).index_select(0, flat).view(texture.shape)
    if width is not None:
        far = torch.from_numpy(distance > width)
        filled[far] = texture[valid.cpu()].mean(dim=0)
    return filled


def _report_far(dist: np.ndarray, max_distance: float | None) -> None:
    if max_distance is None:
        return
    far = int((dist > max_distance).sum())
    if far:
        log.warning("bake_texture: %d of %d texels (%.2f %%) are farther than %g from the source (max %.4g); "
                    "they got the nearest colour", far, len(dist), 100.0 * far / len(dist), max_distance, float(dist.max()))
