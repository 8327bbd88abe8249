"""Texture from one photo: project it where the surface is seen, mirror the seen half of the face
onto the hidden half, fill the rest smoothly over the surface, and dilate across UV seams.

Texel tensors are (T, T, ...) with row 0 = v 1 (see representations/mesh/core.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree
from torch import Tensor

from representations.cameras import Camera
from representations.mesh import Mesh, unique_edges
from representations.render.texel import TexelSurface, back_project

MIRROR = (-1.0, 1.0, 1.0)


@dataclass
class ProjectionResult:
    texture: Tensor  # (T, T, 3) in [0, 1], every texel filled
    direct: Tensor  # (T, T) confidence of the direct projection in [0, 1]
    mirrored: Tensor  # (T, T) confidence of the mirrored projection
    valid: Tensor  # (T, T) bool, texels inside a UV chart


def _ramp(cosine: Tensor, start: float, width: float) -> Tensor:
    """0 below ``start``, 1 above ``start + width``, smooth in between (feathers grazing views)."""
    x = ((cosine - start) / max(width, 1e-6)).clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def mirrored_surface(surface: TexelSurface) -> TexelSurface:
    """The texels' mirror images across the head's symmetry plane x = 0."""
    flip = surface.position.new_tensor(MIRROR)
    return TexelSurface(surface.position * flip, surface.normal * flip, surface.valid, surface.vertices, surface.faces)


def project_photo(image: Tensor, mask: Tensor, camera: Camera, surface: TexelSurface, *, min_cosine: float, feather: float,
                  depth_tolerance: float, mirror: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Colours (T, T, 3) and confidences (T, T) of the direct and mirrored projections."""
    colour_d, cos_d = back_project(image, camera, surface, mask, min_cosine=min_cosine, depth_tolerance=depth_tolerance)
    direct = _ramp(cos_d, min_cosine, feather) * (cos_d > 0)
    colour = colour_d
    mirrored = torch.zeros_like(direct)
    if mirror:
        colour_m, cos_m = back_project(image, camera, mirrored_surface(surface), mask, min_cosine=min_cosine,
                                       depth_tolerance=2.0 * depth_tolerance)
        mirrored = _ramp(cos_m, min_cosine, feather) * (cos_m > 0) * (1.0 - direct)
        total = (direct + mirrored).clamp_min(1e-8)[..., None]
        colour = (colour_d * direct[..., None] + colour_m * mirrored[..., None]) / total
    return colour, direct, mirrored


def smoothed_normals(mesh: Mesh, iterations: int = 4) -> Tensor:
    """Vertex normals (V, 3) averaged over 1-ring neighbours: the fitted surface carries small bumps
    whose normals would make texels flicker in and out of the cosine test."""
    from representations.mesh import vertex_normals

    normals = vertex_normals(mesh.verts.float(), mesh.faces)
    edges = unique_edges(mesh.faces)
    both = torch.cat([edges, edges.flip(1)])
    for _ in range(iterations):
        summed = normals.clone().index_add_(0, both[:, 0], normals[both[:, 1]])
        normals = torch.nn.functional.normalize(summed, dim=1)
    return normals


def vertex_colours_from_texels(mesh: Mesh, texture: Tensor, known: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex colours (V, 3) read at each vertex's UV corners where the texels are known (V,)."""
    t = texture.shape[0]
    uv = mesh.uv.detach().cpu().numpy()
    corners_uv = uv[mesh.uv_faces.cpu().numpy().reshape(-1)]
    corners_v = mesh.faces.cpu().numpy().reshape(-1)
    col = np.clip((corners_uv[:, 0] * t).astype(int), 0, t - 1)
    row = np.clip(((1.0 - corners_uv[:, 1]) * t).astype(int), 0, t - 1)
    tex, ok = texture.cpu().numpy(), known.cpu().numpy()
    colours = np.zeros((mesh.num_verts, 3))
    counts = np.zeros(mesh.num_verts)
    hit = ok[row, col]
    np.add.at(colours, corners_v[hit], tex[row[hit], col[hit]])
    np.add.at(counts, corners_v[hit], 1.0)
    known_v = counts > 0
    colours[known_v] /= counts[known_v, None]
    return colours, known_v


def harmonic_fill(mesh: Mesh, colours: np.ndarray, known: np.ndarray, anchor: np.ndarray | None = None,
                  anchor_weight: np.ndarray | None = None) -> np.ndarray:
    """Smoothest vertex colours (V, 3) that keep the known ones: solve the graph Laplace equation on
    the unknown vertices, optionally pulled softly towards ``anchor`` (3,) with per-vertex weights."""
    n = mesh.num_verts
    edges = unique_edges(mesh.faces).cpu().numpy()
    i, j = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    laplacian = sparse.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency
    unknown = ~known
    if not unknown.any():
        return colours
    if not known.any() and anchor is None:
        return np.full_like(colours, 0.5)
    lu = laplacian[unknown][:, unknown]
    rhs = -laplacian[unknown][:, known] @ colours[known]
    if anchor is not None and anchor_weight is not None:
        w = anchor_weight[unknown]
        lu = lu + sparse.diags(w)
        rhs = rhs + w[:, None] * np.asarray(anchor)[None]
    lu = lu + sparse.identity(lu.shape[0]) * 1e-8  # keeps isolated unknown islands solvable
    filled = colours.copy()
    filled[unknown] = np.column_stack([spsolve(lu.tocsc(), rhs[:, c]) for c in range(3)])
    return np.clip(filled, 0.0, 1.0)


def texels_from_vertices(surface: TexelSurface, mesh: Mesh, vertex_colours: np.ndarray, k: int = 4) -> Tensor:
    """Texel colours (T, T, 3) interpolated from the nearest vertices (inverse distance)."""
    tree = cKDTree(mesh.verts.detach().cpu().numpy())
    points = surface.position.reshape(-1, 3).cpu().numpy()
    dist, idx = tree.query(points, k=k)
    weights = 1.0 / np.maximum(dist, 1e-6)
    weights /= weights.sum(axis=1, keepdims=True)
    colours = (vertex_colours[idx] * weights[..., None]).sum(axis=1)
    return torch.from_numpy(colours.reshape(*surface.valid.shape, 3)).to(surface.position)


def dilate_into_gutters(texture: Tensor, valid: Tensor) -> Tensor:
    """Give every texel outside the UV charts the colour of the nearest chart texel, so bilinear
    and mip lookups never reach an unfilled texel in any viewer."""
    valid_np = valid.cpu().numpy()
    if valid_np.all() or not valid_np.any():
        return texture
    _, (rows, cols) = ndimage.distance_transform_edt(~valid_np, return_indices=True)
    tex = texture.cpu().numpy()
    return torch.from_numpy(tex[rows, cols]).to(texture)
