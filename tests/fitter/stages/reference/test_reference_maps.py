"""The reference stage: generated (tiny random models), estimated and user maps in our conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fitter.config import load_config
from fitter.stages.reference.maps import subject_mask
from fitter.subject import Subject
from tests.reference_support import (
    PREVIEW,
    assert_reused_then_redone,
    assert_valid_depth,
    assert_valid_normals,
    reference_record,
    run_to,
    tiny_depth_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def read_maps(out: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    normal = np.asarray(Image.open(out / "reference" / "normal.png"))
    depth = np.asarray(Image.open(out / "reference" / "depth.png"))
    mask = subject_mask(Subject.load(out / "subject"), size)
    return normal, depth, mask


def test_generate_with_tiny_models_writes_maps_in_our_conventions(run_dir):
    assert run_to(run_dir, "reference", "reference.source=generate", "reference.steps=4") == 0
    normal, depth, mask = read_maps(run_dir, 32)
    assert mask.sum() > 100
    assert_valid_normals(normal, mask, 32)
    assert_valid_depth(depth, mask, 32)
    assert set(reference_record(run_dir)["files"]) == {"normal.png", "depth.png"}


def test_rerun_reuses_maps_and_a_settings_change_redoes_them(run_dir, monkeypatch):
    args = ["reference.source=generate", "reference.steps=2"]
    assert run_to(run_dir, "reference", *args) == 0
    calls = assert_reused_then_redone(run_dir, args, [*args, "run.seed=7"], monkeypatch)
    (run_dir / "reference" / "depth.png").write_bytes(b"damaged")
    assert run_to(run_dir, "reference", *args, "run.seed=7") == 0
    assert calls == [1, 1]


def test_source_none_removes_generated_maps_but_uses_hand_placed_ones(run_dir):
    assert run_to(run_dir, "reference", "reference.source=generate", "reference.steps=1") == 0
    assert run_to(run_dir, "reference", "reference.source=none") == 0
    assert not any((run_dir / "reference" / n).exists() for n in ("normal.png", "depth.png"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(run_dir / "subject" / "normal.png")
    assert run_to(run_dir, "reference", "reference.source=none") == 0
    assert (run_dir / "reference" / "normal.png").read_bytes() == (run_dir / "subject" / "normal.png").read_bytes()


def test_estimator_with_a_tiny_random_transformers_depth_model(run_dir, tmp_path):
    from fitter.requirements import required_models

    model = tiny_depth_model(tmp_path / "dpt")
    assert run_to(run_dir, "reference", "reference.source=estimator", f"models.depth_estimator={model}") == 0
    depth = np.asarray(Image.open(run_dir / "reference" / "depth.png"))
    assert_valid_depth(depth, subject_mask(Subject.load(run_dir / "subject"), 32), 32)
    assert not (run_dir / "reference" / "normal.png").exists()
    real = load_config(PREVIEW, ["reference.source=estimator", f"models.depth_estimator={model}"])
    assert [s.key for s in required_models(real)] == ["models.depth_estimator"]
