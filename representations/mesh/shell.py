"""The hair volume of a sculpted head as its own closed mesh: the part of the sculpt that lies off the skin.

Inputs are two closed triangle meshes in the same world frame: the sculpt S (the fitted head, hair included) and
the skin K (the parametric head, registered onto S wherever S is skin). Each may have several connected parts:
outward-facing parts are solids (their union counts), inward-facing ones are cavities carved out of them. The
result is the region inside S and outside K where that region is thicker than t = ``min_thickness``, as a closed,
outward-facing mesh whose outer surface is S's own and which reaches ``sink`` below the skin's surface, so that
no gap shows between hair and scalp.

Method, on a grid over S's bounding box (spacing h = longest side / ``resolution``; fields are signed distances,
negative inside):

1. s (to S) and k (to K) near their surfaces (`solid_field`). Each triangle visits the grid points within
   `SCAN_BAND_CELLS`·h of it (exact point–triangle distance; the sign from the closest feature's angle-weighted
   pseudonormal, as in `representations.dmtet.mesh_signed_distance`); where a wider band is needed (k up to
   t + h outside the skin, both down to about sink + h inside) it grows layer by layer, each new point measured
   against its neighbours' nearest triangles. Points off the band only need a side: they fall into connected
   regions that touch no surface, and each region takes the side its band neighbours vote for. No point is ever
   far from a surface search, which is what keeps this to a couple of seconds at resolution 160.
2. The core: c = max(s, t − k) < 0: inside S and more than t outside K (and above ``floor`` when given).
3. Opening-like growth: d = distance to the core (Euclidean distance transform to the nearest core point q,
   plus c(q) for where the core's surface lies in q's cell). The hair is where
   F = max(s, −sink − k, ε − (k − s), d − reach) < 0, reach = t + sink + h, ε = `EDGE_CELLS`·h: inside S;
   above the skin sunk by ``sink`` (under thick hair the shell reaches down into the skin); where S lies at least
   ε off the skin (k − s is the local thickness, so the shell never runs along bare skin, where two coincident
   surfaces would flicker); and within reach of the core (thin sculpt away from the hair stays skin).
   F is S's own distance wherever S bounds the hair, so the outer hair surface follows the sculpt exactly.
4. Outside regions enclosed by hair (voids) are filled; marching cubes of F on the box around the core;
   pieces with less volume than ``min_volume_fraction`` of the largest are dropped; faces turned outwards;
   decimated to ``max_faces`` and checked closed (`decimate_closed`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import marching_cubes

from representations.dmtet.mesh_sdf import mesh_signed_distance

from .cleanup import decimate, remove_unreferenced_vertices
from .convert import mesh_to_trimesh
from .core import Mesh
from .errors import MeshGeometryError
from .uv_unwrap import UnwrapOptions, unwrap_uv
from .validate import check_face_indices

log = logging.getLogger("headfit")

PAD_CELLS = 2
"""Grid points between the sculpt's bounding box and the grid's border (beyond the band)."""
SCAN_BAND_CELLS = 1.5
"""Distances are found triangle by triangle within this many grid spacings of a surface (marching cubes needs
1, the inside/outside split 0.5), and grown from there where a wider band is needed."""
DECIMATE_AGGRESSIVENESS = (7.0, 4.0, 2.0)
"""fast-simplification's aggressiveness, tried in turn until the decimated shell is closed."""
EDGE_CELLS = 0.5
"""The shell ends where the sculpt lies less than this many grid spacings off the skin, so none of its surface
lies on the skin's (coincident surfaces flicker when both are drawn)."""
SINK_CELLS = 1.5
"""Default ``sink``: how far the shell reaches into the skin, in grid spacings."""


@dataclass
class ShellSettings:
    min_thickness: float
    """World units: sculpt that lies less than this outside the skin is skin, not hair."""
    resolution: int = 160
    """Grid cells along the longest side of the sculpt's bounding box."""
    min_volume_fraction: float = 0.02
    """Pieces with less volume than this fraction of the largest are dropped."""
    sink: float | None = None
    """World units the shell reaches below the skin's surface; None: `SINK_CELLS` grid spacings."""
    floor: float | None = None
    """World height (y) below which nothing counts as hair's core (e.g. a sculpt's neck below the skin's cut)."""
    max_faces: int | None = 60_000
    """Decimate the shell to about this many faces (None: keep marching cubes' full resolution)."""

    def __post_init__(self) -> None:
        if not self.min_thickness > 0:
            raise ValueError(f"ShellSettings.min_thickness must be positive, got {self.min_thickness}")
        if self.resolution < 8:
            raise ValueError(f"ShellSettings.resolution must be at least 8, got {self.resolution}")
        if not 0 <= self.min_volume_fraction < 1:
            raise ValueError(f"ShellSettings.min_volume_fraction must be in [0, 1), got {self.min_volume_fraction}")
        if self.sink is not None and not self.sink >= 0:
            raise ValueError(f"ShellSettings.sink must be >= 0, got {self.sink}")
        if self.max_faces is not None and self.max_faces < 1000:
            raise ValueError(f"ShellSettings.max_faces must be at least 1000 (or None), got {self.max_faces}")


