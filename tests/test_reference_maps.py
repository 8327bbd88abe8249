"""The reference-map step: generated (tiny random models), estimated and user maps in our conventions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fitter.config import REPO_ROOT, load_config
from fitter.stages.intake import run_intake
from fitter.stages.reference.maps import ensure_reference_maps, subject_mask

EXAMPLE = REPO_ROOT / "examples" / "astronaut.png"
PREVIEW = REPO_ROOT / "configs" / "preview.yaml"
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def config(*overrides: str):
    return load_config(PREVIEW, ["models.preset=tiny-random", "reference.size=32", *overrides])


@pytest.fixture(scope="module")
def intake_dir(tmp_path_factory) -> Path:
    subject = tmp_path_factory.mktemp("intake") / "subject"
    run_intake(EXAMPLE, config(), subject)
    return subject


@pytest.fixture
def subject(intake_dir, tmp_path) -> tuple[Path, dict]:
    folder = tmp_path / "subject"
    shutil.copytree(intake_dir, folder)
    return folder, json.loads((folder / "subject.json").read_text())


def read_maps(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    normal = np.asarray(Image.open(folder / "normal.png"))
    depth = np.asarray(Image.open(folder / "depth.png"))
    mask = subject_mask(folder, size)
    return normal, depth, mask


def assert_reused_then_redone(cfg, changed, subject: tuple[Path, dict], monkeypatch) -> list[int]:
    """After a first ``ensure_reference_maps(cfg)``: a rerun reuses normal.png, ``changed`` remakes it.
    Returns the list that records each `produce_maps` call from here on."""
    from fitter.stages.reference import maps as reference_maps

    folder, record = subject
    first = (folder / "normal.png").read_bytes()
    calls: list[int] = []
    original = reference_maps.produce_maps
    monkeypatch.setattr(reference_maps, "produce_maps", lambda *a: calls.append(1) or original(*a))
    ensure_reference_maps(cfg, folder, record, {}, CPU)
    assert calls == [] and (folder / "normal.png").read_bytes() == first
    ensure_reference_maps(changed, folder, record, {}, CPU)
    assert calls == [1] and (folder / "normal.png").read_bytes() != first
    return calls


def assert_valid_normals(normal: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    assert normal.shape == (size, size, 3) and normal.dtype == np.uint8
    assert not normal[~mask].any(), "normals must be black outside the mask"
    vectors = normal[mask].astype(np.float64) / 255.0 * 2.0 - 1.0
    assert np.abs(np.linalg.norm(vectors, axis=-1) - 1.0).max() < 0.02
    return vectors


def assert_valid_depth(depth: np.ndarray, mask: np.ndarray, size: int) -> None:
    assert depth.shape == (size, size) and depth.dtype == np.uint16
    assert not depth[~mask].any() and depth[mask].min() >= 1 and depth[mask].max() == 65535


def test_generate_with_tiny_models_writes_maps_in_our_conventions(subject):
    folder, record = subject
    cfg = config("reference.source=generate", "reference.steps=4")
    ensure_reference_maps(cfg, folder, record, {}, CPU)
    normal, depth, mask = read_maps(folder, 32)
    assert mask.sum() > 100
    assert_valid_normals(normal, mask, 32)
    assert_valid_depth(depth, mask, 32)
    ref = json.loads((folder / "reference.json").read_text())
    assert ref["source"] == "generate" and set(ref["files"]) == {"normal.png", "depth.png"}


def test_rerun_reuses_maps_and_a_settings_change_redoes_them(subject, monkeypatch):
    folder, record = subject
    cfg = config("reference.source=generate", "reference.steps=2")
    ensure_reference_maps(cfg, folder, record, {}, CPU)
    calls = assert_reused_then_redone(cfg, config("reference.source=generate", "reference.steps=2", "run.seed=7"), subject, monkeypatch)
    (folder / "depth.png").write_bytes(b"damaged")
    ensure_reference_maps(config("reference.source=generate", "reference.steps=2", "run.seed=7"), folder, record, {}, CPU)
    assert calls == [1, 1]


def test_source_none_removes_generated_maps_but_keeps_hand_placed_ones(subject):
    folder, record = subject
    ensure_reference_maps(config("reference.source=generate", "reference.steps=1"), folder, record, {}, CPU)
    ensure_reference_maps(config("reference.source=none"), folder, record, {}, CPU)
    assert not any((folder / n).exists() for n in ("normal.png", "depth.png", "reference.json"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "normal.png")
    ensure_reference_maps(config("reference.source=none"), folder, record, {}, CPU)
    assert (folder / "normal.png").is_file()


def tiny_depth_model(folder: Path) -> Path:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    cfg = DPTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=37, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                    fusion_hidden_size=16, head_in_index=-1)
    DPTForDepthEstimation(cfg).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_estimator_with_a_tiny_random_transformers_depth_model(subject, tmp_path):
    from fitter.requirements import required_models

    folder, record = subject
    model = tiny_depth_model(tmp_path / "dpt")
    cfg = config("reference.source=estimator", f"models.depth_estimator={model}")
    ensure_reference_maps(cfg, folder, record, {}, CPU)
    depth = np.asarray(Image.open(folder / "depth.png"))
    mask = subject_mask(folder, 32)
    assert_valid_depth(depth, mask, 32)
    assert not (folder / "normal.png").exists()
    real = load_config(PREVIEW, ["reference.source=estimator", f"models.depth_estimator={model}"])
    assert [s.key for s in required_models(real)] == ["models.depth_estimator"]
