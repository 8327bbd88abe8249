"""The second opinion on MediaPipe's face (fitter/stages/intake/face_check.py): real faces from installed
packages are confirmed by dlib's HOG detector (mirrored, rotated, small, turned up to 37 degrees),
occluded faces only by its CNN detector (accepted with a warning), and a cat or a colour wheel, which
MediaPipe takes for faces, are refused; the PnP-error warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from common.errors import BadImageError
from fitter.config import REPO_ROOT
from fitter.stages.intake.analysis import PNP_WARNING_PX, _pnp_note
from fitter.stages.intake.detection import detect_faces
from fitter.stages.intake.face_check import check_human_face, occlusion_note
from fitter.stages.intake.pose import HeadPose
from tests.intake_photos import NOT_HUMAN, OCCLUDED_FACES, REAL_FACES, save, with_sunglasses


def largest_face(rgb: np.ndarray):
    faces = detect_faces(rgb)
    assert faces, "MediaPipe finds no face"
    return faces[0]


@pytest.mark.parametrize("name", sorted(REAL_FACES))
def test_real_faces_are_confirmed_by_the_hog_detector(name):
    rgb = REAL_FACES[name]()
    evidence = check_human_face(rgb, largest_face(rgb))
    assert evidence.hog_score is not None and evidence.hog_score > 0.5, evidence  # measured >= 0.66
    assert occlusion_note(evidence) is None


@pytest.mark.parametrize("name", sorted(OCCLUDED_FACES))
def test_occluded_faces_are_confirmed_by_the_cnn_detector_with_a_note(name):
    rgb = OCCLUDED_FACES[name]()
    evidence = check_human_face(rgb, largest_face(rgb))
    assert not evidence.hog_confirms and evidence.cnn_confidence is not None and evidence.cnn_confidence > 0.5, evidence
    assert "partly hidden" in occlusion_note(evidence)


@pytest.mark.parametrize("name", sorted(NOT_HUMAN))
def test_face_like_non_faces_are_refused(name):
    rgb = NOT_HUMAN[name]()
    face = largest_face(rgb)  # MediaPipe alone would accept it
    with pytest.raises(BadImageError, match="no human face found: MediaPipe proposed a .* face at .* neither of dlib's face detectors") as err:
        check_human_face(rgb, face)
    assert "\n" not in str(err.value)


def fake_pose(rms_px: float) -> HeadPose:
    return HeadPose(camera=None, rms_px=rms_px)  # type: ignore[arg-type]


def test_pnp_warning_threshold_scales_with_the_face_in_the_crop():
    assert _pnp_note(fake_pose(PNP_WARNING_PX - 0.1), 1024, 1.0) is None
    note = _pnp_note(fake_pose(25.04), 1024, 1.0)
    assert note and "PnP reprojection error 25.0 px in the 1024 px crop" in note and "may be off" in note
    assert _pnp_note(fake_pose(PNP_WARNING_PX * 0.6), 512, 1.0) is not None  # half the crop: half the limit
    assert _pnp_note(fake_pose(PNP_WARNING_PX * 0.6), 1024, 2.0) is not None  # face half as large in the crop


def test_sunglasses_run_prints_the_documented_warning_lines(tmp_path):
    photo = save(with_sunglasses(), tmp_path / "sunglasses.png")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("HEADFIT_DEBUG", None)
    args = [sys.executable, str(REPO_ROOT / "run.py"), "--image", str(photo), "--config", str(REPO_ROOT / "configs" / "preview.yaml"),
            "--out", str(tmp_path / "out"), "--stop-after", "intake"]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: the face is partly hidden or not a photograph"), result.stderr
    assert lines[1].startswith("warning: low resolution"), result.stderr
    record = json.loads((tmp_path / "out" / "subject" / "subject.json").read_text())
    assert record["warnings"][0].startswith("the face is partly hidden") and record["face"]["dlib_cnn_confidence"] > 0
