"""reference.source=estimator with a Marigold normals pipeline: a tiny random one through the real
loader, end to end into reference/normal.png, the frame conversion, check-models and config errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import MissingModelError
from fitter.config import load_config
from fitter.pipeline import stage_hashes
from fitter.stages.reference.maps import subject_mask
from fitter.subject import Subject
from guidance.models.config import ModelsConfig
from guidance.models.tiny_builders import tiny_marigold_normals
from tests.helpers import run_cli
from tests.reference_support import (
    CPU,
    EXAMPLE,
    PREVIEW,
    assert_reused_then_redone,
    assert_valid_depth,
    assert_valid_normals,
    config,
    reference_record,
    run_stage,
    run_to,
    tiny_depth_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def marigold(tmp_path_factory) -> Path:
    """A tiny random Marigold normals pipeline saved with safetensors (built once per module)."""
    return tiny_marigold_normals(tmp_path_factory.mktemp("marigold") / "normals")


def random_crop(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def decode(folder: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(folder / "normal.png").convert("RGB"), dtype=np.float64) / 255.0 * 2.0 - 1.0
    return rgb / np.maximum(np.linalg.norm(rgb, axis=-1, keepdims=True), 1e-9)


# --- the tiny model through the real loader --------------------------------------------------------
def test_tiny_marigold_loads_through_the_real_loader_and_predicts_unit_normals(marigold):
    from diffusers import DDIMScheduler, MarigoldNormalsPipeline

    from fitter.stages.reference.estimate_normals import _load_normal_estimator, estimate_normals

    models = ModelsConfig(normal_estimator=str(marigold))
    pipe = _load_normal_estimator(models, CPU)
    assert isinstance(pipe, MarigoldNormalsPipeline) and isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.timestep_spacing == "trailing"
    assert (pipe.default_denoising_steps, pipe.default_processing_resolution, pipe.use_full_z_range) == (2, 32, True)
    assert pipe.unet.dtype == torch.float32 and not any(p.requires_grad for p in pipe.unet.parameters())
    # the pipeline's empty-prompt encoding works with the tiny tokenizer and text encoder
    ids = pipe.tokenizer("", padding="do_not_pad", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    assert ids.tolist() == [[pipe.tokenizer.bos_token_id, pipe.tokenizer.eos_token_id]]
    assert pipe.text_encoder(ids)[0].shape == (1, 2, pipe.unet.config.cross_attention_dim)

    crop = random_crop()
    normals = estimate_normals(models, crop, CPU, seed=3)
    assert normals.shape == (32, 32, 3) and normals.dtype == np.float32
    assert np.abs(np.linalg.norm(normals, axis=-1) - 1.0).max() < 1e-4
    assert np.array_equal(normals, estimate_normals(models, crop, CPU, seed=3)), "a seeded run must repeat exactly"
    assert not np.allclose(normals, estimate_normals(models, crop, CPU, seed=4))
    other = estimate_normals(models, crop, CPU, steps=1, ensemble=3, resolution=16, seed=3)
    assert other.shape == (32, 32, 3) and np.abs(np.linalg.norm(other, axis=-1) - 1.0).max() < 1e-4


def test_pickle_only_marigold_is_refused_without_allow_pickle(tmp_path):
    from diffusers import MarigoldNormalsPipeline
    from safetensors.torch import load_file

    from fitter.stages.reference.estimate_normals import _load_normal_estimator

    unet = tiny_marigold_normals(tmp_path / "pickled") / "unet"
    weights = unet / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), unet / "diffusion_pytorch_model.bin")  # the UNet as a pickle only
    weights.unlink()
    with pytest.raises(MissingModelError, match="pickle"):
        _load_normal_estimator(ModelsConfig(normal_estimator=str(tmp_path / "pickled")), CPU)
    loaded = _load_normal_estimator(ModelsConfig(normal_estimator=str(tmp_path / "pickled"), allow_pickle=["normal_estimator"]), CPU)
    assert isinstance(loaded, MarigoldNormalsPipeline)


def test_a_depth_marigold_in_the_normal_slot_is_refused(tmp_path, marigold):
    from fitter.stages.reference.estimate_normals import _load_normal_estimator

    folder = tmp_path / "depth-model"
    folder.mkdir()
    index = json.loads((marigold / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "MarigoldDepthPipeline", "prediction_type": "depth"}))
    with pytest.raises(MissingModelError, match="predicts 'depth', not normals"):
        _load_normal_estimator(ModelsConfig(normal_estimator=str(folder)), CPU)


# --- end to end with the reference-map step --------------------------------------------------------
def test_estimator_writes_normal_png_and_reuses_it(run_dir, marigold, monkeypatch):
    args = ["reference.source=estimator", f"models.normal_estimator={marigold}"]
    assert run_to(run_dir, "reference", *args) == 0
    normal = np.asarray(Image.open(run_dir / "reference" / "normal.png"))
    mask = subject_mask(Subject.load(run_dir / "subject"), 32)
    assert mask.sum() > 100
    assert_valid_normals(normal, mask, 32)
    assert not (run_dir / "reference" / "depth.png").exists()
    assert set(reference_record(run_dir)["files"]) == {"normal.png"}

    assert_reused_then_redone(run_dir, args, [*args, "run.seed=7"], monkeypatch)
    # every estimator setting and the model itself are in the stage's hash
    record = json.loads((run_dir / "subject" / "subject.json").read_text())
    digest = stage_hashes(config(*args), record)["reference"]
    for change in ("reference.estimator_steps=1", "reference.estimator_ensemble=3", "reference.estimator_resolution=16",
                   "reference.estimator_normal_convention=opencv", f"models.normal_estimator={marigold}-copy"):
        assert stage_hashes(config(*args, change), record)["reference"] != digest, change


def test_estimator_with_normal_and_depth_models_writes_both(run_dir, marigold, tmp_path):
    from fitter.requirements import required_models

    depth_model = tiny_depth_model(tmp_path / "dpt")
    assert run_to(run_dir, "reference", "reference.source=estimator", f"models.normal_estimator={marigold}",
                  f"models.depth_estimator={depth_model}", "reference.estimator_steps=1") == 0
    normal = np.asarray(Image.open(run_dir / "reference" / "normal.png"))
    depth = np.asarray(Image.open(run_dir / "reference" / "depth.png"))
    mask = subject_mask(Subject.load(run_dir / "subject"), 32)
    assert_valid_normals(normal, mask, 32)
    assert_valid_depth(depth, mask, 32)
    assert set(reference_record(run_dir)["files"]) == {"normal.png", "depth.png"}
    real = load_config(PREVIEW, ["reference.source=estimator", f"models.normal_estimator={marigold}", f"models.depth_estimator={depth_model}"])
    assert [s.key for s in required_models(real)] == ["models.normal_estimator", "models.depth_estimator"]


# --- the frame conversion, with a known normal map --------------------------------------------------
def tilted_sphere_normals(size: int) -> np.ndarray:
    """(size, size, 3) OpenGL camera-frame normals of a sphere seen head-on, turned 25° about x and
    then 35° about y, so x, y and z all vary; sampled at pixel centres (row 0 at the top)."""
    centres = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    u, v = np.meshgrid(centres, -centres)  # x right, y up
    radius = 1.6
    n = np.stack([u, v, np.sqrt(radius**2 - u**2 - v**2)], axis=-1) / radius
    a, b = np.radians(25.0), np.radians(35.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return n @ (ry @ rx).T


class FakeMarigold:
    """Stands in for the loaded pipeline: returns ``prediction`` (output_type "pt" layout) and
    records the call's settings."""

    default_denoising_steps = 4

    def __init__(self, prediction: np.ndarray):
        self.prediction = torch.from_numpy(prediction.astype(np.float32)).permute(2, 0, 1)[None]  # (1, 3, h, w)
        self.calls: list[dict] = []

    def __call__(self, image, **kwargs):
        settings = {k: v for k, v in kwargs.items() if k != "generator"}
        self.calls.append({"size": image.size, **settings, "seed": kwargs["generator"].initial_seed()})
        assert kwargs["output_type"] == "pt"
        return SimpleNamespace(prediction=self.prediction.clone(), uncertainty=None, latent=None)


