"""Mesh container, normals, edge topology and the differentiable regularisers."""

import pytest
import torch

from representations.mesh import (
    Mesh,
    edge_face_pairs,
    face_areas,
    face_normals,
    grid,
    icosphere,
    laplacian_vectors,
    loss_laplacian,
    loss_normal_consistency,
    unique_edges,
    vertex_normals,
)


def noisy(mesh: Mesh, scale: float, seed: int = 0) -> Mesh:
    g = torch.Generator().manual_seed(seed)
    return mesh.replace(verts=mesh.verts + scale * torch.randn(mesh.verts.shape, generator=g))


def test_mesh_rejects_bad_shapes_and_lone_uv():
    sphere = icosphere(1)
    with pytest.raises(ValueError, match="faces"):
        Mesh(sphere.verts, sphere.faces[:, :2])
    with pytest.raises(ValueError, match="together"):
        Mesh(sphere.verts, sphere.faces, uv=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="uv_faces"):
        Mesh(sphere.verts, sphere.faces, uv=torch.zeros(4, 2), uv_faces=torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="texture"):
        Mesh(sphere.verts, sphere.faces, texture=torch.zeros(4, 4))


def test_to_and_detach_keep_all_fields():
    mesh = grid(2).replace(texture=torch.rand(4, 4, 3))
    mesh = mesh.replace(verts=mesh.verts.requires_grad_())
    moved = mesh.detach().to("cpu")
    assert not moved.verts.requires_grad
    assert torch.equal(moved.uv_faces, mesh.uv_faces) and torch.equal(moved.texture, mesh.texture)


def test_icosphere_normals_point_outward():
    sphere = icosphere(3)
    vn = vertex_normals(sphere.verts, sphere.faces)
    radial = torch.nn.functional.normalize(sphere.verts, dim=-1)
    assert torch.allclose(vn.norm(dim=-1), torch.ones(sphere.num_verts), atol=1e-5)
    assert (vn * radial).sum(-1).min() > 0.999
    centroids = sphere.verts[sphere.faces].mean(1)
    assert ((face_normals(sphere.verts, sphere.faces) * centroids).sum(-1) > 0).all()


def test_vertex_normals_are_area_weighted():
    # Two faces at vertex 0: a big one facing +z and a small one facing +x.
    verts = torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, -1], [0, 1, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 3, 4]])
    n = vertex_normals(verts, faces)[0]
    assert n[2] > 0.99 and n[0] > 0  # dominated by the big face, tilted towards the small one
    assert torch.allclose(face_areas(verts, faces), torch.tensor([50.0, 0.5]))


def test_unique_edges_and_face_pairs_on_closed_sphere():
    sphere = icosphere(2)
    edges = unique_edges(sphere.faces)
    assert edges.shape == (sphere.num_faces * 3 // 2, 2)
    assert (edges[:, 0] < edges[:, 1]).all()
    pairs = edge_face_pairs(sphere.faces)
    assert pairs.shape == edges.shape and (pairs[:, 0] != pairs[:, 1]).all()


def test_face_pairs_skip_boundary_edges():
    flat = grid(3)  # 18 faces; interior edges = all edges - boundary (12)
    assert edge_face_pairs(flat.faces).shape[0] == unique_edges(flat.faces).shape[0] - 12


def test_normal_consistency_small_on_sphere_larger_when_noisy():
    sphere = icosphere(3)
    smooth = loss_normal_consistency(sphere.verts, sphere.faces)
    rough = loss_normal_consistency(noisy(sphere, 0.02).verts, sphere.faces)
    assert smooth < 0.01 and rough > 5 * smooth
    flat = grid(4)
    assert loss_normal_consistency(flat.verts, flat.faces).abs() < 1e-6


def test_laplacian_zero_inside_flat_grid_and_grows_with_a_bump():
    flat = grid(6)
    lap = laplacian_vectors(flat.verts, flat.faces).norm(dim=-1).reshape(7, 7)
    assert lap[1:-1, 1:-1].max() < 1e-6
    bumped = flat.verts.clone()
    bumped[3 * 7 + 3, 2] = 0.5
    lap_bumped = laplacian_vectors(bumped, flat.faces).reshape(7, 7, 3)
    assert torch.allclose(lap_bumped[3, 3], torch.tensor([0.0, 0.0, -0.5]), atol=1e-6)
    assert loss_laplacian(bumped, flat.faces) > loss_laplacian(flat.verts, flat.faces)


def test_laplacian_is_mean_squared_norm():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    faces = torch.tensor([[0, 1, 2]])
    # each vertex: mean of the other two minus itself
    expected = torch.stack([verts[[1, 2]].mean(0) - verts[0], verts[[0, 2]].mean(0) - verts[1], verts[[0, 1]].mean(0) - verts[2]])
    assert torch.allclose(loss_laplacian(verts, faces), expected.square().sum(-1).mean())


@pytest.mark.parametrize("loss", [loss_normal_consistency, loss_laplacian])
def test_losses_give_finite_gradients_even_with_degenerate_faces(loss):
    sphere = noisy(icosphere(2), 0.01)
    verts = sphere.verts.clone()
    faces = sphere.faces.clone()
    a, b, _ = faces[0]
    verts[b] = verts[a]  # collapse one edge: a zero-area face
    verts.requires_grad_()
    value = loss(verts, faces)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0


def test_regularisers_reduce_noise_under_gradient_descent():
    sphere = icosphere(2)
    verts = noisy(sphere, 0.03).verts.requires_grad_()
    start = loss_normal_consistency(verts, sphere.faces).item()
    optimiser = torch.optim.Adam([verts], lr=2e-3)
    for _ in range(50):
        optimiser.zero_grad()
        (loss_normal_consistency(verts, sphere.faces) + loss_laplacian(verts, sphere.faces)).backward()
        optimiser.step()
    assert loss_normal_consistency(verts, sphere.faces).item() < 0.5 * start