@dataclass(frozen=True)
class Grid:
    """Points ``origin + spacing · (i, j, k)`` for 0 <= (i, j, k) < shape; axes x, y, z."""

    origin: np.ndarray
    spacing: float
    shape: tuple[int, int, int]

    @staticmethod
    def around(low: np.ndarray, high: np.ndarray, resolution: int, pad: int) -> Grid:
        spacing = float((high - low).max()) / resolution
        cells = np.ceil((high - low) / spacing).astype(int) + 2 * pad + 1
        return Grid(low - pad * spacing, spacing, (int(cells[0]), int(cells[1]), int(cells[2])))

    def sub(self, start: np.ndarray, stop: np.ndarray) -> Grid:
        """The grid's points start <= (i, j, k) < stop (clipped to the grid)."""
        start = np.clip(start, 0, self.shape).astype(int)
        stop = np.clip(stop, start, self.shape).astype(int)
        size = stop - start
        return Grid(self.origin + start * self.spacing, self.spacing, (int(size[0]), int(size[1]), int(size[2])))

    def index_box(self, low: np.ndarray, high: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Index range (start, stop) of the points within ``margin`` of the world box [low, high]."""
        start = np.floor((low - margin - self.origin) / self.spacing).astype(int)
        stop = np.ceil((high + margin - self.origin) / self.spacing).astype(int) + 1
        return np.clip(start, 0, self.shape), np.clip(stop, 0, self.shape)

    def axis(self, dim: int) -> np.ndarray:
        return self.origin[dim] + self.spacing * np.arange(self.shape[dim])


def outer_shell(sculpt: Mesh, skin: Mesh, settings: ShellSettings) -> Mesh | None:
    """The closed, outward-facing mesh of the region inside ``sculpt`` and outside ``skin`` where that region is
    thicker than ``settings.min_thickness``, reaching ``sink`` into the skin (see the module docstring), on
    ``sculpt``'s device; None when there is no such region. Both inputs must be closed (ValueError otherwise)."""
    sculpt_parts, skin_parts = closed_parts_of(sculpt, "sculpt"), closed_parts_of(skin, "skin")
    verts = sculpt.verts.detach().double().cpu().numpy()
    grid = Grid.around(verts.min(0), verts.max(0), settings.resolution, PAD_CELLS + math.ceil(SCAN_BAND_CELLS))
    h, t = grid.spacing, settings.min_thickness
    sink = SINK_CELLS * h if settings.sink is None else settings.sink
    band = SCAN_BAND_CELLS * h
    s = solid_field(sculpt_parts, grid, max(band, sink + 2 * h), band)
    k = solid_field(skin_parts, grid, max(band, sink + h), max(band, t + h))
    core = (s < 0) & (k > t)
    if settings.floor is not None:
        core &= (grid.axis(1) > settings.floor)[None, :, None]
    shell = hair_surface(s, k, core, grid, t, sink) if core.any() else None
    if shell is None:
        return None
    shell = keep_large_pieces(shell, settings.min_volume_fraction)
    if settings.max_faces is not None:
        shell = decimate_closed(shell, settings.max_faces)
    check_closed_outward(shell, "the hair shell")
    return shell.to(sculpt.device)


def shell_uv(mesh: Mesh, resolution: int = 1024, options: UnwrapOptions | None = None) -> Mesh:
    """The shell with its own UV layout (`unwrap_uv`: xatlas in a worker process), packed for a ``resolution``²
    texture. A shell with more than ``options.max_faces`` faces is first decimated with `decimate_closed`, so
    it stays closed; otherwise the geometry is unchanged. Raises `UVUnwrapError` when xatlas fails."""
    options = options or UnwrapOptions()
    if mesh.num_faces > options.max_faces:
        mesh = decimate_closed(mesh, options.max_faces)
    return unwrap_uv(mesh, resolution, options)


# --- inputs -------------------------------------------------------------------------------------------------


def closed_parts_of(mesh: Mesh, name: str) -> tuple[list[Mesh], list[Mesh]]:
    """The mesh's connected parts (faces joined through shared vertices), each checked closed: those facing
    outwards (solids) and those facing inwards (cavities inside a solid); ValueError (`MeshGeometryError` for
    degenerate input) naming ``name`` when a part is open or the whole faces inwards."""
    check_input(mesh, name)
    faces = mesh.faces.cpu().numpy().astype(np.int64)
    verts = mesh.verts.detach().cpu().double()
    labels = face_components(faces, mesh.num_verts)
    volumes = signed_volumes(verts.numpy(), faces, labels)
    if not volumes.sum() > 0:
        raise ValueError(f"{name}'s faces face inwards (its volume is {volumes.sum():.3g}); expected counter-clockwise "
                         "seen from outside")
    solids: list[Mesh] = []
    cavities: list[Mesh] = []
    for label in range(len(volumes)):
        used, local = np.unique(faces[labels == label], return_inverse=True)
        part = Mesh(verts[torch.from_numpy(used)], torch.from_numpy(local.reshape(-1, 3)))
        problem = closure_problem(part)
        if problem:
            raise ValueError(f"{name if len(volumes) == 1 else f'{name} (part {label})'} is not a closed surface: {problem}")
        (solids if volumes[label] > 0 else cavities).append(part)
    return solids, cavities


def check_input(mesh: Mesh, name: str) -> None:
    """`MeshGeometryError` (a ValueError) when the mesh cannot be a closed surface at all: too few triangles,
    face indices out of range, or non-finite vertices."""
    if mesh.num_faces < 4:
        raise MeshGeometryError(f"{name} has {mesh.num_faces} triangles: a closed surface needs at least 4")
    check_face_indices(mesh.faces, mesh.num_verts, name)
    if not bool(torch.isfinite(mesh.verts).all()):
        raise MeshGeometryError(f"{name} has non-finite vertex coordinates (NaN or inf)")


def face_components(faces: np.ndarray, num_verts: int) -> np.ndarray:
    """(F,) label of each face's connected component (faces joined through shared vertices)."""
    rows, cols = np.r_[faces[:, 0], faces[:, 1]], np.r_[faces[:, 1], faces[:, 2]]
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(num_verts, num_verts))
    _, vertex_label = connected_components(graph, directed=False)
    _, face_label = np.unique(vertex_label[faces[:, 0]], return_inverse=True)
    return face_label.reshape(-1)


