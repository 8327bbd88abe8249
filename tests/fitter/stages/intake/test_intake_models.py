"""Optional intake models with tiny random stand-ins (face parsing, ArcFace) and the dlib embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from common.errors import MissingModelError
from fitter.config import Config
from fitter.stages.intake.align import crop_transform, landmarks_in_crop
from fitter.stages.intake.detection import detect_faces
from fitter.stages.intake.identity import arcface_embedding, dlib_embedding, landmark_face_box
from fitter.stages.intake.masking import foreground_mask
from fitter.stages.intake.parsing import parsing_foreground
from fitter.stages.intake.warp import warp_image
from tests.helpers import tiny_arcface


@pytest.fixture(scope="module")
def crop_and_landmarks() -> tuple[np.ndarray, np.ndarray]:
    face = detect_faces(data.astronaut())[0]
    m = crop_transform(face.points, 512)
    return warp_image(data.astronaut(), m, 512), landmarks_in_crop(face.points, m)


def tiny_segformer(folder: Path, winner: int) -> Path:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    labels = {0: "background", 1: "skin", 2: "hair", 3: "cloth"}
    config = SegformerConfig(
        num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8], patch_sizes=[7], strides=[4],
        num_attention_heads=[1], mlp_ratios=[1], decoder_hidden_size=8, num_labels=4, id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    model = SegformerForSemanticSegmentation(config)
    with torch.no_grad():  # make one label win everywhere, so the label logic is what is tested
        model.decode_head.classifier.weight.zero_()
        model.decode_head.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(winner), 4).float() * 10)
    path = folder / f"parser_{winner}"
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text('{"size": {"height": 64, "width": 64}}')
    return path


def parsing_config(path: Path) -> Config:
    cfg = Config()
    cfg.intake.segmenter = "face_parsing"
    cfg.models.face_parsing = str(path)
    return cfg


def test_face_parsing_keeps_non_background_labels(tmp_path, crop_and_landmarks):
    crop, points = crop_and_landmarks
    hair = parsing_foreground(crop, parsing_config(tiny_segformer(tmp_path, 2)).models)
    assert hair.shape == crop.shape[:2] and hair.all()
    for background in (0, 3):  # "background" and "cloth" are both not head
        assert not parsing_foreground(crop, parsing_config(tiny_segformer(tmp_path, background)).models).any()


def test_face_parsing_mask_is_the_face_when_parsing_finds_nothing(tmp_path, crop_and_landmarks):
    crop, points = crop_and_landmarks
    mask = foreground_mask(crop, points, None, parsing_config(tiny_segformer(tmp_path, 0)))
    (x0, y0, x1, y1) = landmark_face_box(points)
    assert mask.dtype == np.uint8 and mask[int(y0) + 5 : int(y1) - 5, int((x0 + x1) / 2)].all()
    assert not mask[:, : int(x0) - 2].any()


def test_missing_face_parsing_model_is_a_user_error(tmp_path, crop_and_landmarks):
    with pytest.raises(MissingModelError, match="face_parsing"):
        parsing_foreground(crop_and_landmarks[0], parsing_config(tmp_path / "nothing_here").models)


def test_arcface_embedding_with_a_tiny_onnx_model(tmp_path, crop_and_landmarks):
    crop, points = crop_and_landmarks
    emb = arcface_embedding(crop, points, str(tiny_arcface(tmp_path / "arc.onnx")))
    assert emb.shape == (512,) and emb.dtype == np.float32 and np.isclose(np.linalg.norm(emb), 1.0)
    with pytest.raises(MissingModelError, match="not found"):
        arcface_embedding(crop, points, str(tmp_path / "missing.onnx"))


def test_dlib_embedding_finds_the_face_itself_or_returns_none(crop_and_landmarks):
    crop, points = crop_and_landmarks
    found = dlib_embedding(crop)
    given = dlib_embedding(crop, landmark_face_box(points))
    assert found.shape == given.shape == (128,)
    assert np.linalg.norm(found - given) < 0.3  # same person, slightly different boxes
    assert dlib_embedding(np.full((200, 200, 3), 128, np.uint8)) is None
    other = dlib_embedding(np.ascontiguousarray(data.astronaut()[:, ::-1]))  # mirrored: still her
    assert np.linalg.norm(other - given) < 0.6
