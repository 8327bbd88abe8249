"""Conversion between `Mesh` and `trimesh.Trimesh`.

trimesh stores one uv per vertex, so a textured mesh is split at UV seams on the way out and merged
again (by exact position) on the way in. The split keeps vertex i at index i and appends the seam
copies, which makes `mesh_from_trimesh(mesh_to_trimesh(m))` return m's vertices in m's order.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import trimesh

from .core import Mesh
from .geometry import vertex_normals
from .texture import texture_from_image, texture_to_image

PBR_ROUGHNESS = 0.8
PBR_METALLIC = 0.0


def mesh_to_trimesh(mesh: Mesh, normals: bool = False) -> trimesh.Trimesh:
    """The trimesh of ``mesh`` (split at UV seams when textured); with ``normals`` it carries area-weighted vertex
    normals of the unsplit surface (seam copies share them, so no seam shows in shading), which glTF writers then
    export: without NORMAL a glTF viewer must shade every triangle flat."""
    verts = mesh.verts.detach().cpu().double().numpy()
    faces = mesh.faces.cpu().numpy()
    smooth = _unit_normals(mesh) if normals else None
    if mesh.uv is None:
        colors = None if mesh.vertex_colors is None else _colors_to_uint8(mesh.vertex_colors)
        return trimesh.Trimesh(verts, faces, vertex_colors=colors, vertex_normals=smooth, process=False)
    uv = mesh.uv.detach().cpu().double().numpy()
    assert mesh.uv_faces is not None  # Mesh checks that uv and uv_faces come together
    ids, split_uv, split_faces = split_at_seams(len(verts), faces, uv, mesh.uv_faces.cpu().numpy())
    split_verts = verts[ids]
    visual = trimesh.visual.TextureVisuals(uv=split_uv, material=_pbr_material(mesh.texture))
    return trimesh.Trimesh(split_verts, split_faces, visual=visual, vertex_normals=None if smooth is None else smooth[ids],
                           process=False)


def _unit_normals(mesh: Mesh) -> np.ndarray:
    """(V, 3) area-weighted vertex normals, +y where a vertex has no area around it (glTF wants unit length)."""
    n = vertex_normals(mesh.verts.detach().cpu().double(), mesh.faces.cpu()).numpy()
    n[np.linalg.norm(n, axis=1) < 0.5] = (0.0, 1.0, 0.0)
    return n


def mesh_from_trimesh(tm: trimesh.Trimesh | trimesh.Scene, device: torch.device | str = "cpu") -> Mesh:
    """A `Mesh` (float32 verts) from a trimesh mesh or scene (scene transforms applied, parts
    concatenated). UVs and a base-colour texture are kept when present (material colour factors are
    ignored); vertex colours are kept for untextured meshes."""
    if isinstance(tm, trimesh.Scene):
        tm = _scene_to_mesh(tm)
    verts = np.asarray(tm.vertices, dtype=np.float64)
    faces = np.asarray(tm.faces, dtype=np.int64).reshape(-1, 3)
    uv, image = _uv_and_image(tm)
    fields: dict = {}
    if uv is None:
        if isinstance(tm.visual, trimesh.visual.ColorVisuals) and tm.visual.kind == "vertex":
            fields["vertex_colors"] = torch.from_numpy(np.asarray(tm.visual.vertex_colors)[:, :3] / 255.0).float().to(device)
    else:
        uv, uv_faces = _compact_uv(uv, faces)
        verts, faces = _merge_split_vertices(verts, faces)
        fields.update(uv=torch.from_numpy(uv).float().to(device), uv_faces=torch.from_numpy(uv_faces).to(device))
        if image is not None:
            fields["texture"] = texture_from_image(image, device)
    return Mesh(verts=torch.from_numpy(verts).float().to(device), faces=torch.from_numpy(faces).to(device), **fields)


def _pbr_material(texture: torch.Tensor | None) -> trimesh.visual.material.PBRMaterial:
    return trimesh.visual.material.PBRMaterial(
        name="headfit_material",
        baseColorTexture=None if texture is None else texture_to_image(texture),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=PBR_METALLIC,
        roughnessFactor=PBR_ROUGHNESS,
        doubleSided=False,
    )


def _colors_to_uint8(colors: torch.Tensor) -> np.ndarray:
    return np.round(colors.detach().float().clamp(0, 1).cpu().numpy() * 255.0).astype(np.uint8)


def split_at_seams(num_verts: int, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vertex per distinct (vertex, uv) corner pair, for formats with one uv per vertex. Returns ids (S,): the
    original vertex of each split vertex, uv (S, 2), faces (F, 3) into the split vertices. Vertex i stays at i (with
    its first corner's uv; unreferenced vertices get uv 0), other pairs are appended in order of first use."""
    pair_key = faces.reshape(-1) * len(uv) + uv_faces.reshape(-1)
    keys, first_use, corner_pair = np.unique(pair_key, return_index=True, return_inverse=True)
    pair_vert, pair_uv = keys // len(uv), keys % len(uv)
    by_vertex_then_use = np.lexsort((first_use, pair_vert))
    leads = np.ones(len(keys), dtype=bool)
    leads[1:] = pair_vert[by_vertex_then_use][1:] != pair_vert[by_vertex_then_use][:-1]
    primary, extra = by_vertex_then_use[leads], by_vertex_then_use[~leads]
    extra = extra[np.argsort(first_use[extra], kind="stable")]
    new_index = np.empty(len(keys), dtype=np.int64)
    new_index[primary] = pair_vert[primary]
    new_index[extra] = num_verts + np.arange(len(extra))
    out_uv = np.zeros((num_verts + len(extra), 2))
    out_uv[pair_vert[primary]] = uv[pair_uv[primary]]
    out_uv[num_verts:] = uv[pair_uv[extra]]
    ids = np.concatenate([np.arange(num_verts), pair_vert[extra]])
    return ids, out_uv, new_index[corner_pair.reshape(-1)].reshape(-1, 3)


def _merge_split_vertices(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at exactly the same position into the first of them (keeps first-use order)."""
    _, first, group = np.unique(verts, axis=0, return_index=True, return_inverse=True)
    representative = first[group.reshape(-1)]
    kept = np.unique(representative)
    new_id = np.full(len(verts), -1, dtype=np.int64)
    new_id[kept] = np.arange(len(kept))
    return verts[kept], new_id[representative][faces]


def _compact_uv(uv: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicate per-vertex uvs (first occurrence order); uv_faces index into the result."""
    _, first, group = np.unique(uv, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uv[first[order]], rank[group.reshape(-1)][faces]


def _uv_and_image(tm: trimesh.Trimesh):
    visual = tm.visual
    if not isinstance(visual, trimesh.visual.TextureVisuals) or visual.uv is None or len(visual.uv) != len(tm.vertices):
        return None, None
    material = visual.material
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    return np.asarray(visual.uv, dtype=np.float64), image


def _scene_to_mesh(scene: trimesh.Scene) -> trimesh.Trimesh:
    parts = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh)]
    if not parts:
        raise ValueError("the scene has no triangle meshes")
    return parts[0] if len(parts) == 1 else cast(trimesh.Trimesh, trimesh.util.concatenate(parts))  # Trimesh in, Trimesh out
