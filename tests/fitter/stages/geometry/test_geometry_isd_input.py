"""What the geometry stage hands to the ISD prior: the hero config runs it on `models.normal_sd` with the
normal-adapted encoding (guidance/normal_encoding.py), on tiny random models and a rendered sphere."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fitter.config import REPO_ROOT, load_config
from fitter.stages.geometry import contract, distillation
from guidance.normal_encoding import NORMAL_ADAPTED_SD, NORMAL_CONTROLNET, NormalEncoding, encode
from representations.cameras import sample_orbits
from representations.mesh import icosphere
from representations.render import Rasterizer

pytestmark = pytest.mark.usefixtures("one_thread")
HERO = REPO_ROOT / "configs" / "portrait3d.yaml"
TINY = ["models.preset=tiny-random", "fit.geometry.guidance_size=64"]
PLAIN_SD = ["fit.geometry.isd.model=base", "fit.geometry.isd.normal_encoding=normal_controlnet", "fit.geometry.isd.prompt_suffix=''"]


def isd_input(monkeypatch, overrides: list[str]) -> dict:
    """Build the hero's guidance step as the stage does and run one step on a sphere; what the prior got."""
    cfg = load_config(HERO, [*TINY, *overrides])
    loaded: list[str] = []
    real_load = distillation.load_isd_models

    def load_isd_models(*args, **kwargs):
        loaded.append(kwargs["name"])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(distillation, "load_isd_models", load_isd_models)
    landmarks = np.load(REPO_ROOT / "fitter" / "stages" / "intake" / "canonical_landmarks.npy").astype(np.float64)
    subject = SimpleNamespace(landmarks_world=landmarks, arcface_embedding=lambda models: np.ones(512, np.float32) / np.sqrt(512))
    ctx = SimpleNamespace(cfg=cfg, device=torch.device("cpu"), subject=subject)
    rasterizer = Rasterizer("torch")
    step = distillation.build_guidance(ctx, np.random.default_rng(7), rasterizer)
    images: list[torch.Tensor] = []
    real_loss = step.isd.loss

    def loss(image, *args, **kwargs):
        images.append(image.detach().clone())
        return real_loss(image, *args, **kwargs)

    monkeypatch.setattr(step.isd, "loss", loss)
    mesh = icosphere(3, radius=0.8)
    value, _ = step.loss(mesh.verts, mesh.faces, step=0)
    assert torch.isfinite(value)
    view = sample_orbits(np.random.default_rng(7), 1, cfg.fit.geometry.views)[0]  # the view the step drew
    out = rasterizer.render(mesh.verts, mesh.faces, view.camera(64), ("mask", "normal_cam"))
    return {"image": images[0], "model": loaded[0], "prompt": step.isd.prompt, "out": out, "cfg": cfg}


def edges(mask: torch.Tensor) -> dict[str, tuple[int, int]]:
    """(row, column) of the sphere's centre, rightmost and topmost fully covered pixels on its middle row/column."""
    inside = mask[..., 0] > 0.999
    rows, cols = torch.nonzero(inside, as_tuple=True)
    r, c = int(rows.float().mean().round()), int(cols.float().mean().round())
    return {"centre": (r, c), "right": (r, int(cols[rows == r].max())), "top": (int(rows[cols == c].min()), c)}


def check_sphere(image: torch.Tensor, out: dict, encoding: NormalEncoding) -> None:
    assert torch.equal(image, encode(out["normal_cam"], out["mask"], encoding))
    at = edges(out["mask"])
    rgb = {name: image[0, :, r, c] for name, (r, c) in at.items()}
    red_right = 1.0 if encoding.axes[0] > 0 else 0.0
    assert torch.allclose(rgb["centre"], torch.tensor([0.5, 0.5, 1.0]), atol=0.05)
    assert abs(float(rgb["right"][0]) - red_right) < 0.1 and abs(float(rgb["right"][1]) - 0.5) < 0.05
    assert float(rgb["top"][1]) > 0.9 and abs(float(rgb["top"][0]) - 0.5) < 0.05
    assert torch.equal(image[0, :, 0, 0], torch.tensor(encoding.background))  # a corner: background


def test_hero_isd_sees_the_normal_adapted_encoding_on_the_normal_adapted_model(monkeypatch):
    got = isd_input(monkeypatch, [])
    assert got["model"] == "normal_sd"
    check_sphere(got["image"], got["out"], NORMAL_ADAPTED_SD)
    assert got["prompt"].endswith(", black background, normal map")
    keys = {spec.key for spec in contract.models(got["cfg"])}
    assert "models.normal_sd" in keys and "models.base" not in keys  # check-models asks for what ISD loads


def test_plain_sd_setting_sees_the_controlnet_encoding(monkeypatch):
    got = isd_input(monkeypatch, PLAIN_SD)
    assert got["model"] == "base"
    check_sphere(got["image"], got["out"], NORMAL_CONTROLNET)
    assert got["prompt"] == got["cfg"].prompt
    keys = {spec.key for spec in contract.models(got["cfg"])}
    assert "models.base" in keys and "models.normal_sd" not in keys


def test_preview_needs_no_isd_model():
    cfg = load_config(REPO_ROOT / "configs" / "preview.yaml")
    assert not cfg.fit.geometry.uses_isd and contract.models(cfg) == []