@pytest.mark.parametrize("convention, signs", [("opengl", (1.0, 1.0, 1.0)), ("opencv", (1.0, -1.0, -1.0))])
def test_the_normal_convention_is_applied(run_dir, monkeypatch, convention, signs):
    from fitter.stages.reference import estimate_normals as reference_estimate_normals

    folder = run_dir / "reference"
    truth = tilted_sphere_normals(32)
    assert all(np.ptp(truth[..., k]) > 0.5 for k in range(3))
    fake = FakeMarigold(tilted_sphere_normals(48))  # not the crop's size: resized, then renormalised
    monkeypatch.setattr(reference_estimate_normals, "_load_normal_estimator", lambda models, device: fake)
    cfg = config("reference.source=estimator", "models.normal_estimator=fake-model", f"reference.estimator_normal_convention={convention}",
                 "reference.estimator_steps=3", "reference.estimator_ensemble=5", "reference.estimator_resolution=64", "run.seed=11")
    run_stage(cfg, run_dir)
    assert fake.calls == [{"size": (32, 32), "num_inference_steps": 3, "ensemble_size": 5, "processing_resolution": 64,
                           "output_type": "pt", "seed": 11}]
    mask = subject_mask(Subject.load(run_dir / "subject"), 32)
    written = decode(folder)
    expected = truth * np.asarray(signs)
    cosine = (written * expected).sum(axis=-1)
    assert cosine[mask].min() > 0.99
    assert not np.asarray(Image.open(folder / "normal.png"))[~mask].any()


