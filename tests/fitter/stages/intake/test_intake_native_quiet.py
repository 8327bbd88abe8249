"""MediaPipe/TFLite native log lines stay off the terminal (fitter/stages/intake/native_quiet.py).

They are written to file descriptor 2 by native code, so only a subprocess that counts every stderr
line (or capfd) sees them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from skimage import data

from fitter.config import REPO_ROOT
from fitter.stages.intake.native_quiet import native_stderr_to_log
from tests.intake_photos import save

PREVIEW = str(REPO_ROOT / "configs" / "preview.yaml")


def run_intake_cli(photo, out) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("HEADFIT_DEBUG", None)
    args = [sys.executable, str(REPO_ROOT / "run.py"), "--image", str(photo), "--config", PREVIEW, "--out", str(out), "--stop-after", "intake"]
    return subprocess.run(args, env=env, cwd=out.parent, capture_output=True, text=True, timeout=300)


def test_an_intake_run_prints_only_its_documented_warning(tmp_path):
    result = run_intake_cli(REPO_ROOT / "examples" / "astronaut.png", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: low resolution: the face is"), result.stderr


def test_a_no_face_refusal_is_exactly_one_line(tmp_path):
    photo = save(data.coffee(), tmp_path / "coffee.png")
    result = run_intake_cli(photo, tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: no face found in the image (a clear, near-frontal portrait is needed)"], result.stderr


def test_native_lines_go_to_the_log_and_other_text_back_to_stderr(capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="headfit"):
        with native_stderr_to_log():
            os.write(2, b"W0000 00:00:1796222897.244398    4084 inference_feedback_manager.cc:114] Feedback manager...\n")
            with native_stderr_to_log():  # nested: the outer block alone redirects
                os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
            os.write(2, b"text that is not a native log record\n")
            assert capfd.readouterr().err == ""  # nothing reaches the real fd 2 inside the block
    assert capfd.readouterr().err == "text that is not a native log record\n"  # given back after it
    assert "native: W0000" in caplog.text and "native: INFO: Created TensorFlow Lite" in caplog.text


def test_fd2_is_restored_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError):
        with native_stderr_to_log():
            os.write(2, b"kept\n")
            raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "kept\nafter\n"
