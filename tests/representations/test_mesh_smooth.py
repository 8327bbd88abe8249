"""representations/mesh/smooth.py: the roughness figure, weighted Taubin smoothing and `fair_to_reference` (the
geometry stage's post-process) on spheres with noise, a fin and a raised cap."""

from __future__ import annotations

import torch

from representations.mesh import (
    fair_to_reference,
    icosphere,
    normal_roughness_deg,
    roughness_deg,
    side_back_region,
    taubin_smooth,
)
from representations.mesh.smooth import mean_edge_length, ring_average, rounds_for_sigma


def unit_sphere(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=-1) - 1.0


def sphere(radius: float = 1.0, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An icosphere (2562 vertices, edges ~0.076) with each vertex's radius scaled by 1 ± `noise` (uniform)."""
    mesh = icosphere(4)
    scale = 1.0 + noise * (2.0 * torch.rand(mesh.num_verts, generator=torch.Generator().manual_seed(seed)) - 1.0)
    return mesh.verts * (radius * scale)[:, None], mesh.faces


def everywhere(verts: torch.Tensor) -> torch.Tensor:
    return torch.ones(verts.shape[0], dtype=torch.bool)


def smooth_fully(verts: torch.Tensor, faces: torch.Tensor, weight: torch.Tensor | float = 1.0, **kwargs) -> torch.Tensor:
    rounds = rounds_for_sigma(0.15, mean_edge_length(verts, faces))
    options = {"offset_rounds": rounds, "max_correction": 0.1, "gradient_step": 0.02} | kwargs
    return fair_to_reference(verts, faces, unit_sphere, weight, **options)


def test_roughness_is_small_on_a_smooth_sphere_and_grows_with_noise():
    verts, faces = sphere()
    noisy, _ = sphere(noise=0.02)
    smooth_deg, noisy_deg = roughness_deg(verts, faces, everywhere(verts)), roughness_deg(noisy, faces, everywhere(noisy))
    assert smooth_deg < 1.0 and noisy_deg > 5.0
    assert normal_roughness_deg(verts, faces).shape == (verts.shape[0],)


def test_roughness_counts_only_the_sides_and_back_by_default():
    verts, faces = sphere()
    region = side_back_region(verts)
    front = ~region
    bumpy = verts * (1.0 + 0.03 * torch.rand(verts.shape[0], generator=torch.Generator().manual_seed(1)))[:, None]
    lumps_in_front = torch.where(front[:, None], bumpy, verts)
    lumps_behind = torch.where(region[:, None], bumpy, verts)
    assert 0.2 < region.float().mean() < 0.8
    assert roughness_deg(lumps_in_front, faces) < 1.5 < 3.0 < roughness_deg(lumps_behind, faces)
    assert roughness_deg(lumps_in_front.numpy(), faces.numpy()) == roughness_deg(lumps_in_front, faces)  # numpy in, same figure


def test_ring_average_keeps_a_constant_and_spreads_a_spike():
    verts, faces = sphere()
    assert torch.allclose(ring_average(torch.full((verts.shape[0],), 0.5, dtype=torch.float64), faces, 5), torch.tensor(0.5, dtype=torch.float64))
    spike = torch.zeros(verts.shape[0], dtype=torch.float64)
    spike[0] = 1.0
    spread = ring_average(spike, faces, 3)
    assert spread[0] < 0.5 and int((spread > 0).sum()) > 20 and 0.7 < float(spread.sum()) < 1.3


def test_taubin_with_full_weight_removes_noise_and_keeps_the_volume():
    noisy, faces = sphere(noise=0.03)
    smoothed = taubin_smooth(noisy, faces, 1.0, iterations=30)
    assert roughness_deg(smoothed, faces, everywhere(noisy)) < 0.35 * roughness_deg(noisy, faces, everywhere(noisy))
    radius = smoothed.norm(dim=1)
    assert abs(float(radius.mean()) - float(noisy.norm(dim=1).mean())) < 0.02 and float(radius.std()) < 0.01


def test_zero_weight_pins_every_vertex():
    noisy, faces = sphere(noise=0.03)
    assert torch.equal(taubin_smooth(noisy, faces, 0.0, iterations=30), noisy)
    assert torch.equal(smooth_fully(noisy, faces, 0.0), noisy)
    assert not torch.equal(smooth_fully(noisy, faces, 1.0), noisy)


def test_only_weighted_vertices_move():
    noisy, faces = sphere(noise=0.03)
    back = noisy[:, 2] < 0.0
    for smoothed in (taubin_smooth(noisy, faces, back.double(), iterations=20), smooth_fully(noisy, faces, back.double())):
        moved = (smoothed - noisy).norm(dim=1)
        assert float(moved[~back].max()) == 0.0 and float(moved[back].mean()) > 0.005
        assert roughness_deg(smoothed, faces, back) < 0.5 * roughness_deg(noisy, faces, back)
        far_front = noisy[:, 2] > 0.5  # beyond the 4 rings the roughness figure looks at
        assert roughness_deg(smoothed, faces, far_front) == roughness_deg(noisy, faces, far_front)


def test_fair_to_reference_takes_the_reference_shape_at_the_smoothed_offset():
    """Lumps go and the radius stays; a uniform offset (hair over the skull) is kept, not flattened onto the reference."""
    for radius in (1.0, 1.08):
        noisy, faces = sphere(radius, noise=0.03)
        smoothed = smooth_fully(noisy, faces)
        assert roughness_deg(smoothed, faces, everywhere(noisy)) < 0.3 * roughness_deg(noisy, faces, everywhere(noisy))
        after = smoothed.norm(dim=1)
        assert abs(float(after.mean()) - radius) < 0.02 * radius and float(after.std()) < 0.01


def test_a_thin_fin_is_flattened():
    """A sheet one to two vertices wide standing 0.25 off the sphere (what the mask loss grows at the silhouette)."""
    verts, faces = sphere()
    fin = (verts[:, 0].abs() < 0.06) & (verts[:, 2] > 0.3)
    with_fin = verts * (1.0 + 0.25 * fin.float())[:, None]
    assert 20 < int(fin.sum()) < 200
    flattened = smooth_fully(with_fin, faces)
    assert float(flattened.norm(dim=1).max()) < 1.05
    kept = smooth_fully(with_fin, faces, fin_rings=0)  # without the opening the fin's own offset survives the average
    assert float(kept.norm(dim=1).max()) > 1.15


def test_a_broad_raised_cap_keeps_its_height():
    """A plateau 0.12 above the reference with a steep wall (a hair mass the init lacks) is not pressed down."""
    verts, faces = sphere()
    cap = verts[:, 1] > 0.5
    raised = verts * (1.0 + 0.12 * cap.float())[:, None]
    smoothed = smooth_fully(raised, faces, max_correction=0.3)
    top = verts[:, 1] > 0.8
    assert abs(float(smoothed[top].norm(dim=1).mean()) - 1.12) < 0.02
    assert abs(float(smoothed[verts[:, 1] < 0.2].norm(dim=1).mean()) - 1.0) < 0.02
    near_the_wall = (verts[:, 1] > 0.6) & (verts[:, 1] < 0.7)  # the plateau's rim: a plain average would slope it
    assert float(smoothed[near_the_wall].norm(dim=1).mean()) > 1.115
    assert float(smooth_fully(raised, faces, max_correction=0.3, cliff_slope=0.0)[near_the_wall].norm(dim=1).mean()) < 1.11


def test_keep_offset_lifts_a_sunken_back_onto_the_reference_and_leaves_outward_offsets():
    """A back sunk 0.06 below the reference (what the preview's Laplacian does to the unseen back) goes back onto
    it with keep_offset=0, partly with 0.5, not at all with 1; a front raised by 0.06 (hair) keeps its height."""
    verts, faces = sphere()
    back, front = verts[:, 2] < -0.2, verts[:, 2] > 0.2
    shaped = verts * (1.0 - 0.06 * back.float() + 0.06 * front.float())[:, None]
    deep_back, deep_front = verts[:, 2] < -0.6, verts[:, 2] > 0.6
    for keep, expected in ((1.0, 0.94), (0.5, 0.97), (0.0, 1.0)):
        smoothed = smooth_fully(shaped, faces, keep_offset=keep)
        assert abs(float(smoothed[deep_back].norm(dim=1).mean()) - expected) < 0.006, keep
        assert abs(float(smoothed[deep_front].norm(dim=1).mean()) - 1.06) < 0.006, keep
    assert torch.equal(smooth_fully(shaped, faces, 0.0, keep_offset=0.0), shaped)  # weight 0 still pins
