"""DMTet: tet grids, marching tetrahedra, narrow band, cache, SDF fitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from representations.dmtet import (
    DMTet,
    DMTetConfig,
    band_grid,
    dense_grid,
    ellipsoid_sdf,
    marching_tets,
    mesh_signed_distance,
    sphere_sdf,
)
from representations.dmtet import grid as grid_module
from representations.hashgrid import HashGridConfig

SMALL_FIELD = HashGridConfig(levels=8, log2_table=15, base_res=8, finest_res=256, hidden=32, layers=1)
ELLIPSOID = (0.6, 0.75, 0.5)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HEADFIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def edge_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected and directed edge multiplicities of a triangle list."""
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    _, undirected = np.unique(np.sort(directed, 1), axis=0, return_counts=True)
    _, directed_counts = np.unique(directed, axis=0, return_counts=True)
    return undirected, directed_counts


def area_and_volume(verts: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    a, b, c = (verts[faces[:, i]].astype(np.float64) for i in range(3))
    cross = np.cross(b - a, c - a)
    return 0.5 * np.linalg.norm(cross, axis=1).sum(), (a * np.cross(b, c)).sum() / 6.0


def test_dense_grid_tets_are_positive_and_conforming():
    grid = dense_grid(4, bound=1.0)
    p = grid.verts[grid.tets].double()
    volumes = torch.linalg.det(p[:, 1:] - p[:, :1]) / 6
    assert grid.tets.shape == (6 * 4**3, 4) and grid.verts.shape == (5**3, 3)
    assert (volumes > 0).all() and volumes.sum().item() == pytest.approx(8.0)
    tri = grid.tets[:, [[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]]].reshape(-1, 3)
    _, counts = torch.unique(torch.sort(tri, 1).values, dim=0, return_counts=True)
    boundary = 6 * 4**2 * 2
    assert (counts <= 2).all() and (counts == 1).sum() == boundary


def test_grid_cache_writes_once_and_reloads_identical(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADFIT_CACHE", str(tmp_path))
    first = grid_module.dense_lattice(6)
    files = list(tmp_path.rglob("*"))
    written = [f for f in files if f.is_file()]
    assert len(written) == 1 and written[0].suffix == ".npz"
    stamp = written[0].stat().st_mtime_ns

    def no_rebuild(resolution):
        raise AssertionError("grid rebuilt although cached")

    monkeypatch.setattr(grid_module, "_build_dense", no_rebuild)
    second = grid_module.dense_lattice(6)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(first, second))
    assert written[0].stat().st_mtime_ns == stamp
    assert [f for f in tmp_path.rglob("*") if f.is_file()] == written


def test_sphere_mesh_is_watertight_outward_and_accurate():
    r = 0.6
    grid = dense_grid(64)
    verts, faces = marching_tets(grid.verts, sphere_sdf(r)(grid.verts), grid.tets)
    v, f = verts.numpy(), faces.numpy()
    undirected, directed = edge_counts(f)
    assert (undirected == 2).all() and (directed == 1).all()
    assert len(v) - len(undirected) + len(f) == 2
    assert len(np.unique(f)) == len(v)
    area, volume = area_and_volume(v, f)
    assert area == pytest.approx(4 * math.pi * r * r, rel=0.02)
    assert volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.03)


