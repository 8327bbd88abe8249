"""Rasterizer: coverage, orientation, fill rule, gradients, antialiased mask, backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from representations.cameras import Camera, look_at
from representations.render import Rasterizer, interpolate, nvdiffrast_available, render, resolve_backend
from representations.render.raster_numba import rasterize_ids


def sphere(subdivisions: int, radius: float = 1.0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return torch.tensor(mesh.vertices, dtype=dtype), torch.tensor(mesh.faces, dtype=torch.long)


def sphere_image_area(camera: Camera, centre_world: np.ndarray, radius: float) -> float:
    """Exact pixel area of a sphere's perspective image (an ellipse): the rays d = (x, y, 1) of the
    tangent cone satisfy (d.C)^2 >= |d|^2 (|C|^2 - r^2), C the centre in an OpenCV-like camera frame."""
    centre = (camera.w2c_opencv @ np.r_[centre_world, 1.0])[:3]
    conic = -(np.outer(centre, centre) - (centre @ centre - radius**2) * np.eye(3))  # inside: d^T Q d <= 0
    a, b, c = conic[:2, :2], conic[:2, 2], conic[2, 2]
    normalised_area = math.pi * (b @ np.linalg.solve(a, b) - c) / math.sqrt(np.linalg.det(a))
    return normalised_area * camera.fx * camera.fy


def ellipse_target(size: int, semi_x: float, semi_y: float) -> torch.Tensor:
    centres = torch.arange(size, dtype=torch.float32) + 0.5 - size / 2
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")
    return ((cols / semi_x) ** 2 + (rows / semi_y) ** 2 <= 1.0).float()[..., None]


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


# --- coverage ----------------------------------------------------------------------------------
def test_centred_sphere_mask_area_matches_disc():
    vertices, faces = sphere(5)
    camera = Camera.orbit(0.0, 0.0, 4.0, 30.0, 256)
    mask = render(vertices, faces, camera, ("mask",), backend="torch")["mask"]
    disc_radius = camera.fy * 1.0 / math.sqrt(4.0**2 - 1.0**2)
    assert mask.shape == (256, 256, 1)
    assert float(mask.sum()) == pytest.approx(math.pi * disc_radius**2, rel=0.01)
    assert float((mask > 0.5).sum()) == pytest.approx(math.pi * disc_radius**2, rel=0.01)


def test_off_centre_sphere_mask_area_matches_ellipse():
    vertices, faces = sphere(5, radius=0.5)
    offset = np.array([0.9, -0.6, 0.3])
    camera = Camera.from_fov(np.linalg.inv(look_at((0.0, 0.0, 4.0))), 40.0, 256, 192)
    mask = render(vertices + torch.tensor(offset, dtype=torch.float32), faces, camera, ("mask",))["mask"]
    assert float(mask.sum()) == pytest.approx(sphere_image_area(camera, offset, 0.5), rel=0.01)


def test_image_orientation_follows_camera_convention():
    """World +y shows at the top rows, world +x (seen from +z) at the right columns."""
    vertices, faces = sphere(2, radius=0.3)
    camera = Camera.orbit(0.0, 0.0, 4.0, 30.0, 64)
    for shift, expected in (((0.0, 0.6, 0.0), "top"), ((0.6, 0.0, 0.0), "right")):
        mask = render(vertices + torch.tensor(shift), faces, camera)["mask"][..., 0]
        rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
        pixel, _ = camera.project(np.array([shift]))
        assert abs(float(cols.float().mean()) + 0.5 - pixel[0, 0]) < 1.0
        assert abs(float(rows.float().mean()) + 0.5 - pixel[0, 1]) < 1.0
        assert (rows.float().mean() < 28) if expected == "top" else (cols.float().mean() > 36)


def screen_clip(points_px: np.ndarray, size: int) -> np.ndarray:
    """Clip positions (w = 1) of pixel positions (x right, y down)."""
    x = points_px[:, 0] / size * 2.0 - 1.0
    y = 1.0 - points_px[:, 1] / size * 2.0
    return np.stack([x, y, np.zeros_like(x), np.ones_like(x)], axis=1)


def test_fill_rule_shared_edge_covers_each_pixel_once():
    size = 16
    # a quad whose corners and shared diagonal pass exactly through pixel centres
    corners = np.array([[2.5, 3.5], [13.5, 3.5], [13.5, 14.5], [2.5, 14.5]])
    for faces in (np.array([[0, 1, 2], [0, 2, 3]]), np.array([[0, 1, 3], [1, 2, 3]]), np.array([[0, 2, 1], [0, 3, 2]])):
        tri_id, _, fragments = rasterize_ids(screen_clip(corners, size), faces, size, size)
        assert fragments.max() == 1
        assert (fragments == 1).sum() == 11 * 11  # top-left rule: left and top borders in, others out
        assert set(np.unique(tri_id[fragments == 1])) == {0, 1}


def test_jittered_grid_mesh_covers_every_pixel_exactly_once():
    rng = np.random.default_rng(3)
    size, n = 48, 7
    ticks = np.linspace(-4.0, size + 4.0, n + 1)
    gx, gy = np.meshgrid(ticks, ticks)
    inner = np.zeros_like(gx, dtype=bool)
    inner[1:-1, 1:-1] = True
    gx = gx + inner * rng.uniform(-2.5, 2.5, gx.shape)
    gy = gy + inner * rng.uniform(-2.5, 2.5, gy.shape)
    gx[3, 3], gy[3, 3] = 20.5, 20.5  # a vertex exactly on a pixel centre
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    index = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    quads = np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], axis=-1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    _, _, fragments = rasterize_ids(screen_clip(points, size), faces, size, size)
    assert (fragments == 1).all()


# --- differentiability -------------------------------------------------------------------------
def small_scene(dtype=torch.float64):
    vertices, faces = sphere(1, radius=0.8, dtype=dtype)
    vertices = vertices * torch.tensor([1.0, 0.9, 0.8], dtype=dtype)
    camera = Camera.orbit(20.0, 10.0, 3.0, 35.0, 24)
    return vertices, faces, camera


def test_interpolate_and_depth_gradients_match_finite_differences():
    vertices, faces, camera = small_scene()
    attr = torch.randn(len(vertices), 2, dtype=torch.float64)
    rasterizer = Rasterizer("torch")
    weights = torch.randn(24, 24, 3, dtype=torch.float64)

    def loss(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        frags = rasterizer.rasterize(v, faces, camera)
        depth = rasterizer.render(v, faces, camera, ("depth",))["depth"]
        return (torch.cat([interpolate(a, frags), depth], dim=-1) * weights).sum()

    assert torch.autograd.gradcheck(loss, (vertices.clone().requires_grad_(), attr.requires_grad_()), eps=1e-6, atol=1e-5)


def test_antialiased_mask_gradient_matches_finite_differences():
    vertices, faces, camera = small_scene()
    weights = torch.rand(24, 24, 1, dtype=torch.float64)
    v = vertices.clone().requires_grad_()
    (render(v, faces, camera, ("mask",), backend="torch")["mask"] * weights).sum().backward()
    moved = torch.nonzero(v.grad.norm(dim=1) > 1e-3).squeeze(1)
    assert len(moved) >= 6  # silhouette vertices get gradients
    for vertex in moved[:6].tolist():
        for axis in range(3):
            step = torch.zeros_like(vertices)
            step[vertex, axis] = 1e-5
            plus = (render(vertices + step, faces, camera, ("mask",))["mask"] * weights).sum()
            minus = (render(vertices - step, faces, camera, ("mask",))["mask"] * weights).sum()
            assert float(v.grad[vertex, axis]) == pytest.approx(float(plus - minus) / 2e-5, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("angle_deg", [0.0, 17.0, 45.0, 71.0])
def test_antialiased_square_area_is_exact_for_subpixel_shifts(angle_deg):
    size, half = 32, 7.3
    rotation = np.array([[math.cos(math.radians(angle_deg)), -math.sin(math.radians(angle_deg))], [math.sin(math.radians(angle_deg)), math.cos(math.radians(angle_deg))]])
    corners = np.array([[-half, -half], [half, -half], [half, half], [-half, half]]) @ rotation.T
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    backend = Rasterizer("torch").backend_for("cpu")
    for shift in np.linspace(0.0, 1.0, 5, endpoint=False):
        clip = torch.tensor(screen_clip(corners + 16.0 + shift * np.array([1.0, 0.37]), size))
        mask = backend.antialias_mask(backend.rasterize(clip, faces, size, size))
        # only the corners, where a per-row/column estimate is off by a fraction of a pixel, err
        assert float(mask.sum()) == pytest.approx((2 * half) ** 2, abs=1.0)


def test_mask_loss_fits_an_ellipse_silhouette():
    vertices, faces = sphere(3)
    size = 128
    camera = Camera.orbit(0.0, 0.0, 4.0, 30.0, size)
    target = ellipse_target(size, 70.0, 42.0)
    edges = torch.tensor(trimesh.Trimesh(vertices.numpy(), faces.numpy(), process=False).edges_unique)
    degree = torch.zeros(len(vertices)).index_add(0, edges.reshape(-1), torch.ones(edges.numel()))

    def laplacian(x: torch.Tensor) -> torch.Tensor:
        summed = torch.zeros_like(x).index_add(0, edges[:, 0], x[edges[:, 1]]).index_add(0, edges[:, 1], x[edges[:, 0]])
        return x - summed / degree[:, None]

    offset = torch.zeros_like(vertices, requires_grad=True)
    optimiser = torch.optim.Adam([offset], lr=0.01)
    for _ in range(120):
        v = vertices + offset
        mask = render(v, faces, camera, ("mask",))["mask"]
        loss = ((mask - target) ** 2).mean() + (laplacian(v) ** 2).sum(dim=1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert iou(mask.detach() > 0.5, target > 0.5) >= 0.97


# --- passes ------------------------------------------------------------------------------------
def test_normal_and_depth_passes_on_a_sphere():
    vertices, faces = sphere(4)
    camera = Camera.orbit(90.0, 0.0, 4.0, 30.0, 64)  # on +x, looking towards -x
    out = render(vertices, faces, camera, ("normal", "normal_cam", "depth", "triangle_id"), depth_background=-1.0)
    centre = (31, 32)
    assert out["normal"][centre].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=0.05)
    assert out["normal_cam"][centre].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=0.05)
    assert float(out["depth"][centre]) == pytest.approx(3.0, abs=0.01)
    background = out["triangle_id"] < 0
    assert (out["depth"][background] == -1.0).all() and (out["normal"][background] == 0.0).all()
    norms = out["normal"][~background].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_backend_selection_on_cpu():
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(RuntimeError):
        resolve_backend("nvdiffrast", "cpu")
    with pytest.raises(ValueError):
        Rasterizer("opengl")


@pytest.mark.cuda
@pytest.mark.skipif(not nvdiffrast_available(), reason="needs CUDA and nvdiffrast")
def test_nvdiffrast_and_torch_backends_agree():
    vertices, faces = sphere(5)
    vertices = (vertices * torch.tensor([0.7, 0.9, 0.8])).cuda()
    camera = Camera.orbit(30.0, 10.0, 3.0, 30.0, 512)
    ours = render(vertices, faces.cuda(), camera, ("mask", "depth"), backend="torch")
    theirs = render(vertices, faces.cuda(), camera, ("mask", "depth"), backend="nvdiffrast")
    assert iou(ours["mask"] > 0.5, theirs["mask"] > 0.5) >= 0.99
    both = (ours["depth"] > 0) & (theirs["depth"] > 0)
    assert torch.allclose(ours["depth"][both], theirs["depth"][both], atol=1e-3)


def test_triangles_crossing_the_camera_plane_are_dropped_without_nans():
    vertices, faces = sphere(3, radius=2.0)
    camera = Camera.orbit(0.0, 0.0, 1.5, 60.0, 32)  # the camera sits inside the sphere
    v = (vertices + torch.tensor([0.0, 0.0, 0.3])).requires_grad_()
    out = render(v, faces, camera, ("mask", "normal", "depth"))
    assert (out["depth"][out["depth"] > 0] > camera.position[2] - 2.5).all()
    sum(o.sum() for o in out.values()).backward()
    assert torch.isfinite(v.grad).all()
    assert all(torch.isfinite(o).all() for o in out.values())
