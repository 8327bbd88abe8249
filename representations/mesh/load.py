"""Reading GLB/glTF, OBJ (+MTL/texture) and PLY files into `Mesh`."""

from __future__ import annotations

from pathlib import Path

import torch
import trimesh

from .axes import reorient, rotation_to_canonical
from .convert import mesh_from_trimesh
from .core import Mesh
from .errors import MeshFormatError
from .validate import check_face_indices

READABLE_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
ERROR_DETAIL_CHARS = 200
"""A parser's message is cut to this length (some print whole arrays)."""


def read_mesh(path: str | Path, device: torch.device | str = "cpu") -> Mesh:
    """The mesh in a file as stored (no axis change). UVs and the base-colour texture are kept when
    present; an OBJ's texture is found through its MTL. Raises FileNotFoundError, MeshFormatError or
    MeshGeometryError (a face index outside the vertex list)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    if path.suffix.lower() not in READABLE_SUFFIXES:
        raise MeshFormatError(f"cannot read {path.name}: mesh files must be one of {', '.join(READABLE_SUFFIXES)}")
    try:
        # not maintain_order=True: with it trimesh 5.2 pairs OBJ uvs with the wrong vertices
        loaded = trimesh.load(path, process=False)
        if not isinstance(loaded, (trimesh.Trimesh, trimesh.Scene)):
            raise TypeError(f"a {type(loaded).__name__}, not a mesh or a scene")
        mesh = mesh_from_trimesh(loaded, device=device)
    except Exception as error:  # trimesh's parsers raise arbitrary types on malformed files
        detail = " ".join(str(error).split())[:ERROR_DETAIL_CHARS]
        raise MeshFormatError(f"cannot read {path.name} as a triangle mesh: {type(error).__name__}: {detail}") from error
    if mesh.num_faces == 0:
        raise MeshFormatError(f"{path.name} has no triangles")
    check_face_indices(mesh.faces, mesh.num_verts, path.name)
    return mesh


def load_mesh(path: str | Path, up_axis: str = "+y", front_axis: str = "+z", device: torch.device | str = "cpu") -> Mesh:
    """A user mesh in our convention (+y up, the face looks along +z).

    ``up_axis``/``front_axis`` say how the file was authored, e.g. Blender-style z-up with the face
    looking along -y is ``up_axis="+z", front_axis="-y"``. glTF is +y up, +z front (the defaults).
    """
    rotation_to_canonical(up_axis, front_axis)  # reject bad axes before touching the file
    return reorient(read_mesh(path, device=device), up_axis, front_axis)
