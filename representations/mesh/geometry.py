"""Normals and edge topology on (verts, faces) tensors; everything stays on the input's device.

Shapes: verts (V, 3) float, faces (F, 3) long.
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F

_EPS = 1e-12


def face_cross(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) unnormalised face normals (e1 × e2); their length is twice the face area."""
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) unit face normals (zero for degenerate faces), outward for CCW winding."""
    return F.normalize(face_cross(verts, faces), dim=-1, eps=_EPS)


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F,) triangle areas."""
    return 0.5 * face_cross(verts, faces).norm(dim=-1)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V, 3) unit vertex normals: the area-weighted mean of adjacent face normals."""
    cross = face_cross(verts, faces)
    summed = torch.zeros_like(verts)
    for k in range(3):
        summed = summed.index_add(0, faces[:, k], cross)
    return F.normalize(summed, dim=-1, eps=_EPS)


def half_edges(faces: torch.Tensor) -> torch.Tensor:
    """(3F, 2) directed edges: row k·F + f is the edge from corner k to corner k+1 of face f."""
    return torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0)


@overload
def unique_edges(faces: torch.Tensor, return_inverse: Literal[False] = False) -> torch.Tensor: ...
@overload
def unique_edges(faces: torch.Tensor, return_inverse: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
def unique_edges(faces: torch.Tensor, return_inverse: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(E, 2) undirected edges (smaller index first), sorted.

    With ``return_inverse`` also the (3F,) index of each `half_edges` row into the unique edges.
    """
    sorted_edges = half_edges(faces).sort(dim=1).values
    # One int64 key per edge: 1-D unique is an order of magnitude faster than unique(dim=0).
    n = int(faces.max()) + 1 if faces.numel() else 1
    keys, inverse = torch.unique(sorted_edges[:, 0] * n + sorted_edges[:, 1], return_inverse=True)
    edges = torch.stack([keys // n, keys % n], dim=1)
    return (edges, inverse) if return_inverse else edges


def edge_face_pairs(faces: torch.Tensor) -> torch.Tensor:
    """(P, 2) indices of the two faces on each edge shared by exactly two faces.

    Boundary edges (one face) and non-manifold edges (three or more) are left out.
    """
    num_faces = faces.shape[0]
    _, edge_id = unique_edges(faces, return_inverse=True)
    face_id = torch.arange(num_faces, device=faces.device).repeat(3)
    order = torch.argsort(edge_id, stable=True)
    edge_id, face_id = edge_id[order], face_id[order]
    counts = torch.bincount(edge_id)
    starts = torch.cumsum(counts, dim=0) - counts
    shared = torch.nonzero(counts == 2, as_tuple=True)[0]
    first = starts[shared]
    return torch.stack([face_id[first], face_id[first + 1]], dim=1)


def vertex_degrees(edges: torch.Tensor, num_verts: int) -> torch.Tensor:
    """(V,) number of unique edges at each vertex, for (E, 2) unique edges."""
    return torch.bincount(edges.reshape(-1), minlength=num_verts)
