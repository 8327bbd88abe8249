"""Decimation, component filtering, vertex merging and compaction."""

import torch
import trimesh

from representations.mesh import (
    Mesh,
    decimate,
    grid,
    icosphere,
    keep_largest_component,
    merge_close_vertices,
    remove_unreferenced_vertices,
)


def is_watertight(mesh: Mesh) -> bool:
    return trimesh.Trimesh(mesh.verts.numpy(), mesh.faces.numpy(), process=False).is_watertight


def test_decimate_reaches_target_and_stays_watertight():
    sphere = icosphere(5)  # 20480 faces
    for target in (5000, 1000):
        small = decimate(sphere, target)
        assert abs(small.num_faces - target) <= 0.05 * target
        assert is_watertight(small)
        assert (small.verts.norm(dim=-1) - 1.0).abs().max() < 0.05


def test_decimate_leaves_small_mesh_alone_and_drops_uv():
    sphere = icosphere(2)
    assert decimate(sphere, 10_000) is sphere
    flat = grid(10)
    assert flat.has_uv and not decimate(flat, 50).has_uv


def test_keep_largest_component_and_compaction():
    big, small = icosphere(2), icosphere(0, radius=0.1)
    verts = torch.cat([small.verts + 5.0, big.verts])
    faces = torch.cat([small.faces, big.faces + small.num_verts])
    kept = keep_largest_component(Mesh(verts, faces))
    assert kept.num_faces == big.num_faces and kept.num_verts == big.num_verts
    assert torch.equal(kept.verts, big.verts) and torch.equal(kept.faces, big.faces)


def test_remove_unreferenced_keeps_order_and_uv_links():
    flat = grid(2)
    padded = Mesh(
        verts=torch.cat([torch.full((2, 3), 9.0), flat.verts]),
        faces=flat.faces + 2,
        uv=torch.cat([torch.zeros(1, 2), flat.uv]),
        uv_faces=flat.uv_faces + 1,
    )
    clean = remove_unreferenced_vertices(padded)
    assert torch.equal(clean.verts, flat.verts) and torch.equal(clean.faces, flat.faces)
    assert torch.equal(clean.uv[clean.uv_faces], flat.uv[flat.uv_faces])


def test_merge_close_vertices_welds_a_split_sphere():
    sphere = icosphere(2)
    # give every face its own three vertices, slightly jittered
    verts = sphere.verts[sphere.faces.reshape(-1)] + 1e-7 * torch.randn(sphere.num_faces * 3, 3)
    soup = Mesh(verts, torch.arange(sphere.num_faces * 3).reshape(-1, 3))
    assert not is_watertight(soup)
    welded = merge_close_vertices(soup, tolerance=1e-5)
    assert welded.num_verts == sphere.num_verts and welded.num_faces == sphere.num_faces
    assert is_watertight(welded)


def test_merge_close_vertices_drops_collapsed_faces():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1e-9, 0, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 3, 2]])
    merged = merge_close_vertices(Mesh(verts, faces), tolerance=1e-6)
    assert merged.num_faces == 1 and merged.num_verts == 3
