"""Writing meshes: GLB, OBJ + MTL + PNG, PLY. Every file is written atomically (temp + rename).

Materials are PBR metallic-roughness (metallic 0, roughness 0.8, single-sided) with the texture as
the base colour; the OBJ's MTL says ``Kd 1 1 1`` so viewers do not darken the texture.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
import trimesh

from common.atomic import atomic_path, write_with

from .convert import mesh_to_trimesh
from .core import Mesh
from .errors import MeshFormatError
from .texture import texture_to_image


def save_mesh(mesh: Mesh, path: str | Path) -> None:
    """Write by suffix: .glb, .obj (with .mtl and .png next to it when textured) or .ply."""
    writers = {".glb": save_glb, ".obj": save_obj, ".ply": save_ply}
    suffix = Path(path).suffix.lower()
    if suffix not in writers:
        raise MeshFormatError(f"cannot write {str(path)!r}: use one of {', '.join(writers)}")
    writers[suffix](mesh, path)


def save_glb(mesh: Mesh, path: str | Path) -> None:
    """Binary glTF with smooth vertex normals (NORMAL); the texture (if any) is embedded as PNG in a PBR material."""
    data = trimesh.Scene(mesh_to_trimesh(mesh, normals=True)).export(file_type="glb")
    write_with(path, lambda tmp: tmp.write_bytes(data))


def save_ply(mesh: Mesh, path: str | Path, vertex_colors: torch.Tensor | None = None) -> None:
    """Binary PLY with geometry and, if given here or set on the mesh, (V, 3) vertex colours in [0, 1]."""
    colors = mesh.vertex_colors if vertex_colors is None else vertex_colors
    plain = Mesh(verts=mesh.verts, faces=mesh.faces, vertex_colors=colors)
    data = trimesh.exchange.ply.export_ply(mesh_to_trimesh(plain), encoding="binary")
    write_with(path, lambda tmp: tmp.write_bytes(data))


def save_obj(mesh: Mesh, path: str | Path) -> None:
    """``name.obj``; with a texture also ``name.mtl`` and ``name.png`` next to it (relative links).

    The three files go to temporaries first and are renamed only when all are written, the OBJ
    last, so a crash leaves the previous set readable.
    """
    path = Path(path)
    texture = mesh.texture if mesh.uv is not None else None
    textured = texture is not None
    mtl_path, png_path = path.with_suffix(".mtl"), path.with_suffix(".png")
    with contextlib.ExitStack() as stack:
        obj_tmp = stack.enter_context(atomic_path(path))
        if texture is not None:
            mtl_tmp = stack.enter_context(atomic_path(mtl_path))
            png_tmp = stack.enter_context(atomic_path(png_path))
            texture_to_image(texture).save(png_tmp, format="PNG")
            mtl_tmp.write_text(_mtl_text(png_path.name))
        obj_tmp.write_text(_obj_text(mesh, mtl_path.name if textured else None))


MATERIAL_NAME = "headfit_material"


def _mtl_text(texture_name: str) -> str:
    return (
        f"newmtl {MATERIAL_NAME}\n"
        "Ka 0 0 0\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
        "# PBR extension: metallic 0, roughness 0.8\nPm 0\nPr 0.8\n"
        f"map_Kd {texture_name}\n"
    )


def _obj_text(mesh: Mesh, mtl_name: str | None) -> str:
    out = io.StringIO()
    if mtl_name is not None:
        out.write(f"mtllib {mtl_name}\n")
    np.savetxt(out, mesh.verts.detach().cpu().double().numpy(), fmt="v %.9g %.9g %.9g")
    faces = mesh.faces.cpu().numpy() + 1
    if mesh.uv is None:
        np.savetxt(out, faces, fmt="f %d %d %d")
        return out.getvalue()
    np.savetxt(out, mesh.uv.detach().cpu().double().numpy(), fmt="vt %.9g %.9g")
    if mtl_name is not None:
        out.write(f"usemtl {MATERIAL_NAME}\n")
    assert mesh.uv_faces is not None  # Mesh checks that uv and uv_faces come together
    corners = np.stack([faces, mesh.uv_faces.cpu().numpy() + 1], axis=-1).reshape(-1, 6)
    np.savetxt(out, corners, fmt="f %d/%d %d/%d %d/%d")
    return out.getvalue()
