"""The prior fit on a synthetic photo with known parameters (planted.py): it finds them again."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.errors import SettingError
from fitter.config import HeadPriorConfig
from fitter.stages.prior import losses
from fitter.stages.prior.fit import Problem, fit_head, lm_step, start, weights_of
from fitter.stages.prior.head import GROUPS, FitHead, axis_angle_matrix, umeyama
from representations.parametric import HeadModel, head_model
from representations.parametric.landmarks import LandmarkMap, load_landmark_map
from tests.fitter.stages.prior.planted import FACIAL, make_planted

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return head_model()


@pytest.fixture(scope="module")
def landmark_map() -> LandmarkMap:
    return load_landmark_map()


def test_pose_chain_is_the_model_posed(model: HeadModel):
    head = FitHead(model)
    gen = torch.Generator().manual_seed(0)
    p = head.unpack(head.pack(head.initial_params()).repeat(2, 1))
    p.neck[:], p.head[:] = torch.randn(2, 3, generator=gen) * 0.2, torch.randn(2, 3, generator=gen) * 0.2
    p.phenotype[:] = torch.rand(2, 6, generator=gen)
    p.local[:] = torch.rand(2, len(head.free_names), generator=gen) - 0.5
    p.facial[:] = torch.rand(2, 52, generator=gen) * 0.3
    ours = head.anny_vertices(p)
    theirs = model(p.phenotype, head.local_changes(p), p.facial, head.full_pose(p))
    assert (ours - theirs).abs().max() < 1e-5
    ids = torch.tensor([3, 1000, 4500])
    assert torch.allclose(head.anny_vertices(p, rows=head.rows(ids)), ours[:, ids], atol=1e-6)


def test_tied_pairs_and_head_only_changes(model: HeadModel):
    tied, untied = FitHead(model), FitHead(model, tie_symmetric=False)
    assert "ear-lobe-incr" in tied.free_names and "l-ear-lobe-incr" in untied.free_names
    assert len(untied.free_names) > len(tied.free_names) > 50
    assert not any(n.startswith(("l-lowerarm", "breast", "measure-waist")) for n in untied.free_names)
    column = tied.expand[tied.free_names.index("ear-lobe-incr")]
    names = model.local_change_names
    assert column[names.index("l-ear-lobe-incr")] == column[names.index("r-ear-lobe-incr")] == 1 and column.sum() == 2


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    rotation = axis_angle_matrix(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)).numpy()
    r, s, t = umeyama(src, 2.5 * src @ rotation.T + [1.0, 2.0, 3.0])
    assert np.allclose(r, rotation) and math.isclose(s, 2.5) and np.allclose(t, [1.0, 2.0, 3.0])


def test_planted_parameters_are_recovered(model: HeadModel, landmark_map: LandmarkMap):
    planted = make_planted(model, landmark_map)
    result = fit_head(model, landmark_map, planted.targets, HeadPriorConfig())
    vertices = result.head.world_vertices(result.params)[0]
    height = float(planted.vertices[:, 1].max() - planted.vertices[:, 1].min())
    error = (vertices - planted.vertices).norm(dim=1) / height
    assert error.mean() < 0.01 and error.quantile(0.95) < 0.02, (float(error.mean()), float(error.quantile(0.95)))
    assert result.landmark_rmse_px < 0.5 and result.iris_rmse_px < 0.5
    names = model.facial_action_names
    recovered = dict(zip(names, result.params.facial[0].tolist()))
    for name, value in FACIAL.items():
        assert abs(recovered[name] - value) <= 0.15, (name, recovered[name], value)
    assert max(v for n, v in recovered.items() if n not in FACIAL) <= 0.08, recovered


def test_cephalic_term_is_the_distance_to_the_adult_band():
    def box(breadth: float, length: float) -> torch.Tensor:
        return torch.tensor([[[-breadth / 2, 0.0, -length / 2], [breadth / 2, 1.0, length / 2]]])

    assert float(losses.loss_cephalic(box(0.8, 1.0))) == 0.0
    assert float(losses.loss_cephalic(box(0.95, 1.0))) == pytest.approx(0.10, abs=1e-6)
    assert float(losses.loss_cephalic(box(0.65, 1.0))) == pytest.approx(0.10, abs=1e-6)


def skull_ratio(head: FitHead, params, ids: torch.Tensor) -> float:
    points = head.anny_vertices(params)[0, ids] @ head.axes.T
    return float(np.ptp(points[:, 0].numpy()) / np.ptp(points[:, 2].numpy()))


def test_the_cephalic_term_lengthens_a_round_skull(model: HeadModel, landmark_map: LandmarkMap):
    """Levenberg-Marquardt steps on the shape with the cephalic term alone take a skull planted
    round (wide, short at the back) into the configured band (`prior.cephalic_band`), the default's and a wider one's."""
    planted = make_planted(model, landmark_map)
    head = FitHead(model)
    params = start(head, landmark_map, planted.targets)
    for name, value in (("head-scale-horiz-incr", 1.0), ("head-back-scale-depth-incr", -1.0)):
        params.local[0, head.free_names.index(name)] = value
    planted_theta = head.pack(params)[0]
    offsets = head.offsets()
    index = torch.cat([torch.arange(*offsets[name]) for name in GROUPS["shape"]])
    for band in (HeadPriorConfig().cephalic_band, [0.75, 0.85]):
        problem = Problem(head, landmark_map, planted.targets, weights_of(HeadPriorConfig()), tuple(band))
        ids = problem.cranium_ids
        theta, damping = planted_theta, 1e-3
        assert skull_ratio(head, head.unpack(theta[None]), ids) > 0.87
        for _ in range(10):
            theta, damping, _ = lm_step(problem, theta, index, {"cephalic"}, damping)
        assert band[1] - 0.01 <= skull_ratio(head, head.unpack(theta[None]), ids) <= band[1] + 0.001, band


def test_the_cephalic_band_is_checked():
    assert HeadPriorConfig().cephalic_band[1] < 0.85  # nearer the adult mean than the band's rounder edge
    for bad in ([0.9, 0.8], [0.0, 0.8], [0.8]):
        with pytest.raises(SettingError):
            HeadPriorConfig(cephalic_band=bad)
