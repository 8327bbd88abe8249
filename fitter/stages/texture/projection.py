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


def reflected_surface(surface: TexelSurface, flip: tuple[float, float, float], keep: Tensor | None = None) -> TexelSurface:
    """The texels' mirror images (positions and normals scaled by ``flip``), optionally only ``keep`` (T, T)."""
    scale = surface.position.new_tensor(flip)
    valid = surface.valid if keep is None else surface.valid & keep
    return TexelSurface(surface.position * scale, surface.normal * scale, valid, surface.vertices, surface.faces)


def photo_weight(cosine: Tensor, max_angle_deg: Tensor | float, feather_deg: float) -> Tensor:
    """How much of the photo's colour a texel takes from a view it faces with ``cosine`` (T, T): 1 up to
    ``max_angle_deg - feather_deg`` off the view direction, fading smoothly to exactly 0 at ``max_angle_deg``
    (a number or per texel (T, T)), 0 beyond (where the projection stretches the photo by more than
    1 / cos(max_angle))."""
    limit = torch.as_tensor(max_angle_deg, dtype=cosine.dtype)
    start = torch.cos(torch.deg2rad(limit))
    full = torch.cos(torch.deg2rad((limit - feather_deg).clamp_min(0.0)))
    x = ((cosine - start) / (full - start).clamp_min(1e-6)).clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x) * (cosine > start)


def project_photo(image: Tensor, mask: Tensor, camera: Camera, surface: TexelSurface, *, max_angle_deg: Tensor | float,
                  feather_deg: float, depth_tolerance: float, mirror: bool,
                  mirror_weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Blend of the photo's projections onto the texels, in order of trust.

    Sources: `direct` (where the photo sees the surface); `mirrored` (the left-right mirror image is
    seen: the hidden half of the face; times ``mirror_weight`` (T, T) when given). Each weighs its colour by
    `photo_weight` (no colour at all on
    surfaces facing the camera by more than ``max_angle_deg`` away, a number or per texel (T, T)) and
    fills only the confidence the earlier ones left. Returns colour (T, T, 3) and each source's
    confidence (T, T) in [0, 1].
    """
    sources = [("direct", surface, depth_tolerance)]
    if mirror:
        sources.append(("mirrored", reflected_surface(surface, MIRROR), 2.0 * depth_tolerance))
    colour = torch.zeros(*surface.valid.shape, image.shape[-1], dtype=image.dtype)
    taken = torch.zeros(surface.valid.shape, dtype=image.dtype)
    confidences = {}
    for name, source, tolerance in sources:
        sampled, cosine = back_project(image, camera, source, mask, depth_tolerance=tolerance)
        weight = photo_weight(cosine, max_angle_deg, feather_deg)
        if name == "mirrored" and mirror_weight is not None:
            weight = weight * mirror_weight
        confidence = weight * (1.0 - taken)
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
    the unknown vertices, optionally pulled softly towards ``anchor`` ((3,) or per vertex (V, 3)) with
    per-vertex weights (V,)."""
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
        rhs = rhs + w[:, None] * np.broadcast_to(np.asarray(anchor, dtype=float), colours.shape)[unknown]
    lu = lu + sparse.identity(lu.shape[0]) * 1e-8  # keeps isolated unknown islands solvable
    filled = colours.copy()
    filled[unknown] = np.column_stack([spsolve(lu.tocsc(), rhs[:, c]) for c in range(3)])
    return np.clip(filled, 0.0, 1.0)


class VertexToTexel:
    """Texel values (T, T, C) interpolated from per-vertex values (V, C): inverse-distance weights of each valid
    texel's ``k`` nearest vertices, found once; texels outside the charts get 0 (the gutters are dilated later)."""

    def __init__(self, surface: TexelSurface, mesh: Mesh, k: int = 4) -> None:
        self.valid = surface.valid
        self.like = surface.position
        points = surface.position[surface.valid].cpu().numpy()
        dist, self.index = cKDTree(mesh.verts.detach().cpu().numpy()).query(points, k=k, workers=-1)
        weights = 1.0 / np.maximum(dist, 1e-6)
        self.weights = weights / weights.sum(axis=1, keepdims=True)

    def __call__(self, values: np.ndarray) -> Tensor:
        out = torch.zeros(*self.valid.shape, values.shape[1], dtype=self.like.dtype)
        out[self.valid] = torch.from_numpy((values[self.index] * self.weights[..., None]).sum(axis=1)).to(out)
        return out
