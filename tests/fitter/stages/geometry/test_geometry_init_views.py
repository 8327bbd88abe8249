"""Geometry phase 1b: the DMTet follows the init's normal views (the seed paper's first phase)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from fitter.cli import main
from fitter.config import GeometryConfig
from fitter.stages.geometry.init_views import (
    InitViewFit,
    agreement,
    load_init_views,
    read_init_views,
    render_init_views,
    ring_cameras,
)
from fitter.stages.geometry.losses import loss_normal_cosine
from fitter.stages.init.gan import write_normal_views
from representations.cameras import Camera
from representations.dmtet import DMTet, DMTetConfig
from representations.hashgrid import HashGridConfig
from representations.mesh import Mesh
from representations.render import Rasterizer
from tests.helpers import EXAMPLE, PREVIEW

CPU = torch.device("cpu")
FIELD = HashGridConfig(levels=8, log2_table=15, base_res=8, finest_res=256, hidden=32, layers=1)


def ellipsoid() -> Mesh:
    sphere = trimesh.creation.icosphere(4)
    sphere.apply_scale((0.8, 0.62, 0.5))
    return Mesh(torch.tensor(sphere.vertices, dtype=torch.float32), torch.tensor(sphere.faces))


def sphere_dmtet() -> DMTet:
    torch.manual_seed(0)
    dmtet = DMTet(DMTetConfig(resolution=32, bound=1.3, hashgrid=FIELD, seed=1, backend="torch"))
    dmtet.fit_sdf(lambda p: p.norm(dim=-1) - 0.6, steps=100)
    return dmtet


def test_loss_normal_cosine_is_one_minus_cos_inside_the_mask():
    up = torch.tensor([0.0, 1.0, 0.0]).expand(4, 4, 3)
    side = torch.tensor([1.0, 0.0, 0.0]).expand(4, 4, 3)
    mask = torch.zeros(4, 4, 1)
    mask[:2] = 1.0
    assert float(loss_normal_cosine(up, up, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss_normal_cosine(up, side, mask)) == pytest.approx(1.0)
    assert float(loss_normal_cosine(up, -up, mask)) == pytest.approx(2.0)
    mixed = up.clone()
    mixed[2:] = -up[2:]  # wrong only outside the mask
    assert float(loss_normal_cosine(mixed, up, mask)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("lambda_init_mask", [0.0, 1.0])
def test_normal_views_pull_a_sphere_onto_an_ellipsoid(lambda_init_mask):
    """Even with no silhouette term, the normal loss alone moves the surface onto the views' shape."""
    cfg = GeometryConfig(render_size=64, init_view_count=8, init_view_batch=2, init_view_lr=0.005, lambda_init_mask=lambda_init_mask)
    rasterizer = Rasterizer("torch")
    views = render_init_views(ellipsoid(), ring_cameras(cfg), rasterizer, CPU)
    dmtet = sphere_dmtet()
    before = agreement(dmtet, views, rasterizer)
    optimizer = torch.optim.Adam(dmtet.parameters(), lr=cfg.init_view_lr, betas=(0.9, 0.99))
    step = InitViewFit(cfg, dmtet, views, np.random.default_rng(0), rasterizer)
    for i in range(40):
        optimizer.zero_grad(set_to_none=True)
        losses = step(i)
        assert set(losses) == {"loss_init_normal"} | ({"loss_init_mask"} if lambda_init_mask else set())
        sum(losses.values()).backward()
        optimizer.step()
    after = agreement(dmtet, views, rasterizer)
    assert before["normal_cosine"] < 0.96 and before["silhouette_iou"] < 0.85
    assert after["normal_cosine"] > 0.99 and after["silhouette_iou"] > 0.97, (before, after)


def test_views_written_by_the_gan_init_are_read_back_at_the_render_size(tmp_path):
    mesh, rasterizer = ellipsoid(), Rasterizer("torch")
    cameras = [Camera.orbit(azimuth, -5.0, 2.7, 25.0, 128) for azimuth in (0.0, 90.0, 200.0)]
    write_normal_views(mesh, cameras, tmp_path / "normals", "torch")
    views = read_init_views(tmp_path / "normals", 64, CPU)
    rendered = render_init_views(mesh, [c.resized(64) for c in cameras], rasterizer, CPU)
    assert len(views) == 3 and views.normals.shape == (3, 64, 64, 3) and views.masks.shape == (3, 64, 64, 1)
    for mine, theirs in zip(views.cameras, rendered.cameras):
        assert np.allclose(mine.w2c, theirs.w2c) and mine.width == 64 and math.isclose(mine.fx, theirs.fx)
    both = (views.masks * rendered.masks)[..., 0] > 0
    iou = both.sum() / ((views.masks + rendered.masks)[..., 0] > 0).sum()
    cos = torch.nn.functional.cosine_similarity(views.normals, rendered.normals, dim=-1)[both]
    assert float(iou) > 0.95 and float(cos.mean()) > 0.98
    assert torch.allclose(views.normals.norm(dim=-1)[views.masks[..., 0] > 0], torch.ones(1), atol=1e-4)
    assert read_init_views(tmp_path / "missing", 64, CPU) is None


def test_without_init_views_a_ring_is_rendered_from_the_init_mesh(tmp_path):
    cfg = GeometryConfig(render_size=48, init_view_count=6, init_view_elevations=[-5.0, 30.0])
    views = load_init_views(tmp_path, ellipsoid(), cfg, Rasterizer("torch"), CPU)
    assert len(views) == 6 and views.normals.shape == (6, 48, 48, 3)
    elevations = [math.degrees(math.asin(c.position[1] / np.linalg.norm(c.position))) for c in views.cameras]
    assert np.allclose(elevations, [-5.0, 30.0] * 3, atol=1e-6)
    assert all(float(m.mean()) > 0.1 for m in views.masks)  # every view sees the head


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("fit.geometry.init_view_steps=-1", "init_view_steps"),
        ("fit.geometry.init_view_batch=0", "init_view_batch"),
        ("fit.geometry.init_view_elevations=[]", "init_view_elevations"),
        ("fit.geometry.init_view_elevations=[95]", "init_view_elevations"),
        ("fit.geometry.init_view_radius=1.0", "init_view_radius"),
        ("fit.geometry.lambda_init_normal=-1", "lambda_init_normal"),
    ],
)
def test_bad_init_view_settings_are_one_line_exit_2(tmp_path, capsys, override, fragment):
    code = main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(tmp_path / "out"), override])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
