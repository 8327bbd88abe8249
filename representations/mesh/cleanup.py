"""Topology clean-up and decimation. Not differentiable: results are detached, on the input's device."""

from __future__ import annotations

import numpy as np
import torch

from .core import Mesh


def select_faces(mesh: Mesh, keep: torch.Tensor) -> Mesh:
    """Keep the faces where the (F,) bool mask ``keep`` is true, then drop unreferenced verts/uvs."""
    keep = keep.to(mesh.faces.device)
    uv_faces = None if mesh.uv_faces is None else mesh.uv_faces[keep]
    return remove_unreferenced_vertices(mesh.replace(faces=mesh.faces[keep], uv_faces=uv_faces))


def remove_unreferenced_vertices(mesh: Mesh) -> Mesh:
    """Drop vertices (and uv entries) that no face uses, keeping the order of the rest."""
    verts_used, faces = _compact(mesh.faces, mesh.num_verts)
    fields = {"verts": mesh.verts.detach()[verts_used], "faces": faces}
    if mesh.vertex_colors is not None:
        fields["vertex_colors"] = mesh.vertex_colors.detach()[verts_used]
    if mesh.uv is not None:
        assert mesh.uv_faces is not None  # Mesh checks that uv and uv_faces come together
        uv_used, fields["uv_faces"] = _compact(mesh.uv_faces, mesh.uv.shape[0])
        fields["uv"] = mesh.uv.detach()[uv_used]
    return mesh.replace(**fields)


def remove_degenerate_faces(mesh: Mesh) -> Mesh:
    """Drop faces that repeat a vertex index (e.g. after merging vertices)."""
    f = mesh.faces
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    return mesh if bool(keep.all()) else select_faces(mesh, keep)


def keep_largest_component(mesh: Mesh) -> Mesh:
    """Keep the connected component (faces joined through shared vertices) with the most faces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if mesh.num_faces == 0:
        return mesh
    faces = mesh.faces.cpu().numpy()
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(mesh.num_verts, mesh.num_verts))
    _, vertex_label = connected_components(graph, directed=False)
    face_label = vertex_label[faces[:, 0]]
    largest = np.bincount(face_label).argmax()
    return select_faces(mesh, torch.from_numpy(face_label == largest))


def merge_close_vertices(mesh: Mesh, tolerance: float = 1e-6) -> Mesh:
    """Merge vertices closer than ``tolerance`` (transitively) into the lowest-index one, then drop
    faces that became degenerate and vertices no longer used. UVs are untouched (own indices)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    points = mesh.verts.detach().cpu().double().numpy()
    pairs = cKDTree(points).query_pairs(r=tolerance, output_type="ndarray")
    if len(pairs) == 0:
        return mesh
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    representative = np.full(label.max() + 1, n, dtype=np.int64)
    np.minimum.at(representative, label, np.arange(n))
    remap = torch.from_numpy(representative[label]).to(mesh.faces.device)
    merged = mesh.replace(faces=remap[mesh.faces])
    return remove_unreferenced_vertices(remove_degenerate_faces(merged))


def decimate(mesh: Mesh, target_faces: int, aggressiveness: float = 7.0) -> Mesh:
    """Quadric edge-collapse decimation (fast-simplification) to about ``target_faces`` faces.

    Collapses keep a closed manifold closed. Returns geometry only: UVs, texture and vertex colours
    no longer match the new vertices and are dropped (re-unwrap afterwards). A mesh already at or
    below the target is returned unchanged.
    """
    import fast_simplification

    if mesh.num_faces <= target_faces:
        return mesh
    points = mesh.verts.detach().cpu().double().numpy()
    triangles = mesh.faces.cpu().numpy().astype(np.int64)
    new_points, new_faces = fast_simplification.simplify(points, triangles, target_count=int(target_faces), agg=aggressiveness)
    device = mesh.verts.device
    out = Mesh(
        verts=torch.from_numpy(np.ascontiguousarray(new_points)).to(device=device, dtype=mesh.verts.dtype),
        faces=torch.from_numpy(np.ascontiguousarray(new_faces)).to(device=device, dtype=torch.long),
    )
    return remove_unreferenced_vertices(remove_degenerate_faces(out))


def _compact(index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Old ids in use (sorted) and ``index`` renumbered into them."""
    used = torch.zeros(size, dtype=torch.bool, device=index.device)
    used[index.reshape(-1)] = True
    old_ids = torch.nonzero(used, as_tuple=True)[0]
    new_id = torch.full((size,), -1, dtype=torch.long, device=index.device)
    new_id[old_ids] = torch.arange(old_ids.shape[0], device=index.device)
    return old_ids, new_id[index]