def test_prediction_layouts_pt_and_np_give_the_same_normals():
    from fitter.stages.reference.estimate_normals import prediction_to_normals

    truth = tilted_sphere_normals(16).astype(np.float32)
    as_pt = torch.from_numpy(truth).permute(2, 0, 1)[None]  # output_type "pt": (N, 3, H, W)
    as_np = truth[None]  # output_type "np": (N, H, W, 3)
    for prediction in (as_pt, as_np, as_pt[0], as_np[0]):
        np.testing.assert_allclose(prediction_to_normals(prediction, (16, 16), "opengl"), truth, atol=1e-5)
    np.testing.assert_allclose(prediction_to_normals(as_np, (16, 16), "opencv"), truth * [1, -1, -1], atol=1e-5)
    with pytest.raises(ValueError, match="one image"):
        prediction_to_normals(torch.zeros(2, 3, 4, 4), (4, 4), "opengl")


# --- check-models, a missing model, config errors -------------------------------------------------
def test_check_models_lists_the_normal_estimator(tmp_path, capsys):
    folder = tmp_path / "marigold"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    common = ["check-models", "--config", str(PREVIEW), "reference.source=estimator", f"models.cache_dir={tmp_path / 'cache'}"]
    code, out, _ = run_cli([*common, f"models.normal_estimator={folder}"], capsys)
    assert code == 0 and "models.normal_estimator" in out and f"found   {folder}" in out
    code, out, _ = run_cli([*common, f"models.normal_estimator={tmp_path / 'nowhere'}"], capsys)
    assert code == 2 and "models.normal_estimator" in out and "MISSING" in out


def test_a_missing_normal_estimator_stops_the_run_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", str(PREVIEW), "--out", str(out), "reference.source=estimator",
                            f"models.normal_estimator={tmp_path / 'nowhere'}", f"models.cache_dir={tmp_path / 'cache'}"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "models.normal_estimator" in err and str(tmp_path / "nowhere") in err
    assert not out.exists()


def test_a_present_normal_estimator_is_no_longer_refused(tmp_path, capsys, monkeypatch):
    from fitter import cli

    folder = tmp_path / "marigold"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    overrides = ["reference.source=estimator", f"models.normal_estimator={folder}"]
    started = []
    monkeypatch.setattr(cli, "Pipeline", lambda cfg, **kw: SimpleNamespace(run=lambda folder: started.append(cfg.models.normal_estimator)))
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", str(PREVIEW), "--out", str(tmp_path / "out"), *overrides], capsys)
    assert code == 0, err
    assert started == [str(folder)]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("reference.estimator_normal_convention=blender", "reference.estimator_normal_convention"),
        ("reference.estimator_ensemble=0", "reference.estimator_ensemble"),
        ("reference.estimator_steps=0", "reference.estimator_steps"),
        ("reference.estimator_resolution=30", "reference.estimator_resolution"),
        ("reference.estimator_ensemble=many", "reference.estimator_ensemble"),
    ],
)
def test_bad_estimator_settings_are_one_line_exit_2(tmp_path, capsys, override, fragment):
    out = tmp_path / "out"
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", str(PREVIEW), "--out", str(out), override], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and fragment in err
    assert not out.exists()
