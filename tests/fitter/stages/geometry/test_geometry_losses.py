"""Geometry loss terms: each is zero exactly when it should be, and pulls the right way."""

from __future__ import annotations

import pytest
import torch

from fitter.stages.geometry.losses import (
    loss_landmarks_depth,
    loss_landmarks_on_surface,
    loss_mask,
    loss_prior,
    loss_prior_surface,
    loss_reference_depth_mse,
    loss_reference_depth_pearson,
    loss_reference_normal,
    loss_symmetry,
)


def sphere(centre=(0.0, 0.0, 0.0), radius=0.5):
    c = torch.tensor(centre)
    return lambda p: (p - c).norm(dim=-1) - radius


def test_depth_losses_ignore_scale_and_shift():
    torch.manual_seed(0)
    depth = torch.rand(32, 32, 1) + 3.0
    mask = torch.zeros(32, 32, 1)
    mask[4:28, 4:28] = 1.0
    target = 7.0 * depth - 2.0
    target[~mask.bool()] = 123.0  # outside the mask: ignored
    assert loss_reference_depth_mse(depth, target, mask) < 1e-8
    assert loss_reference_depth_pearson(depth, target, mask) < 1e-6
    assert loss_reference_depth_pearson(depth, -target, mask) > 1.99
    noisy = target + torch.randn_like(target)
    assert loss_reference_depth_mse(depth, noisy, mask) > 1e-3


def test_depth_mse_gradient_points_towards_the_aligned_target():
    depth = torch.linspace(3, 4, 64).reshape(8, 8, 1).requires_grad_(True)
    target = depth.detach().clone()
    target[0, 0] += 0.5  # one pixel farther in the target
    loss_reference_depth_mse(depth, target, torch.ones(8, 8, 1)).backward()
    assert depth.grad[0, 0, 0] < 0  # descending pushes that pixel farther


def test_normal_loss_is_masked():
    rendered = torch.zeros(8, 8, 3)
    target = torch.ones(8, 8, 3)
    mask = torch.zeros(8, 8, 1)
    assert loss_reference_normal(rendered, target, mask) == 0
    mask[0, 0] = 1
    assert loss_reference_normal(rendered, target, mask) == 1.0


def test_landmark_terms():
    sdf = sphere(radius=0.5)
    on = torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.5, 0.0]])
    assert loss_landmarks_on_surface(sdf, on) < 1e-12
    assert loss_landmarks_on_surface(sdf, on * 1.2) > 0.009
    depth = torch.full((16, 16, 1), 4.0)
    coverage = torch.ones(16, 16, 1)
    pixels = torch.tensor([[8.0, 8.0], [3.0, 12.0]])
    assert loss_landmarks_depth(depth, coverage, pixels, torch.tensor([4.0, 4.0])) == 0
    assert loss_landmarks_depth(depth, coverage, pixels, torch.tensor([4.4, 4.0])) > 0
    assert loss_landmarks_depth(depth, torch.zeros(16, 16, 1), pixels, torch.tensor([9.0, 9.0])) == 0  # not covered yet


def test_symmetry_is_zero_for_symmetric_shapes_and_copies_the_seen_side():
    points = torch.randn(256, 3) * 0.5
    view = torch.tensor([0.6, 0.0, 0.8])  # camera on the subject's left (+x)
    assert loss_symmetry(sphere(), points, view) < 1e-12
    offset = torch.zeros(3, requires_grad=True)
    lopsided = lambda p: (p - torch.stack([offset[0] + 0.1, offset[1], offset[2]])).norm(dim=-1) - 0.5  # noqa: E731
    loss = loss_symmetry(lopsided, points, view)
    assert loss > 0
    loss.backward()
    assert offset.grad is not None and torch.isfinite(offset.grad).all()


def test_prior_and_mask():
    points = torch.randn(128, 3) * 0.4
    assert loss_prior(sphere(), sphere(), points, 0.1) == 0
    assert loss_prior(sphere(radius=0.45), sphere(), points, 0.1) > 0
    a = torch.zeros(4, 4, 1)
    assert loss_mask(a, a) == 0 and loss_mask(a, torch.ones(4, 4, 1)) == 1


def test_prior_surface_is_zero_on_the_points_and_pulls_the_surface_to_them():
    torch.manual_seed(0)
    points = torch.nn.functional.normalize(torch.randn(256, 3), dim=-1) * 0.5
    weights = torch.rand(256)
    assert loss_prior_surface(sphere(radius=0.5), points, weights) < 1e-12
    for radius, sign in ((0.45, -1.0), (0.55, 1.0)):  # too small: grow; too large: shrink
        r = torch.tensor(radius, requires_grad=True)
        loss = loss_prior_surface(lambda p, r=r: p.norm(dim=-1) - r, points, weights)
        assert loss.item() == pytest.approx(0.05**2, rel=1e-4)
        loss.backward()
        assert torch.sign(r.grad) == sign  # descending moves r towards 0.5


def test_prior_surface_weights_decide_which_points_count():
    points = torch.tensor([[0.5, 0.0, 0.0], [0.6, 0.0, 0.0]])  # the second is 0.1 off the surface
    assert loss_prior_surface(sphere(radius=0.5), points, torch.tensor([1.0, 0.0])) == 0
    assert loss_prior_surface(sphere(radius=0.5), points, torch.tensor([1.0, 1.0])).item() == pytest.approx(0.005, rel=1e-4)
