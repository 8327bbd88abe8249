"""xatlas unwrapping in a child process: a valid atlas, and clear errors when the child dies."""

import numpy as np
import pytest
import torch

from representations.mesh import UnwrapOptions, UVUnwrapError, icosphere, unwrap_uv, unwrap_uv_with_info

FAULT_ENV = "HEADFIT_XATLAS_WORKER_FAULT"


def texel_occupancy(uv: np.ndarray, uv_faces: np.ndarray, resolution: int) -> np.ndarray:
    """How many uv triangles cover each texel centre (strictly inside), (resolution, resolution)."""
    count = np.zeros((resolution, resolution), dtype=np.int32)
    for tri in uv[uv_faces] * resolution:
        lo = np.floor(tri.min(0)).astype(int).clip(0, resolution - 1)
        hi = np.ceil(tri.max(0)).astype(int).clip(0, resolution - 1)
        xs, ys = np.meshgrid(np.arange(lo[0], hi[0] + 1) + 0.5, np.arange(lo[1], hi[1] + 1) + 0.5)
        p = np.stack([xs.ravel(), ys.ravel()], 1)
        a, b, c = tri
        d = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(d) < 1e-12:
            continue
        w1 = ((p[:, 0] - a[0]) * (c[1] - a[1]) - (p[:, 1] - a[1]) * (c[0] - a[0])) / d
        w2 = ((b[0] - a[0]) * (p[:, 1] - a[1]) - (b[1] - a[1]) * (p[:, 0] - a[0])) / d
        inside = (w1 > 1e-9) & (w2 > 1e-9) & (1 - w1 - w2 > 1e-9)
        np.add.at(count, (p[inside, 1].astype(int), p[inside, 0].astype(int)), 1)
    return count


def uv_area(uv: np.ndarray, uv_faces: np.ndarray) -> float:
    a, b, c = (uv[uv_faces[:, k]] for k in range(3))
    return float(0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]).sum())


def test_sphere_atlas_is_valid_and_charts_do_not_overlap():
    sphere = icosphere(3)
    mesh, info = unwrap_uv_with_info(sphere, 256, UnwrapOptions(padding=2))
    uv, uv_faces = mesh.uv.numpy(), mesh.uv_faces.numpy()
    assert mesh.uv_faces.shape == (sphere.num_faces, 3) and mesh.uv_faces.dtype == torch.long
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    assert torch.equal(mesh.verts, sphere.verts) and torch.equal(mesh.faces, sphere.faces)
    assert uv.shape[0] > sphere.num_verts  # seams: some vertices carry several uvs
    area = uv_area(uv, uv_faces)
    assert 0.3 < area <= 1.0
    occupancy = texel_occupancy(uv, uv_faces, 256)
    assert occupancy.max() == 1
    assert abs(occupancy.sum() / 256**2 - area) < 0.05  # no texel double-counted: covered ≈ area
    assert info.chart_count > 1 and info.padding_texels >= 1.0


def test_large_mesh_is_decimated_before_unwrapping():
    mesh = unwrap_uv(icosphere(4), 128, UnwrapOptions(max_faces=1000))
    assert mesh.num_faces <= 1050 and mesh.has_uv
    assert mesh.verts.shape[0] <= mesh.faces.max() + 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [("segv", r"killed by signal SIGSEGV"), ("exit", r"exited with code 139 .*SIGSEGV")],
)
def test_crashing_worker_raises_clear_error(monkeypatch, fault, message):
    monkeypatch.setenv(FAULT_ENV, fault)
    with pytest.raises(UVUnwrapError, match=message) as caught:
        unwrap_uv(icosphere(1), 1024)
    assert "80 faces" in str(caught.value)


def test_hanging_worker_times_out(monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "hang")
    with pytest.raises(UVUnwrapError, match=r"timed out after 1.5 s"):
        unwrap_uv(icosphere(1), 1024, UnwrapOptions(timeout_s=1.5))
