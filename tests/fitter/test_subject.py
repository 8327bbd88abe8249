"""`Subject`: the intake's folder read once, at any pixel size, with the one ArcFace fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fitter.config import REPO_ROOT, Config, ModelsConfig
from fitter.context import RunContext
from fitter.stages.intake.identity import arcface_embedding
from fitter.stages.intake.subject import run_intake
from fitter.stages.texture.layers import SubjectPhoto
from fitter.subject import CAMERA, IDENTITY, SUBJECT_FILES, Subject
from tests.helpers import tiny_arcface

EXAMPLE = REPO_ROOT / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def subject_dir(tmp_path_factory) -> Path:
    """The intake of the shipped photo with the default config (1024 crop, 512 small, no ArcFace model)."""
    folder = tmp_path_factory.mktemp("subject") / "subject"
    run_intake(EXAMPLE, Config(), folder, prompt="a portrait")
    return folder


@pytest.fixture
def subject(subject_dir) -> Subject:
    return Subject.load(subject_dir)


def test_record_fields(subject, subject_dir):
    record = json.loads((subject_dir / "subject.json").read_text())
    assert subject.record == record and subject.input_sha256 == record["input_sha256"]
    assert set(subject.files) == set(SUBJECT_FILES) and subject.prompt == "a portrait"
    assert subject.settings == record["settings"] and subject.timings_s["total"] > 0


def test_image_and_mask_at_any_size(subject, subject_dir):
    image = subject.image()
    assert image.shape == (1024, 1024, 3) and image.dtype == torch.float32 and 0.0 <= float(image.min()) < float(image.max()) <= 1.0
    small = np.asarray(Image.open(subject_dir / "image_512.png").convert("RGB"), dtype=np.float32) / 255.0
    assert subject.small_size == 512 and torch.equal(subject.image(512), torch.from_numpy(small))
    assert subject.image(300).shape == (300, 300, 3) and subject.image(2048).shape == (2048, 2048, 3)
    assert subject.image_uint8(64).dtype == np.uint8 and subject.image_uint8(64).shape == (64, 64, 3)
    mask = subject.mask()
    assert mask.shape == (1024, 1024) and mask.dtype == torch.float32 and set(np.unique(mask.numpy())) <= {0.0, 1.0}
    expected = Image.open(subject_dir / "mask.png").convert("L").resize((256, 256), Image.BILINEAR)
    assert torch.equal(subject.mask(256), torch.from_numpy(np.asarray(expected, dtype=np.float32) / 255.0))


def test_smooth_mask_keeps_fractional_edges_where_the_8_bit_resample_rounds(subject, subject_dir):
    grey = np.asarray(Image.open(subject_dir / "mask.png").convert("L"), dtype=np.float32) / 255.0
    expected = np.array(Image.fromarray(grey, mode="F").resize((100, 100), Image.BILINEAR))
    smooth = subject.mask(100, smooth=True).numpy()
    assert np.array_equal(smooth, expected)
    rounded = subject.mask(100).numpy()
    assert np.abs(rounded - smooth).max() <= 1 / 255 and np.array_equal(rounded * 255, np.round(rounded * 255))


def test_landmarks_scale_with_the_requested_side(subject, subject_dir):
    stored = json.loads((subject_dir / "landmarks.json").read_text())
    crop_px = np.asarray(stored["landmarks"], dtype=np.float64)[:, :2]
    assert subject.crop_size == 1024 and np.array_equal(subject.landmarks_px(), crop_px)
    assert np.array_equal(subject.landmarks_px(1024), crop_px)
    assert np.allclose(subject.landmarks_px(256), crop_px / 4.0) and np.allclose(subject.landmarks_px(300), crop_px * 300 / 1024)
    assert subject.landmarks_world.shape == (478, 3) and subject.crop_from_input.shape == (3, 3)


def test_camera_resized_and_consistent_with_the_landmarks(subject):
    full = subject.camera()
    assert (full.width, full.height) == (1024, 1024)
    for size in (256, 512):
        camera = subject.camera(size)
        assert (camera.width, camera.height) == (size, size) and camera.fx == pytest.approx(full.fx * size / 1024)
        pixels, _ = camera.project(subject.landmarks_world)
        assert np.abs(pixels - subject.landmarks_px(size)).max() < 0.01 * size  # the world points lie on those pixels' rays
    full.w2c[0, 3] += 1.0
    assert subject.camera().w2c[0, 3] != full.w2c[0, 3]  # each call hands out its own camera


def test_only_the_files_asked_for_are_read(subject_dir, tmp_path):
    folder = tmp_path / "subject"
    folder.mkdir()
    shutil.copy(subject_dir / CAMERA, folder / CAMERA)
    assert Subject.load(folder).camera(128).width == 128  # no image, mask, landmarks or record needed


def test_dlib_embedding(subject):
    assert subject.dlib_embedding.shape == (128,) and subject.dlib_embedding.dtype == np.float32


def test_arcface_fallback_without_a_model_is_none_with_one_warning(subject, caplog):
    with caplog.at_level("WARNING", logger="headfit"):
        assert subject.arcface_embedding() is None
        assert subject.arcface_embedding(ModelsConfig()) is None
    assert sum("no ArcFace embedding" in r.getMessage() for r in caplog.records) == 1


def test_arcface_fallback_computes_from_the_crop_with_the_configured_model(subject, tmp_path, monkeypatch):
    model = str(tiny_arcface(tmp_path / "arcface.onnx"))
    embedding = subject.arcface_embedding(ModelsConfig(arcface=model))
    assert embedding.shape == (512,) and embedding.dtype == np.float32
    assert np.array_equal(embedding, arcface_embedding(subject.image_uint8(), subject.landmarks_px(), model))
    monkeypatch.setattr("fitter.subject.arcface_embedding", lambda *a: pytest.fail("computed twice"))
    assert np.array_equal(subject.arcface_embedding(ModelsConfig(arcface=model)), embedding)


def test_a_stored_arcface_embedding_wins(subject_dir, tmp_path):
    folder = tmp_path / "subject"
    shutil.copytree(subject_dir, folder)
    stored = np.random.default_rng(0).normal(size=512).astype(np.float32)
    with np.load(folder / IDENTITY) as data:
        np.savez(folder / IDENTITY, dlib=data["dlib"], arcface=stored)
    subject = Subject.load(folder)
    assert np.array_equal(subject.arcface_embedding(), stored)
    assert np.array_equal(subject.arcface_embedding(ModelsConfig(arcface=str(tmp_path / "not-read.onnx"))), stored)


def test_run_context_loads_the_subject_once(subject_dir):
    ctx = RunContext(Config(), subject_dir.parent, torch.device("cpu"))
    assert ctx.subject is ctx.subject and ctx.subject.folder == subject_dir


def test_texture_photo_is_the_crop_at_its_own_size(subject):
    photo = SubjectPhoto.of(subject)
    assert photo.image.shape == (1024, 1024, 3) and photo.mask.shape == (1024, 1024) and photo.init_textured is None
    assert photo.camera.width == 1024 and np.array_equal(photo.landmarks_px, subject.landmarks_px())
