"""Triangle meshes: the `Mesh` container, normals, regularisers, clean-up, smoothing, UV unwrap and file I/O.

Conventions are documented in `core.py` (uv/texture orientation) and `representations/cameras.py`
(world axes).
"""

from .axes import axis_vector, reorient, rotation_to_canonical
from .cleanup import (
    decimate,
    keep_largest_component,
    merge_close_vertices,
    remove_degenerate_faces,
    remove_unreferenced_vertices,
    select_faces,
)
from .convert import mesh_from_trimesh, mesh_to_trimesh
from .core import Mesh
from .errors import MeshFormatError, MeshGeometryError, UVUnwrapError
from .export import save_glb, save_mesh, save_obj, save_ply
from .geometry import edge_face_pairs, face_areas, face_normals, half_edges, unique_edges, vertex_degrees, vertex_normals
from .gltf_rig import AttachedMesh, MorphClip, MorphTargets, Skeleton, save_rigged_glb, split_vertex_ids
from .header import count_faces
from .load import load_mesh, read_mesh
from .losses import laplacian_vectors, loss_laplacian, loss_normal_consistency
from .primitives import grid, icosphere
from .smooth import fair_to_reference, normal_roughness_deg, ring_average, roughness_deg, side_back_region, taubin_smooth
from .texture import texture_from_image, texture_to_image, texture_to_uint8, uv_to_grid, uv_to_pixel
from .uv_unwrap import AtlasInfo, UnwrapOptions, run_xatlas, unwrap_uv, unwrap_uv_with_info
from .validate import check_face_indices, check_solid

__all__ = [
    "AttachedMesh", "MorphClip", "MorphTargets", "Skeleton", "save_rigged_glb", "split_vertex_ids",
    "AtlasInfo", "Mesh", "MeshFormatError", "MeshGeometryError", "UVUnwrapError", "UnwrapOptions", "axis_vector",
    "check_face_indices", "check_solid", "count_faces", "decimate", "edge_face_pairs", "face_areas", "face_normals",
    "fair_to_reference", "grid", "half_edges", "icosphere", "keep_largest_component", "laplacian_vectors", "load_mesh",
    "loss_laplacian", "loss_normal_consistency", "merge_close_vertices", "mesh_from_trimesh", "mesh_to_trimesh",
    "normal_roughness_deg", "read_mesh", "remove_degenerate_faces", "remove_unreferenced_vertices", "reorient",
    "ring_average", "rotation_to_canonical", "roughness_deg", "run_xatlas", "save_glb", "save_mesh", "save_obj",
    "save_ply", "select_faces", "side_back_region", "taubin_smooth", "texture_from_image", "texture_to_image",
    "texture_to_uint8", "unique_edges", "unwrap_uv", "unwrap_uv_with_info", "uv_to_grid", "uv_to_pixel",
    "vertex_degrees", "vertex_normals",
]