def check_closed_outward(mesh: Mesh, name: str) -> None:
    """ValueError unless every edge is used exactly twice, once in each direction, and the volume is positive."""
    problem = closure_problem(mesh)
    if problem:
        raise ValueError(f"{name} is not a closed surface: {problem}")
    faces = mesh.faces.cpu().numpy().astype(np.int64)
    volume = signed_volumes(mesh.verts.detach().double().cpu().numpy(), faces, np.zeros(len(faces), dtype=np.int64))[0]
    if not volume > 0:
        raise ValueError(f"{name}'s faces face inwards (its volume is {volume:.3g}); expected counter-clockwise "
                         "seen from outside")


def closure_problem(mesh: Mesh) -> str:
    """What keeps the mesh from being closed and consistently oriented ('' when nothing does)."""
    faces = mesh.faces.cpu().numpy().astype(np.int64)
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    code = half[:, 0] * mesh.num_verts + half[:, 1]
    reverse = half[:, 1] * mesh.num_verts + half[:, 0]
    repeated = len(code) - len(np.unique(code))
    open_edges = int((~np.isin(reverse, code)).sum())
    if not (repeated or open_edges):
        return ""
    return (f"{open_edges} edges without an opposite (holes) and {repeated} edges used twice in one direction "
            "(flipped faces or non-manifold edges)")


