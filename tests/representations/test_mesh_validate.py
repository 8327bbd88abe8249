"""A user's mesh must stand for a solid (`check_solid`), face indices are checked on reading, and a
file's face count is read from its header without loading it (`count_faces`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

import representations.mesh.header as mesh_header
from representations.mesh import (
    Mesh,
    MeshGeometryError,
    check_solid,
    count_faces,
    grid,
    icosphere,
    read_mesh,
    save_glb,
    save_obj,
    save_ply,
)


def with_verts(mesh: Mesh, verts: torch.Tensor) -> Mesh:
    return Mesh(verts.float(), mesh.faces)


def tilted_plane() -> Mesh:
    """A flat grid turned out of every axis plane (flat, though its bounding box is not)."""
    plane = grid(6)
    rotation = torch.tensor(trimesh.transformations.rotation_matrix(0.7, [1, 1, 0])[:3, :3], dtype=torch.float32)
    return with_verts(plane, plane.verts @ rotation.T)


def test_a_closed_sphere_passes_at_any_scale():
    sphere = icosphere(2)
    for scale in (1e-6, 1.0, 1e6):
        check_solid(with_verts(sphere, sphere.verts * scale), "sphere")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_vertices_are_refused(value):
    sphere = icosphere(1)
    verts = sphere.verts.clone()
    verts[3, 1] = value
    with pytest.raises(MeshGeometryError, match=r"non-finite coordinates \(NaN or inf\) at 1 of its 42 vertices"):
        check_solid(with_verts(sphere, verts), "it")


def test_degenerate_shapes_are_refused():
    sphere = icosphere(1)
    with pytest.raises(MeshGeometryError, match="all its vertices at one point"):
        check_solid(with_verts(sphere, torch.full_like(sphere.verts, 0.3)), "it")
    with pytest.raises(MeshGeometryError, match="is flat"):
        check_solid(tilted_plane(), "it")
    on_a_line = sphere.verts.clone()
    on_a_line[:, 1:] = on_a_line[:, :1] * 2.0
    with pytest.raises(MeshGeometryError, match="is flat"):
        check_solid(with_verts(sphere, on_a_line), "it")
    with pytest.raises(MeshGeometryError, match=r"too few triangles \(1\)"):
        check_solid(Mesh(torch.eye(3), torch.tensor([[0, 1, 2]])), "it")


def test_only_zero_area_triangles_are_refused():
    corners = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    repeated = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 2, 3], [3, 3, 0]])
    with pytest.raises(MeshGeometryError, match=r"only triangles of zero area \(4 of them\)"):
        check_solid(Mesh(corners, repeated), "it")


@pytest.mark.parametrize("index", [42, 10**6, -1])
def test_face_indices_outside_the_vertices_are_refused(index):
    sphere = icosphere(1)
    faces = sphere.faces.clone()
    faces[5, 2] = index
    with pytest.raises(MeshGeometryError, match=f"vertex index {index}, but only 42 vertices exist"):
        check_solid(Mesh(sphere.verts, faces), "it")


def test_unreferenced_vertices_do_not_count():
    sphere = icosphere(1)
    stray = torch.cat([sphere.verts, torch.tensor([[1e30, 0.0, 0.0]])])
    check_solid(Mesh(stray, sphere.faces), "it")
    flat_plus_stray = tilted_plane()
    verts = torch.cat([flat_plus_stray.verts, torch.tensor([[0.0, 0.0, 5.0]])])
    with pytest.raises(MeshGeometryError, match="is flat"):
        check_solid(Mesh(verts, flat_plus_stray.faces), "it")


def test_reading_refuses_face_indices_outside_the_vertices(tmp_path):
    sphere = trimesh.creation.icosphere(1)
    faces = sphere.faces.copy()
    faces[3, 1] = 1000
    trimesh.Trimesh(sphere.vertices, faces, process=False, validate=False).export(tmp_path / "bad.ply")
    with pytest.raises(MeshGeometryError, match="bad.ply has a face that uses vertex index 1000"):
        read_mesh(tmp_path / "bad.ply")


def test_face_counts_come_from_headers(tmp_path):
    sphere = icosphere(2)
    save_ply(sphere, tmp_path / "a.ply")
    save_obj(sphere, tmp_path / "a.obj")
    save_glb(sphere, tmp_path / "a.glb")
    trimesh.Trimesh(sphere.verts.numpy(), sphere.faces.numpy()).export(tmp_path / "ascii.ply", encoding="ascii")
    for name in ("a.ply", "a.obj", "a.glb", "ascii.ply"):
        assert count_faces(tmp_path / name) == sphere.num_faces, name


def test_a_declared_count_is_read_without_the_body(tmp_path):
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n" \
             b"element face 30000000\nproperty list uchar int vertex_indices\nend_header\n"
    (tmp_path / "huge.ply").write_bytes(header + b"\x00" * 36)
    assert count_faces(tmp_path / "huge.ply") == 30_000_000


def test_obj_faces_cut_between_chunks_count_once(tmp_path, monkeypatch):
    lines = [f"v {i} {i * i} {i % 3}" for i in range(50)] + [f"f {i} {i + 1} {i + 2}" for i in range(1, 40)]
    (tmp_path / "a.obj").write_text("\n".join(lines) + "\n")
    for chunk in (1, 2, 3, 7, 64):
        monkeypatch.setattr(mesh_header, "OBJ_CHUNK", chunk)
        assert count_faces(tmp_path / "a.obj") == 39, chunk


@pytest.mark.parametrize("name, data", [("a.ply", b"not a ply"), ("a.glb", b"glTF\xff\xff"), ("a.stl", b"solid x"),
                                        ("a.gltf", b"{not json")])
def test_unknown_counts_are_none(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    assert count_faces(tmp_path / name) is None
    assert count_faces(tmp_path / "missing.ply") is None


def test_random_vertex_cloud_with_real_faces_passes():
    rng = np.random.default_rng(0)
    print("seed 0")
    hull = trimesh.convex.convex_hull(rng.normal(size=(200, 3)))
    check_solid(Mesh(torch.tensor(hull.vertices, dtype=torch.float32), torch.tensor(hull.faces)), "hull")
