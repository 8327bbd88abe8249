"""The hero fit's geometry stage with identity-aware score distillation, on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fitter.cli import main
from fitter.config import REPO_ROOT, load_config
from fitter.requirements import required_models
from fitter.training import loop as loop_module
from representations.mesh import read_mesh
from tests.helpers import EXAMPLE, SMOKE

HERO = str(REPO_ROOT / "configs" / "portrait3d.yaml")
TINY = ["models.preset=tiny-random", "fit.texture.mode=projection", "reference.source=none", "fit.geometry.guidance_size=64",
        "fit.geometry.lambda_isd=0.001"]


def hero_fit(out: Path, *extra: str) -> int:
    return main(["--image", EXAMPLE, "--config", HERO, "--out", str(out), *SMOKE, *TINY, *extra])


def history(out: Path) -> dict:
    return torch.load(out / "geometry" / "sculpt.pt", weights_only=True)["history"]


@pytest.fixture(scope="module")
def hero_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hero") / "run"
    assert hero_fit(out, "--stop-after", "geometry") == 0
    return out


def test_tiny_hero_geometry_runs_isd_every_third_step(hero_run):
    steps = history(hero_run)
    isd_steps = [step for step, _ in steps["loss_isd"]]
    assert isd_steps == [3, 6, 9, 12]  # steps 2, 5, 8, 11 (0-based) recorded after they ran
    assert all(np.isfinite(v) for _, v in steps["loss_isd"])
    mask_steps = {step for step, _ in steps["loss_mask"]}
    assert not mask_steps & set(isd_steps) and len(mask_steps) == 8
    mesh = read_mesh(hero_run / "geometry" / "mesh.ply")
    assert mesh.num_faces > 500
    identity = np.load(hero_run / "subject" / "identity.npz")
    assert "arcface" in identity.files  # the tiny preset supplies the ArcFace stand-in to the intake
    saved = (hero_run / "config.yaml").read_text()
    assert "preset: tiny-random" in saved  # the run records what the user asked for, not cache paths


def test_tiny_hero_geometry_first_fits_the_init_normal_views(hero_run):
    saved = torch.load(hero_run / "geometry" / "init_views.pt", weights_only=True)
    assert saved["step"] == 8  # the dry-run schedule of phase 1b
    assert [step for step, _ in saved["history"]["loss_init_normal"]] == list(range(1, 9))
    assert {"loss_init_normal", "loss_init_mask"} <= set(saved["history"])
    summary = json.loads((hero_run / "geometry" / "geometry.json").read_text())
    assert summary["init_fit_error"] < 0.05
    assert summary["init_view_agreement"]["normal_cosine"] > 0.8 and summary["init_view_agreement"]["silhouette_iou"] > 0.8


# The highest step to stop at: a stop asked during phase 1b's last step (7) halts the sculpt before its
# first step, but one asked during the sculpt's last step (11) lets the stage, and so this run, finish.
@pytest.mark.parametrize("phase, highest", [("init_views", 7), ("sculpt", 10)])
def test_resume_with_isd_matches_uninterrupted(hero_run, tmp_path, monkeypatch, seeded_rng, phase, highest):
    """Stopped at a random step of geometry phase 1b or 2, a resumed fit ends where the uninterrupted one did."""
    stop = int(seeded_rng.integers(1, highest, endpoint=True))
    original = loop_module.TrainLoop._one_step

    def one_step(self, current: int):
        if self.stage == "geometry" and self.name == phase and current == stop:
            self.ctx.stop.requested = True
        return original(self, current)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(loop_module.TrainLoop, "_one_step", one_step)
        assert hero_fit(out, "--stop-after", "geometry") == 130, f"asked to stop at {phase} step {stop}"
    assert hero_fit(out, "--stop-after", "geometry", "--resume") == 0
    a, b = read_mesh(hero_run / "geometry" / "mesh.ply"), read_mesh(out / "geometry" / "mesh.ply")
    assert a.num_faces == b.num_faces and np.array_equal(a.verts.numpy(), b.verts.numpy())


@pytest.mark.parametrize(
    "name, absent",
    [
        ("no_identity", set()),
        ("no_landmark_control", {"models.controlnet_landmarks"}),
        ("plain_sds", {"models.controlnet_landmarks"}),
    ],
)
def test_ablations_ask_only_for_the_models_they_use(name, absent):
    cfg = load_config(REPO_ROOT / "configs" / "ablations" / f"{name}.yaml")
    keys = {spec.key for spec in required_models(cfg)}
    assert "models.normal_sd" in keys and not keys & absent  # ISD runs on the normal-adapted SD1.5


def test_every_ablation_changes_one_switch():
    hero = load_config(HERO)
    expected = {
        "no_identity": lambda c: not c.fit.geometry.isd.identity_tokens,
        "no_landmark_control": lambda c: not c.fit.geometry.isd.landmark_control,
        "no_reference_normal": lambda c: c.fit.geometry.lambda_ref_normal == 0,
        "no_reference_depth": lambda c: c.fit.geometry.lambda_ref_depth == 0 and c.fit.geometry.lambda_ref_depth_pearson == 0,
        "plain_sds": lambda c: not c.fit.geometry.isd.identity_tokens and not c.fit.geometry.isd.landmark_control,
        "vsd": lambda c: c.fit.geometry.isd.vsd,
    }
    files = sorted(p.stem for p in (REPO_ROOT / "configs" / "ablations").glob("*.yaml"))
    assert files == sorted(expected)
    for name, check in expected.items():
        cfg = load_config(REPO_ROOT / "configs" / "ablations" / f"{name}.yaml")
        assert check(cfg) and not check(hero), name


def test_hero_command_with_tiny_models_completes(tmp_path):
    """The issue's dry run, verbatim: the hero config with the tiny-random preset, every stage."""
    out = tmp_path / "run"
    assert main(["--image", EXAMPLE, "--config", HERO, "--out", str(out), "models.preset=tiny-random"]) == 0
    for name in ("head.glb", "head.obj", "head.png", "head_rigged.glb", "turntable.mp4", "metrics.json", "report.html",
                 "reference/normal.png", "reference/depth.png"):
        assert (out / name).is_file(), name
    saved = load_config(out / "config.yaml")
    assert saved.models.preset == "tiny-random" and saved.fit.geometry.steps == 24  # the dry-run schedule, recorded
    assert {"loss_isd", "loss_ref_normal", "loss_ref_depth"} <= set(history(out))