def signed_volumes(verts: np.ndarray, faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(L,) enclosed volume per face label (positive when the faces face outwards)."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    per_face = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return np.bincount(labels, weights=per_face, minlength=int(labels.max(initial=0)) + 1)


# --- signed distance fields ---------------------------------------------------------------------------------


def solid_field(parts: tuple[list[Mesh], list[Mesh]], grid: Grid, inside: float, outside: float) -> np.ndarray:
    """(X, Y, Z) float32 signed distance of the union of the closed solids less the cavities (`closed_parts_of`)
    at the grid's points: exact from ``inside`` below a surface to ``outside`` above it (both at least
    `SCAN_BAND_CELLS` spacings), truncated beyond, to −(inside + spacing) and outside + spacing. A cavity's own
    field is negative around it, in the solid, so carving it is a maximum."""
    out = np.full(grid.shape, outside + grid.spacing, dtype=np.float32)
    solids, cavities = parts
    for part, carve in [(solid, False) for solid in solids] + [(cavity, True) for cavity in cavities]:
        verts = part.verts.double().numpy()
        start, stop = grid.index_box(verts.min(0), verts.max(0), max(inside, outside) + grid.spacing)
        if (stop <= start).any():
            continue
        cut = tuple(slice(a, b) for a, b in zip(start, stop))
        combine = np.maximum if carve else np.minimum
        out[cut] = combine(out[cut], signed_field(part, grid.sub(start, stop), inside, outside))
    return out


def signed_field(mesh: Mesh, grid: Grid, inside: float, outside: float) -> np.ndarray:
    """(X, Y, Z) float32 truncated signed distance to one closed mesh (see `solid_field`): scanned within
    `SCAN_BAND_CELLS` spacings of the surface (`scan_triangles`), grown from there out to the limits
    (`_grow_band`), and only a side beyond (`inside_off_band`)."""
    verts, faces = mesh.verts.double().numpy(), mesh.faces.numpy().astype(np.int64)
    triangles = np.ascontiguousarray(verts[faces])
    normals = pseudonormals(triangles, faces, len(verts))
    dist2, sign, nearest = scan_triangles(triangles, normals, grid, SCAN_BAND_CELLS * grid.spacing)
    band = SCAN_BAND_CELLS * grid.spacing
    if max(inside, outside) > band:
        frontier = np.flatnonzero(((sign < 0) & (inside > band)) | ((sign > 0) & (outside > band))).astype(np.int64)
        _grow_band(triangles, normals, face_neighbours(faces, len(verts)), grid.origin.astype(np.float64), grid.spacing,
                   inside**2, outside**2, frontier, dist2.reshape(-1), sign.reshape(-1), nearest.reshape(-1),
                   np.array(grid.shape, dtype=np.int64))
    off_band = sign == 0
    values = np.sqrt(np.where(off_band, np.float32(0), dist2)) * sign
    inside_points = inside_off_band(off_band, sign, lambda points: mesh_signed_distance(mesh_to_trimesh(mesh), points) < 0, grid)
    values[off_band] = outside + grid.spacing
    values[inside_points] = -(inside + grid.spacing)
    return values


def pseudonormals(triangles: np.ndarray, faces: np.ndarray, num_verts: int) -> np.ndarray:
    """(F, 7, 3) angle-weighted pseudonormal (Bærentzen & Aanæs 2005) of each face's features, in the layout of
    `_closest_point`: the face, its edges ab, bc, ca (sum of the two faces' normals), its vertices a, b, c (sum
    of the faces' normals weighted by their angle there). Their sign test is exact for closed, oriented meshes."""
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normal = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-300)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, edge_id = np.unique(edges[:, 0] * num_verts + edges[:, 1], return_inverse=True)
    edge_normal = np.zeros((int(edge_id.max()) + 1, 3))
    np.add.at(edge_normal, edge_id.reshape(-1), np.repeat(normal, 3, axis=0))
    vertex_normal = np.zeros((num_verts, 3))
    np.add.at(vertex_normal, faces.reshape(-1), (corner_angles(triangles)[:, :, None] * normal[:, None]).reshape(-1, 3))
    features = [normal[:, None], edge_normal[edge_id.reshape(-1, 3)], vertex_normal[faces]]
    return np.ascontiguousarray(np.concatenate(features, axis=1))


