"""Texture from one photo: project it where the surface is seen, mirror the seen half of the face
onto the hidden half, fill the rest smoothly over the surface, and dilate across UV seams.

Texel tensors are (T, T, ...) with row 0 = v 1 (see representations/mesh/core.py).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree
from torch import Tensor

from representations.cameras import Camera
from representations.mesh import Mesh, unique_edges, vertex_normals
from representations.render.texel import TexelSurface, back_project

MIRROR = (-1.0, 1.0, 1.0)
"""Left-right: across the head's symmetry plane x = 0."""
FRONT_BACK = (1.0, 1.0, -1.0)
"""Front-back: across the coronal plane z = 0."""


def _ramp(cosine: Tensor, start: float, width: float) -> Tensor:
    """0 below ``start``, 1 above ``start + width``, smooth in between (feathers grazing views)."""
    x = ((cosine - start) / max(width, 1e-6)).clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def reflected_surface(surface: TexelSurface, flip: tuple[float, float, float], keep: Tensor | None = None) -> TexelSurface:
    """The texels' mirror images (positions and normals scaled by ``flip``), optionally only ``keep`` (T, T)."""
    scale = surface.position.new_tensor(flip)
    valid = surface.valid if keep is None else surface.valid & keep
    return TexelSurface(surface.position * scale, surface.normal * scale, valid, surface.vertices, surface.faces)


def project_photo(image: Tensor, mask: Tensor, camera: Camera, surface: TexelSurface, *, min_cosine: float, feather: float,
                  depth_tolerance: float, mirror: bool, hair_mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Blend of the photo's projections onto the texels, in order of trust.

    Sources: `direct` (where the photo sees the surface); `mirrored` (the left-right mirror image
    is seen: the hidden half of the face); `hair` (for texels on the back half, the front-back
    mirror image is seen on hair pixels of ``hair_mask``: the hair of the top and sides stands in
    for the back). Each source fills only the confidence the earlier ones left.
    Returns colour (T, T, 3) and each source's confidence (T, T) in [0, 1].
    """
    sources = [("direct", surface, mask, depth_tolerance)]
    if mirror:
        sources.append(("mirrored", reflected_surface(surface, MIRROR), mask, 2.0 * depth_tolerance))
    if hair_mask is not None:
        back = surface.position[..., 2] < 0
        sources.append(("hair", reflected_surface(surface, FRONT_BACK, back), hair_mask, 2.0 * depth_tolerance))
    colour = torch.zeros(*surface.valid.shape, image.shape[-1], dtype=image.dtype)
    taken = torch.zeros(surface.valid.shape, dtype=image.dtype)
    confidences = {}
    for name, source, source_mask, tolerance in sources:
        sampled, cosine = back_project(image, camera, source, source_mask, min_cosine=min_cosine, depth_tolerance=tolerance)
        confidence = _ramp(cosine, min_cosine, feather) * (cosine > 0) * (1.0 - taken)
        colour = colour + sampled * confidence[..., None]
        taken = taken + confidence
        confidences[name] = confidence
    return colour / taken.clamp_min(1e-8)[..., None], confidences


def smoothed_normals(mesh: Mesh, iterations: int = 4) -> Tensor:
    """Vertex normals (V, 3) averaged over 1-ring neighbours: the fitted surface carries small bumps
    whose normals would make texels flicker in and out of the cosine test."""
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

