"""Differentiable mesh regularisers. Shapes: verts (V, 3) float, faces (F, 3) long.

Topology helpers (`face_pairs`, `edges`) can be passed in when the faces do not change between
steps; DMTet meshes change topology every step, so by default they are recomputed.
"""

from __future__ import annotations

import torch

from .geometry import edge_face_pairs, face_normals, unique_edges


def loss_normal_consistency(verts: torch.Tensor, faces: torch.Tensor, face_pairs: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of 1 - cos(angle) between the normals of faces sharing an edge (scalar; 0 when flat).

    face_pairs: (P, 2) from `edge_face_pairs(faces)`; only manifold interior edges count.
    """
    if face_pairs is None:
        face_pairs = edge_face_pairs(faces)
    if face_pairs.shape[0] == 0:
        return verts.sum() * 0.0
    normals = face_normals(verts, faces)
    cos = (normals[face_pairs[:, 0]] * normals[face_pairs[:, 1]]).sum(dim=-1)
    return (1.0 - cos).mean()


def laplacian_vectors(verts: torch.Tensor, faces: torch.Tensor, edges: torch.Tensor | None = None) -> torch.Tensor:
    """(V, 3) uniform Laplacian L·v = (mean of edge neighbours) - v; zero for isolated vertices.

    edges: (E, 2) from `unique_edges(faces)`.
    """
    if edges is None:
        edges = unique_edges(faces)
    a, b = edges[:, 0], edges[:, 1]
    neighbour_sum = torch.zeros_like(verts).index_add(0, a, verts[b]).index_add(0, b, verts[a])
    degree = torch.zeros(verts.shape[0], dtype=verts.dtype, device=verts.device)
    degree = degree.index_add(0, a, torch.ones_like(a, dtype=verts.dtype)).index_add(0, b, torch.ones_like(b, dtype=verts.dtype))
    has_neighbours = (degree > 0).unsqueeze(-1)
    mean_neighbour = neighbour_sum / degree.clamp(min=1.0).unsqueeze(-1)
    return torch.where(has_neighbours, mean_neighbour - verts, torch.zeros_like(verts))


def loss_laplacian(verts: torch.Tensor, faces: torch.Tensor, edges: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over vertices of |L·v|² with the uniform Laplacian of `laplacian_vectors` (scalar).

    Scale note: nvdiffrec/threestudio's `laplacian_smooth_loss` averages over the 3 coordinates
    as well, so it is this value / 3 (on closed meshes, where both use the same neighbours).
    """
    return laplacian_vectors(verts, faces, edges).square().sum(dim=-1).mean()