def face_neighbours(faces: np.ndarray, num_verts: int) -> np.ndarray:
    """(F, 3) the face across each edge ab, bc, ca of a closed mesh's faces."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    code = half[:, 0] * num_verts + half[:, 1]
    order = np.argsort(code)
    opposite = order[np.searchsorted(code[order], half[:, 1] * num_verts + half[:, 0])]
    return (opposite // 3).reshape(-1, 3)


def corner_angles(triangles: np.ndarray) -> np.ndarray:
    """(F, 3) interior angle at each corner of (F, 3, 3) triangles."""
    angles = np.empty(triangles.shape[:2])
    for corner in range(3):
        u = triangles[:, (corner + 1) % 3] - triangles[:, corner]
        v = triangles[:, (corner + 2) % 3] - triangles[:, corner]
        cosine = np.einsum("ij,ij->i", u, v) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-300)
        angles[:, corner] = np.arccos(np.clip(cosine, -1.0, 1.0))
    return angles


def inside_off_band(off_band: np.ndarray, sign: np.ndarray, is_inside: Callable[[np.ndarray], np.ndarray],
                    grid: Grid) -> np.ndarray:
    """Which off-band points are inside: each 6-connected off-band region touches no surface, so it lies wholly
    inside or outside, and takes the side most of the band points next to it are on. A region with no band
    point next to it (the grid cuts the mesh's band off) asks ``is_inside`` ((N, 3) points → (N,) bool) for one
    of its points."""
    labels, count = ndimage.label(off_band)
    votes = np.zeros(count + 1)
    for axis in range(3):
        head, tail = [slice(None)] * 3, [slice(None)] * 3
        head[axis], tail[axis] = slice(0, -1), slice(1, None)
        for here, there in ((tuple(head), tuple(tail)), (tuple(tail), tuple(head))):
            lab, sgn = labels[here], sign[there]
            touching = (lab > 0) & (sgn != 0)
            votes += np.bincount(lab[touching], weights=sgn[touching], minlength=count + 1)
    inside_label = votes < 0
    silent = np.flatnonzero(votes[1:] == 0) + 1
    if len(silent):
        boxes = ndimage.find_objects(labels)
        points = np.array([a_point_of(labels, label, boxes[label - 1]) for label in silent])
        inside_label[silent] = is_inside(grid.origin + grid.spacing * points)
    inside_label[0] = False
    return inside_label[labels]


def a_point_of(labels: np.ndarray, label: int, box: tuple[slice, ...]) -> np.ndarray:
    """(3,) grid index of some point with ``label`` inside its bounding ``box``."""
    first = np.argwhere(labels[box] == label)[0]
    return first + np.array([part.start for part in box])


def scan_triangles(triangles: np.ndarray, normals: np.ndarray, grid: Grid,
                   band: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the grid points within ``band`` of a triangle of (F, 3, 3) ``triangles``: (X, Y, Z) float32 squared
    distance to the nearest triangle (inf elsewhere), the side of that triangle's closest feature's pseudonormal
    (``normals`` (F, 7, 3)) as int8 ±1 (0 elsewhere) and the triangle's index (int32, −1 elsewhere)."""
    dist2 = np.full(grid.shape, np.inf, dtype=np.float32)
    sign = np.zeros(grid.shape, dtype=np.int8)
    nearest = np.full(grid.shape, -1, dtype=np.int32)
    _scan(triangles, normals, grid.origin.astype(np.float64), grid.spacing, band, dist2, sign, nearest)
    return dist2, sign, nearest


@numba.njit(cache=True)
def _closest_point(px: float, py: float, pz: float, tri: np.ndarray) -> tuple[float, int]:
    """Squared distance from (px, py, pz) to triangle ``tri`` (3, 3) and the closest point's feature (0 face;
    1, 2, 3 edges ab, bc, ca; 4, 5, 6 vertices a, b, c), by the triangle's Voronoi regions in turn."""
    ax, ay, az = tri[0, 0], tri[0, 1], tri[0, 2]
    abx, aby, abz = tri[1, 0] - ax, tri[1, 1] - ay, tri[1, 2] - az
    acx, acy, acz = tri[2, 0] - ax, tri[2, 1] - ay, tri[2, 2] - az
    apx, apy, apz = px - ax, py - ay, pz - az
    d1, d2 = abx * apx + aby * apy + abz * apz, acx * apx + acy * apy + acz * apz
    if d1 <= 0 and d2 <= 0:
        return apx * apx + apy * apy + apz * apz, 4
    bpx, bpy, bpz = px - tri[1, 0], py - tri[1, 1], pz - tri[1, 2]
    d3, d4 = abx * bpx + aby * bpy + abz * bpz, acx * bpx + acy * bpy + acz * bpz
    if d3 >= 0 and d4 <= d3:
        return bpx * bpx + bpy * bpy + bpz * bpz, 5
    cpx, cpy, cpz = px - tri[2, 0], py - tri[2, 1], pz - tri[2, 2]
    d5, d6 = abx * cpx + aby * cpy + abz * cpz, acx * cpx + acy * cpy + acz * cpz
    if d6 >= 0 and d5 <= d6:
        return cpx * cpx + cpy * cpy + cpz * cpz, 6
    vc, vb, va = d1 * d4 - d3 * d2, d5 * d2 - d1 * d6, d3 * d6 - d5 * d4
    feature, v, w = 0, 0.0, 0.0
    if vc <= 0 and d1 >= 0 and d3 <= 0:
        feature, v = 1, d1 / (d1 - d3)
    elif vb <= 0 and d2 >= 0 and d6 <= 0:
        feature, w = 3, d2 / (d2 - d6)
    elif va <= 0 and d4 - d3 >= 0 and d5 - d6 >= 0:
        feature, w = 2, (d4 - d3) / ((d4 - d3) + (d5 - d6))
        v = 1.0 - w
    elif va + vb + vc > 0:
        v, w = vb / (va + vb + vc), vc / (va + vb + vc)
    else:  # zero-area triangle
        return apx * apx + apy * apy + apz * apz, 4
    qx, qy, qz = apx - v * abx - w * acx, apy - v * aby - w * acy, apz - v * abz - w * acz
    return qx * qx + qy * qy + qz * qz, feature


@numba.njit(cache=True)
def _side(px: float, py: float, pz: float, tri: np.ndarray, normals: np.ndarray, feature: int) -> int:
    """±1: which side of the closest feature's pseudonormal the point lies on (any point of the feature serves:
    the vertex a for the face and the edges ab, ca; b for bc; the vertex itself for a vertex)."""
    corner = 1 if feature == 2 else (feature - 4 if feature >= 4 else 0)
    m = normals[feature]
    side = (px - tri[corner, 0]) * m[0] + (py - tri[corner, 1]) * m[1] + (pz - tri[corner, 2]) * m[2]
    return 1 if side >= 0 else -1


@numba.njit(cache=True)
def _scan(triangles: np.ndarray, normals: np.ndarray, origin: np.ndarray, h: float, band: float,
          dist2: np.ndarray, sign: np.ndarray, nearest: np.ndarray) -> None:
    """Every triangle visits the grid points in its bounding box grown by ``band`` and within ``band`` of its
    plane (a run along the normal's dominant axis for each point of the other two axes)."""
    lo, hi = np.empty(3, dtype=np.int64), np.empty(3, dtype=np.int64)
    p, ijk = np.empty(3), np.empty(3, dtype=np.int64)
    for f in range(triangles.shape[0]):
        tri = triangles[f]
        for d in range(3):
            low, high = min(tri[0, d], tri[1, d], tri[2, d]), max(tri[0, d], tri[1, d], tri[2, d])
            lo[d] = max(int(math.ceil((low - band - origin[d]) / h)), 0)
            hi[d] = min(int(math.floor((high + band - origin[d]) / h)), dist2.shape[d] - 1)
        n = normals[f, 0]  # unit face normal
        axis = 0 if abs(n[0]) >= max(abs(n[1]), abs(n[2])) else (1 if abs(n[1]) >= abs(n[2]) else 2)
        first, second = (axis + 1) % 3, (axis + 2) % 3
        plane = n[0] * tri[0, 0] + n[1] * tri[0, 1] + n[2] * tri[0, 2]
        for a in range(lo[first], hi[first] + 1):
            p[first], ijk[first] = origin[first] + a * h, a
            for b in range(lo[second], hi[second] + 1):
                p[second], ijk[second] = origin[second] + b * h, b
                c0, c1 = lo[axis], hi[axis]
                if n[axis] != 0:  # |distance to the plane| <= band
                    centre = (plane - n[first] * p[first] - n[second] * p[second]) / n[axis]
                    spread = band / abs(n[axis])
                    c0 = max(c0, int(math.ceil((centre - spread - origin[axis]) / h)))
                    c1 = min(c1, int(math.floor((centre + spread - origin[axis]) / h)))
                for c in range(c0, c1 + 1):
                    p[axis], ijk[axis] = origin[axis] + c * h, c
                    d2, feature = _closest_point(p[0], p[1], p[2], tri)
                    i, j, k = ijk[0], ijk[1], ijk[2]
                    if d2 <= band * band and d2 < dist2[i, j, k]:
                        dist2[i, j, k], nearest[i, j, k] = d2, f
                        sign[i, j, k] = _side(p[0], p[1], p[2], tri, normals[f], feature)


@numba.njit(cache=True)
def _grow_band(triangles: np.ndarray, normals: np.ndarray, adjacent: np.ndarray, origin: np.ndarray, h: float,
               inside2: float, outside2: float, frontier: np.ndarray, dist2: np.ndarray, sign: np.ndarray,
               nearest: np.ndarray, shape: np.ndarray) -> None:
    """Extend the scanned band (flat arrays of `scan_triangles`) layer by layer: a point next to the band is
    measured against its band neighbours' nearest triangles, then walks on to edge-adjacent triangles
    (``adjacent`` (F, 3)) while they are nearer, and joins when it lies within sqrt(``inside2``) below or
    sqrt(``outside2``) above the surface. A layer is measured before any of it joins, so the result does
    not depend on the order; ``sign`` 2 marks a point queued for the layer."""
    around = np.empty(26, dtype=np.int64)
    tried = np.empty(26, dtype=np.int64)
    while len(frontier):
        queued = _queue_neighbours(frontier, sign, shape)
        best = np.full(len(queued), np.inf)
        side = np.zeros(len(queued), dtype=np.int8)
        face = np.full(len(queued), -1, dtype=np.int32)
        for n in range(len(queued)):
            i, j, k = _coords(queued[n], shape)
            px, py, pz = origin[0] + h * i, origin[1] + h * j, origin[2] + h * k
            closest, count = 0, 0
            for a in range(_neighbours(queued[n], shape, around)):
                f = nearest[around[a]]
                if abs(sign[around[a]]) == 1 and f not in tried[:count]:
                    tried[count] = f
                    count += 1
                    d2, feature = _closest_point(px, py, pz, triangles[f])
                    if d2 < best[n]:
                        best[n], face[n], closest = d2, f, feature
            if face[n] >= 0:
                face[n], best[n], closest = _walk(px, py, pz, face[n], best[n], closest, triangles, adjacent)
                side[n] = _side(px, py, pz, triangles[face[n]], normals[face[n]], closest)
        joined = 0
        for n in range(len(queued)):
            u = queued[n]
            sign[u] = 0
            if best[n] <= (outside2 if side[n] > 0 else inside2):
                dist2[u], sign[u], nearest[u] = best[n], side[n], face[n]
                queued[joined] = u
                joined += 1
        frontier = queued[:joined]


@numba.njit(cache=True)
def _walk(px: float, py: float, pz: float, face: int, d2: float, feature: int, triangles: np.ndarray,
          adjacent: np.ndarray) -> tuple[int, float, int]:
    """From ``face`` (squared distance ``d2``, closest feature ``feature``) on to an edge-adjacent face while one is
    nearer to the point: the nearest face, its squared distance and closest feature."""
    moved = True
    while moved:
        moved = False
        for e in range(3):
            g = adjacent[face, e]
            g2, g_feature = _closest_point(px, py, pz, triangles[g])
            if g2 < d2:
                face, d2, feature, moved = g, g2, g_feature, True
                break
    return face, d2, feature


@numba.njit(cache=True)
def _queue_neighbours(frontier: np.ndarray, state: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """The distinct neighbours (of 26) of the ``frontier`` points (flat indices) whose ``state`` is 0 (free);
    their state becomes 2 (queued)."""
    queued = np.empty(26 * len(frontier), dtype=np.int64)
    count = 0
    around = np.empty(26, dtype=np.int64)
    for v in frontier:
        for a in range(_neighbours(v, shape, around)):
            if state[around[a]] == 0:
                state[around[a]] = 2
                queued[count] = around[a]
                count += 1
    return queued[:count]


@numba.njit(cache=True)
def _coords(v: int, shape: np.ndarray) -> tuple[int, int, int]:
    plane = shape[1] * shape[2]
    i = v // plane
    j = (v - i * plane) // shape[2]
    return i, j, v - i * plane - j * shape[2]


@numba.njit(cache=True)
def _neighbours(v: int, shape: np.ndarray, out: np.ndarray) -> int:
    """The 26 neighbours of flat index ``v`` inside the grid into ``out`` (26,); their count."""
    i, j, k = _coords(v, shape)
    count = 0
    for di in range(max(i - 1, 0), min(i + 2, shape[0])):
        for dj in range(max(j - 1, 0), min(j + 2, shape[1])):
            for dk in range(max(k - 1, 0), min(k + 2, shape[2])):
                if di != i or dj != j or dk != k:
                    out[count] = (di * shape[1] + dj) * shape[2] + dk
                    count += 1
    return count


# --- the hair region ----------------------------------------------------------------------------------------


def hair_surface(s: np.ndarray, k: np.ndarray, core: np.ndarray, grid: Grid, t: float, sink: float) -> Mesh | None:
    """The closed surface of the hair grown from the (non-empty) ``core`` on the box around it; None if empty."""
    h = grid.spacing
    reach = t + sink + h
    start, stop = core_box(core, grid, reach + 2 * h)
    cut = tuple(slice(a, b) for a, b in zip(start, stop))
    field = hair_field(s[cut], k[cut], core[cut], t, sink, reach, h)
    return surface(fill_voids(field, h), grid.sub(start, stop))


def core_box(core: np.ndarray, grid: Grid, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Index range (start, stop) of the core's bounding box grown by ``margin`` (world units)."""
    where = [np.flatnonzero(core.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3)]
    grow = math.ceil(margin / grid.spacing)
    start = np.array([w[0] - grow for w in where])
    stop = np.array([w[-1] + 1 + grow for w in where])
    return np.clip(start, 0, grid.shape), np.clip(stop, 0, grid.shape)


def hair_field(s: np.ndarray, k: np.ndarray, core: np.ndarray, t: float, sink: float, reach: float, h: float) -> np.ndarray:
    """(X, Y, Z) float32 F = max(s, −sink − k, ε − (k − s), d − reach), negative in the hair (see the module
    docstring; ε = `EDGE_CELLS` spacings)."""
    c = np.maximum(s, t - k)
    distance, nearest = ndimage.distance_transform_edt(~core, sampling=h, return_indices=True)
    d = distance.astype(np.float32) + c[nearest[0], nearest[1], nearest[2]]
    d[core] = c[core]
    field = np.maximum(np.maximum(s, -sink - k), np.maximum(EDGE_CELLS * h - (k - s), d - reach)).astype(np.float32)
    tiny = np.float32(1e-4 * h)
    field[np.abs(field) < tiny] = tiny  # no corner exactly on the level: no zero-area triangles
    return field


def fill_voids(field: np.ndarray, h: float) -> np.ndarray:
    """``field`` with outside regions that do not reach the box's border (enclosed by hair) made inside."""
    labels, count = ndimage.label(field >= 0)
    if count <= 1:
        return field
    border = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(), labels[:, :, [0, -1]].ravel()]))
    void = (labels > 0) & ~np.isin(labels, border)
    if not void.any():
        return field
    out = field.copy()
    out[void] = -0.5 * h
    return out


