"""Differentiable marching tetrahedra: watertight, outward-oriented triangle meshes."""

from __future__ import annotations

import numpy as np
import torch

EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]], dtype=np.int64)
"""(6, 2) local vertex pairs of a tet's edges."""


def _edge_id(a: int, b: int) -> int:
    return int(np.flatnonzero((EDGES == sorted((a, b))).all(1))[0])


def _triangle_table() -> np.ndarray:
    """(16, 2, 3) local edge ids of the triangles for each inside-mask (bit i: vertex i inside), −1 = none.

    Orientation is fixed on a positively oriented reference tet so that every normal points from the
    inside vertices to the outside ones; it then holds for any positively oriented tet.
    """
    ref = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    mids = ref[EDGES].mean(1)
    table = -np.ones((16, 2, 3), dtype=np.int64)
    for case in range(1, 15):
        inside = [v for v in range(4) if case >> v & 1]
        outside = [v for v in range(4) if not case >> v & 1]
        if len(inside) == 2:
            (a, b), (c, d) = inside, outside
            quad = [_edge_id(a, c), _edge_id(a, d), _edge_id(b, d), _edge_id(b, c)]
            tris = [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
        else:
            lone, rest = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            tris = [[_edge_id(lone, v) for v in rest]]
        outward = ref[outside].mean(0) - ref[inside].mean(0)
        for slot, tri in enumerate(tris):
            p = mids[tri]
            if np.dot(np.cross(p[1] - p[0], p[2] - p[0]), outward) < 0:
                tri = [tri[0], tri[2], tri[1]]
            table[case, slot] = tri
    return table


TRIANGLES = _triangle_table()


def crossed_tets(sdf: torch.Tensor, tets: torch.Tensor) -> torch.Tensor:
    """(T', 4) the tets whose vertices have both signs (sdf < 0 counts as inside)."""
    n_inside = (sdf < 0)[tets].sum(1)
    return tets[(n_inside > 0) & (n_inside < 4)]


def marching_tets(verts: torch.Tensor, sdf: torch.Tensor, tets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero level set of ``sdf`` on a tet mesh.

    verts: (V, 3) positions (may be deformed, may require grad); sdf: (V,) negative inside;
    tets: (T, 4) positively oriented.  Returns vertices (M, 3) — one per crossed unique edge, placed
    at the linear zero crossing, differentiable w.r.t. ``verts`` and ``sdf`` — and faces (F, 3) int64,
    counter-clockwise seen from outside.
    """
    dev = verts.device
    tets = crossed_tets(sdf, tets)
    if tets.shape[0] == 0:
        return verts[:0] * sdf[:0, None], torch.zeros(0, 3, dtype=torch.long, device=dev)
    edges_local = torch.from_numpy(EDGES).to(dev)
    inside = (sdf < 0)[tets]
    ends = tets[:, edges_local]
    lo, hi = ends.min(-1).values, ends.max(-1).values
    cut = inside[:, edges_local[:, 0]] != inside[:, edges_local[:, 1]]
    unique_keys, slot = torch.unique((lo * verts.shape[0] + hi)[cut], return_inverse=True)
    edge_vertex = torch.full(lo.shape, -1, dtype=torch.long, device=dev)
    edge_vertex[cut] = slot
    a, b = unique_keys // verts.shape[0], unique_keys % verts.shape[0]
    t = (sdf[a] / (sdf[a] - sdf[b]))[:, None]
    out_verts = verts[a] + t * (verts[b] - verts[a])
    case = (inside.long() << torch.arange(4, device=dev)).sum(1)
    tri = torch.from_numpy(TRIANGLES).to(dev)[case]
    faces = torch.gather(edge_vertex, 1, tri.clamp(min=0).view(-1, 6)).view(-1, 2, 3)
    return out_verts, faces[tri[..., 0] >= 0]