def test_marching_gradients_match_finite_differences():
    grid = dense_grid(3, bound=1.0)
    sdf = (sphere_sdf(0.55)(grid.verts) + 0.01 * torch.randn(len(grid.verts), generator=torch.Generator().manual_seed(0)))
    offsets = torch.zeros_like(grid.verts, dtype=torch.float64)

    def surface(s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return marching_tets(grid.verts.double() + d, s, grid.tets)[0]

    assert torch.autograd.gradcheck(surface, (sdf.double().requires_grad_(), offsets.requires_grad_()), eps=1e-6, atol=1e-6)


def test_mesh_loss_gradients_reach_sdf_and_offsets():
    grid = dense_grid(16)
    sdf = sphere_sdf(0.5)(grid.verts).requires_grad_()
    offsets = torch.zeros_like(grid.verts, requires_grad=True)
    verts, faces = marching_tets(grid.verts + offsets, sdf, grid.tets)
    a, b, c = (verts[faces[:, i]] for i in range(3))
    area = torch.linalg.cross(b - a, c - a).norm(dim=1).sum()
    area.backward()
    for grad in (sdf.grad, offsets.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    far = sphere_sdf(0.5)(grid.verts).abs() > 2 * grid.spacing
    assert (sdf.grad[far] == 0).all()


@pytest.fixture(scope="module")
def fitted() -> tuple[DMTet, float]:
    model = DMTet(DMTetConfig(resolution=48, hashgrid=SMALL_FIELD, seed=1))
    error = model.fit_sdf(ellipsoid_sdf(ELLIPSOID), steps=100, batch=2048)
    return model, error


def test_fit_to_analytic_ellipsoid_gives_close_watertight_mesh(fitted):
    model, error = fitted
    verts, faces = model.get_mesh()
    assert error < 0.01
    assert ellipsoid_sdf(ELLIPSOID)(verts.detach()).abs().mean() < 0.01
    undirected, directed = edge_counts(faces.numpy())
    assert (undirected == 2).all() and (directed == 1).all()
    _, volume = area_and_volume(verts.detach().numpy(), faces.numpy())
    assert volume == pytest.approx(4 / 3 * math.pi * np.prod(ELLIPSOID), rel=0.05)


def test_mesh_loss_gradients_reach_field_parameters(fitted):
    model, _ = fitted
    model.zero_grad()
    verts, faces = model.get_mesh()
    (verts - 0.1).square().sum().backward()
    grads = [p.grad for p in model.field.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


def test_narrow_band_gives_the_dense_surface_with_far_fewer_tets():
    sdf = sphere_sdf(0.6)
    dense = dense_grid(64)
    band = band_grid(sdf, 64, band=2.0, coarse_res=16)
    v_dense, f_dense = marching_tets(dense.verts, sdf(dense.verts), dense.tets)
    v_band, f_band = marching_tets(band.verts, sdf(band.verts), band.tets)
    assert len(f_band) == len(f_dense)
    key = lambda v: v[np.lexsort(v.numpy().T)]  # noqa: E731
    assert torch.equal(key(v_band), key(v_dense))
    assert len(band.tets) < 0.15 * len(dense.tets)


def test_band_model_matches_dense_model_and_rebuilds(fitted):
    model, _ = fitted
    banded = DMTet(DMTetConfig(resolution=48, band=2.0, band_coarse_res=12, hashgrid=SMALL_FIELD, seed=1))
    banded.load_state_dict(model.state_dict())
    grid = banded.rebuild_band()
    v_band, f_band = banded.get_mesh()
    v_dense, f_dense = model.get_mesh()
    assert len(grid.tets) < 0.3 * len(model.grid.tets)
    assert len(f_band) == len(f_dense)
    key = lambda v: v.detach()[np.lexsort(v.detach().numpy().T)]  # noqa: E731
    torch.testing.assert_close(key(v_band), key(v_dense), atol=1e-6, rtol=0)


def test_band_without_a_surface_fails_clearly():
    model = DMTet(DMTetConfig(resolution=256, band=3.0, max_band_cubes=100_000, hashgrid=SMALL_FIELD))
    with pytest.raises(RuntimeError, match="narrow band"):
        model.get_mesh()


def test_large_dense_grid_is_refused():
    with pytest.raises(ValueError, match="band"):
        DMTet(DMTetConfig(resolution=512, hashgrid=SMALL_FIELD))


def test_mesh_signed_distance_is_negative_inside():
    sphere = trimesh.creation.icosphere(3, radius=0.6)
    points = np.random.default_rng(0).uniform(-1, 1, (4000, 3))
    truth = np.linalg.norm(points, axis=1) - 0.6
    d = mesh_signed_distance(sphere, points)
    assert np.abs(d - truth).max() < 3e-3
    box = trimesh.creation.box((1.0, 0.8, 0.6))
    inside = (np.abs(points) < [0.5, 0.4, 0.3]).all(1)
    assert np.array_equal(mesh_signed_distance(box, points) < 0, inside)


def test_fit_to_mesh():
    mesh = trimesh.creation.icosphere(3, radius=1.0)
    mesh.apply_scale(ELLIPSOID)
    model = DMTet(DMTetConfig(resolution=32, hashgrid=SMALL_FIELD, seed=2))
    error = model.fit_sdf(mesh, steps=60, batch=2048, pool_size=20_000)
    assert error < 0.03
    verts, _ = model.get_mesh()
    assert ellipsoid_sdf(ELLIPSOID)(verts.detach()).abs().mean() < 0.02


def test_fit_is_deterministic_for_a_seed():
    models = [DMTet(DMTetConfig(resolution=16, hashgrid=SMALL_FIELD, seed=4)) for _ in range(2)]
    errors = [m.fit_sdf(sphere_sdf(0.5), steps=15, batch=2048) for m in models]
    assert errors[0] == errors[1]
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)


def test_surface_closes_at_the_box_when_the_shape_runs_out_of_it():
    """A shape larger than the box (here a sphere cut by the box) still gives a closed mesh."""
    small = HashGridConfig(levels=4, log2_table=12, base_res=4, finest_res=32, hidden=32, layers=1)
    model = DMTet(DMTetConfig(resolution=24, bound=1.0, hashgrid=small, seed=0))
    model.fit_sdf(sphere_sdf(1.2), steps=80)
    with torch.no_grad():
        verts, faces = model.get_mesh()
    mesh = trimesh.Trimesh(verts.numpy(), faces.numpy(), process=False)
    mesh.merge_vertices()
    assert mesh.is_watertight and mesh.volume > 0
    assert float(verts.abs().max()) <= 1.0