def surface(field: np.ndarray, grid: Grid) -> Mesh | None:
    """Marching cubes of ``field``'s zero level, faces outwards; None when the field has no inside."""
    if not (field < 0).any():
        return None
    edged = np.pad(field, 1, constant_values=max(float(field.max()), grid.spacing))  # closed at the box's border
    verts, faces, _, _ = marching_cubes(edged, 0.0, spacing=(grid.spacing,) * 3, allow_degenerate=True)
    verts = verts.astype(np.float64) + (grid.origin - grid.spacing)
    faces = faces.astype(np.int64)
    if signed_volumes(verts, faces, np.zeros(len(faces), dtype=np.int64))[0] < 0:
        faces = faces[:, ::-1].copy()
    return Mesh(torch.from_numpy(verts).float(), torch.from_numpy(faces))


def keep_large_pieces(mesh: Mesh, fraction: float) -> Mesh:
    """The connected pieces with at least ``fraction`` of the largest piece's volume (and a positive one)."""
    faces = mesh.faces.numpy()
    labels = face_components(faces, mesh.num_verts)
    volumes = signed_volumes(mesh.verts.double().numpy(), faces, labels)
    keep = volumes >= max(fraction * volumes.max(), 0.0) if fraction > 0 else volumes > 0
    if keep.all():
        return mesh
    used, local = np.unique(faces[keep[labels]], return_inverse=True)
    return Mesh(mesh.verts[torch.from_numpy(used)], torch.from_numpy(local.reshape(-1, 3)))