def test_dry_run_keeps_smaller_values_and_can_be_switched_off():
    from fitter.dry_run import scaled, wanted

    cfg = load_config(HERO, ["models.preset=tiny-random", "fit.geometry.steps=10"])
    assert wanted(cfg) and scaled(cfg).fit.geometry.steps == 10 and scaled(cfg).fit.geometry.render_size == 96
    assert not wanted(load_config(HERO, ["models.preset=tiny-random", "run.dry_run=false"]))
    assert not wanted(load_config(HERO))


def test_tiny_preset_still_needs_the_models_it_does_not_build(tmp_path, capsys):
    """The preset replaces the SD family, ControlNets, IP-Adapter and ArcFace; estimators and PanoHead
    are still the user's, and a missing one stops the run before any work."""
    assert required_models(load_config(HERO, ["models.preset=tiny-random"])) == []
    extra = ["models.preset=tiny-random", "reference.source=estimator", f"models.normal_estimator={tmp_path / 'none'}",
             "init.kind=gan_inversion", f"models.panohead={tmp_path / 'g.safetensors'}"]
    assert {spec.key for spec in required_models(load_config(HERO, extra))} == {"models.normal_estimator", "models.panohead"}
    out = tmp_path / "out"
    assert main(["--image", EXAMPLE, "--config", HERO, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "models.normal_estimator" in err and "models.panohead" in err
    assert not out.exists()
