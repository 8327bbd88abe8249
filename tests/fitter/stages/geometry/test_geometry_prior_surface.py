"""fit.geometry.lambda_prior_surface: the geometry stage reads `init/prior_surface.npz` only from a parametric
init, ignores the term with a warning otherwise, and the config key is off in the hero and on in the preview."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from fitter.config import Config, GeometryConfig, load_config
from fitter.context import RunContext
from fitter.stages.geometry.stage import load_prior_surface
from fitter.stages.init.parametric import PRIOR_SURFACE
from tests.helpers import PREVIEW

HERO = PREVIEW.replace("preview.yaml", "portrait3d.yaml")


def context(tmp_path, *overrides: str) -> RunContext:
    return RunContext(load_config(PREVIEW, list(overrides)), tmp_path, torch.device("cpu"))


def write_init(tmp_path, kind: str, points: int = 10) -> dict:
    folder = tmp_path / "init"
    folder.mkdir(parents=True, exist_ok=True)
    info = {"kind": kind}
    (folder / "init.json").write_text(json.dumps(info))
    if kind == "parametric":
        np.savez(folder / PRIOR_SURFACE, points=np.zeros((points, 3), np.float32), normals=np.zeros((points, 3), np.float32),
                 weights=np.ones(points, np.float32), view_dir=np.array([0, 0, 1], np.float32))
    return info


def test_defaults_off_in_the_hero_on_in_the_preview():
    assert GeometryConfig().lambda_prior_surface == 0 and Config().fit.geometry.lambda_prior_surface == 0
    assert load_config(HERO).fit.geometry.lambda_prior_surface == 0
    assert load_config(PREVIEW).fit.geometry.lambda_prior_surface > 0
    assert load_config(PREVIEW, ["fit.geometry.lambda_prior_surface=0"]).fit.geometry.lambda_prior_surface == 0


def test_read_from_a_parametric_init(tmp_path, caplog):
    info = write_init(tmp_path, "parametric")
    with caplog.at_level(logging.WARNING, logger="headfit"):
        points, weights = load_prior_surface(context(tmp_path), info)
    assert points.shape == (10, 3) and weights.shape == (10,) and not caplog.records
    assert load_prior_surface(context(tmp_path, "fit.geometry.lambda_prior_surface=0"), info) is None


@pytest.mark.parametrize("kind", ["template", "mesh", "gan_inversion"])
def test_ignored_with_a_warning_for_other_inits(tmp_path, caplog, kind):
    info = write_init(tmp_path, kind)
    with caplog.at_level(logging.WARNING, logger="headfit"):
        assert load_prior_surface(context(tmp_path), info) is None
    assert any("lambda_prior_surface" in r.getMessage() and "parametric" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="headfit"):
        assert load_prior_surface(context(tmp_path, "fit.geometry.lambda_prior_surface=0"), info) is None
    assert not caplog.records  # switched off: nothing to say
