"""The whole fit at smoke scale: every output valid, exact resume after an interruption, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from fitter.cli import main
from fitter.config import REPO_ROOT
from fitter.training import loop as loop_module
from representations.cameras import EXPORT_AZIMUTHS, view_name
from representations.mesh import read_mesh
from tests.helpers import EXAMPLE, PREVIEW, SMOKE, signal_when_logged


def fit(out: Path, *extra: str) -> int:
    return main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), *SMOKE, *extra])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert fit(out) == 0
    return out


def test_outputs_exist_and_are_valid(smoke_run):
    out = smoke_run
    glb = trimesh.load(out / "head.glb", force="mesh")
    assert len(glb.faces) > 500 and glb.visual.material.baseColorTexture is not None
    obj = read_mesh(out / "head.obj")
    assert obj.texture is not None and obj.uv is not None and obj.num_faces == len(glb.faces)
    assert "Kd 1" in (out / "head.mtl").read_text()
    assert Image.open(out / "head.png").size == (256, 256)
    for azimuth in EXPORT_AZIMUTHS:
        image = Image.open(out / "views" / f"{view_name(azimuth, 0)}.png")
        assert image.size == (128, 128)
    assert sorted(p.name for p in (out / "views").glob("az*.png")) == sorted(
        f"{n}.png" for n in ("az+000_el+00", "az+030_el+00", "az-030_el+00", "az+060_el+00", "az-060_el+00",
                             "az+090_el+00", "az-090_el+00", "az+180_el+00"))
    from fitter.stages.export.video import read_mp4_frames

    frames = read_mp4_frames(out / "turntable.mp4")
    assert len(frames) == 6 and frames[0].shape == (128, 128, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["stage_wall_s"]) >= {"intake", "init", "geometry", "texture"}
    # Floors well under this smoke fit's 24.4 dB / 0.83 and far above an all-black texture's 6 dB / 0.1.
    assert metrics["reference"]["psnr_db"] > 20.0 and 0.7 < metrics["reference"]["ssim"] <= 1
    texture = np.asarray(Image.open(out / "head.png").convert("RGB"), dtype=np.float32) / 255
    assert 0.2 < texture.mean() < 0.9 and texture.std() > 0.05
    # The face's SH lighting divided out (fit.texture.albedo): same size, same overall colour, a different image.
    stats = json.loads((out / "texture" / "texture.json").read_text())
    assert np.asarray(stats["lighting_sh"]).shape == (3, 9) and stats["lighting_face_samples"] > 1000
    assert 0 < stats["lighting_fit_rmse"] < 0.1
    # Every texel of the exported texture was filled; the unseen hair came from the photo's hair, not a flat fill.
    assert stats["unfilled_texels"] == 0 and stats["hair_synthesised"] and 0.2 < stats["hair_fraction"] < 0.9
    albedo = np.asarray(Image.open(out / "texture" / "albedo.png").convert("RGB"), dtype=np.float32) / 255
    assert albedo.shape == texture.shape and abs(albedo.mean() - texture.mean()) < 0.1 and np.abs(albedo - texture).mean() > 0.002
    assert set(metrics["identity"]) == {view_name(a, 0) for a in EXPORT_AZIMUTHS}
    assert "fit:" in (out / "config.yaml").read_text()
    assert (out / "run.log").read_text().count("done in") >= 4


def test_mesh_is_watertight_head(smoke_run):
    mesh = trimesh.load(smoke_run / "geometry" / "mesh.ply")
    assert mesh.is_watertight and mesh.volume > 0.5


def _interrupt_at(monkeypatch, stage: str, step: int) -> None:
    original = loop_module.TrainLoop._one_step

    def one_step(self, current: int):
        if self.stage == stage and current == step:
            self.ctx.stop.requested = True
        return original(self, current)

    monkeypatch.setattr(loop_module.TrainLoop, "_one_step", one_step)


def test_resume_after_interruption_matches_uninterrupted(smoke_run, tmp_path, monkeypatch, seeded_rng):
    stop_step = int(seeded_rng.integers(1, 11))
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_at(patch, "geometry", stop_step)
        assert fit(out) == 130
    assert (out / "geometry" / "sculpt.pt").is_file()
    assert not (out / "geometry" / "done.json").exists() and not (out / "head.glb").exists()
    assert fit(out, "--resume") == 0
    a, b = read_mesh(smoke_run / "geometry" / "mesh.ply"), read_mesh(out / "geometry" / "mesh.ply")
    assert a.num_faces == b.num_faces and np.array_equal(a.verts.numpy(), b.verts.numpy())
    tex_a = np.asarray(Image.open(smoke_run / "head.png"))
    tex_b = np.asarray(Image.open(out / "head.png"))
    assert np.array_equal(tex_a, tex_b)


def test_resume_skips_completed_stages(smoke_run, tmp_path):
    out = tmp_path / "run"
    assert fit(out, "--stop-after", "geometry") == 0
    assert not (out / "texture").exists()
    marker = json.loads((out / "geometry" / "done.json").read_text())
    assert fit(out, "--resume") == 0
    assert json.loads((out / "geometry" / "done.json").read_text()) == marker  # not redone
    assert (out / "head.glb").is_file()


def test_sigint_saves_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "run.py", "--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), *SMOKE,
            "fit.geometry.steps=400", "--stop-after", "geometry"]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = signal_when_logged(proc, out, "geometry/sculpt step", signal.SIGINT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert (out / "geometry" / "sculpt.pt").is_file()


def test_stop_after_each_stage(tmp_path):
    out = tmp_path / "run"
    assert fit(out, "--stop-after", "init") == 0
    assert (out / "init" / "mesh.ply").is_file() and not (out / "geometry").exists()
    info = json.loads((out / "init" / "init.json").read_text())
    assert info["kind"] == "parametric" and info["source"] == "prior/neutral.ply"
    assert (out / "init" / "prior_surface.npz").is_file() and (out / "prior" / "fit.json").is_file()


def test_user_mesh_init(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=3.0)
    sphere.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    path = tmp_path / "head.obj"
    sphere.export(path)
    out = tmp_path / "run"
    assert fit(out, "--stop-after", "init", "init.kind=mesh", f"init.mesh_path={path}", "init.up_axis=+z", "init.front_axis=-y") == 0
    mesh = read_mesh(out / "init" / "mesh.ply")
    assert abs(float(mesh.verts.abs().max()) - 0.9) < 0.03  # within a grid spacing of the init SDF


def test_reference_normal_and_depth_maps_are_used(tmp_path):
    """With normal.png and depth.png put in subject/ by hand (reference.source=none), the geometry stage adds their loss terms."""
    import torch

    from representations.cameras import Camera
    from representations.render import render

    out = tmp_path / "run"
    assert fit(out, "--stop-after", "init") == 0
    init = read_mesh(out / "init" / "mesh.ply")
    camera = Camera.from_dict(json.loads((out / "subject" / "camera.json").read_text())).resized(256)
    passes = render(init.verts, init.faces, camera, ("mask", "normal_cam", "depth"), backend="torch")
    mask = passes["mask"][..., 0].numpy() > 0.5
    normal = ((passes["normal_cam"].numpy() + 1) / 2 * 255 * mask[..., None]).round().astype(np.uint8)
    depth = passes["depth"][..., 0].numpy()
    scaled = np.where(mask, (depth - depth[mask].min()) / np.ptp(depth[mask]) * 60000 + 1000, 0).astype(np.uint16)
    Image.fromarray(normal).save(out / "subject" / "normal.png")
    Image.fromarray(scaled).save(out / "subject" / "depth.png")
    assert fit(out, "--stop-after", "geometry") == 0
    final = json.loads((out / "geometry" / "geometry.json").read_text())["final_losses"]
    assert {"loss_ref_normal", "loss_ref_depth", "loss_ref_depth_pearson"} <= set(final)
    assert all(np.isfinite(final[k]) for k in final)
    assert torch.is_tensor(passes["depth"])


def test_a_vanished_surface_is_one_clear_line(tmp_path, capsys):
    """Too few init-fit steps leave the field without a zero crossing: say what to change, exit 2."""
    out = tmp_path / "run"
    code = fit(out, "fit.geometry.init_fit_steps=2", "fit.geometry.init_fit_lr=0.0001")
    err = capsys.readouterr().err
    assert code == 2 and "fit.geometry.init_fit_steps" in err and "Traceback" not in err