def decimate_closed(mesh: Mesh, target_faces: int) -> Mesh:
    """`decimate` to about ``target_faces``, kept closed: quadric collapses can fold a thin flap into a pair of
    coincident, opposite faces (a fin), which is removed; if the result is still not closed, gentler collapses
    are tried, and failing those the mesh comes back undecimated."""
    for aggressiveness in DECIMATE_AGGRESSIVENESS:
        out = without_fins(decimate(mesh, target_faces, aggressiveness))
        if out.num_faces and not closure_problem(out):
            return out
    log.warning("decimating the hair shell to %d faces did not keep it closed; it keeps its %d faces",
                target_faces, mesh.num_faces)
    return mesh


def without_fins(mesh: Mesh) -> Mesh:
    """The mesh without pairs of faces on the same three vertices in opposite orders (zero-volume fins)."""
    faces = mesh.faces.numpy().astype(np.int64)
    key = np.sort(faces, axis=1) @ np.array([mesh.num_verts**2, mesh.num_verts, 1], dtype=np.int64)
    _, group, count = np.unique(key, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    paired = count[group] == 2
    if not paired.any():
        return mesh
    first = np.argmin(faces, axis=1)
    rotated = faces[np.arange(len(faces))[:, None], (first[:, None] + np.arange(3)) % 3]  # smallest index first
    order = np.argsort(group[paired], kind="stable")
    ids = np.flatnonzero(paired)[order].reshape(-1, 2)
    opposite = (rotated[ids[:, 0]] != rotated[ids[:, 1]]).any(axis=1)
    keep = np.ones(len(faces), dtype=bool)
    keep[ids[opposite].ravel()] = False
    return remove_unreferenced_vertices(mesh.replace(faces=mesh.faces[torch.from_numpy(keep)]))
