"""The hero config with the tiny random models: intake → init → geometry → texture (diffusion) → export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fitter.cli import main
from fitter.config import REPO_ROOT
from representations.mesh import read_mesh
from representations.render import texel_surface
from tests.helpers import EXAMPLE

HERO = str(REPO_ROOT / "configs" / "portrait3d.yaml")
TINY = [
    "models.preset=tiny-random", "fit.geometry.lambda_isd=0", "reference.source=none",
    "fit.geometry.steps=2", "fit.geometry.init_fit_steps=20", "fit.geometry.grid_resolution=32",
    "fit.geometry.render_size=64", "fit.geometry.band_rebuild_every=5", "fit.texture.resolution=128",
    "fit.texture.unwrap.max_faces=3000", "fit.texture.inpaint.gen_size=32", "fit.texture.inpaint.ddim.steps=2",
    "fit.texture.inpaint.erode_px=1", "fit.texture.refine.steps=6", "fit.texture.refine.render_size=32",
    "export.view_size=64", "export.turntable_frames=4", "export.turntable_size=64",
    "export.report=false", "run.checkpoint_every=2", "rig.enabled=false",
    "init.kind=template",  # at these few steps a 32³ grid cannot follow the parametric head's detail: 500 fragments
]


def fit(out: Path, *extra: str) -> int:
    return main(["--image", EXAMPLE, "--config", HERO, "--out", str(out), *TINY, *extra])


def test_hero_config_runs_the_diffusion_texture_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADFIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert fit(out) == 0
    stats = json.loads((out / "texture" / "texture.json").read_text())
    assert stats["mode"] == "diffusion" and stats["identity_tokens"] and stats["painted_fraction"] > 0.85
    assert sum(view["texels"] > 0 for view in stats["inpaint_views"]) >= 8 and len(stats["inpaint_views"]) == 15
    history = torch.load(out / "texture" / "refine.pt", weights_only=True)["history"]
    assert {"loss_sdedit_sse", "loss_perceptual", "loss_ref_l1", "loss_tv"} <= set(history)
    assert (out / "head.glb").is_file() and (out / "turntable.mp4").is_file()
    assert_no_unfilled_texels(out)


def assert_no_unfilled_texels(out: Path) -> None:
    mesh = read_mesh(out / "head.obj")
    texture = np.asarray(Image.open(out / "head.png").convert("RGB"))
    assert np.array_equal(texture, (mesh.texture.numpy() * 255).round().astype(np.uint8))
    surface = texel_surface(mesh.verts, mesh.faces, mesh.uv, mesh.uv_faces, texture.shape[0])
    charts = texture[surface.valid.numpy()]
    assert not (charts.max(axis=1) == 0).any()  # never-written texels would be black
    assert (charts.min(axis=1) >= 254).mean() < 0.005  # nor the white inpainting background
    assert not (texture.max(axis=2) == 0).any()  # gutters dilated too
