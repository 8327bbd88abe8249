"""run.py: help, exit codes, one-line errors and nothing written for anything a user can get wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fitter.config import REPO_ROOT
from tests.helpers import run_cli

PREVIEW = str(REPO_ROOT / "configs" / "preview.yaml")
EXAMPLE = REPO_ROOT / "examples" / "astronaut.png"


def stderr_lines(err: str) -> list[str]:
    """Every line on stderr (not only `error:` ones: a warning, a log line or a traceback counts too).
    In-process runs cannot see native code's writes to fd 2: tests/**/test_corpus_*.py run subprocesses."""
    return err.strip().splitlines()


def test_help_subprocess():
    result = subprocess.run([sys.executable, "run.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for word in ("--image", "--config", "--out", "--resume", "--stop-after", "--prompt", "key.path=value"):
        assert word in result.stdout


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["intake.no_such_key=1"], "no_such_key"),
        (["intake.crop_size=big"], "intake.crop_size"),
        (["intake.crop_size=16"], "intake.crop_size"),
        (["run.device=tpu"], "run.device"),
        (["fit.geometry.lambda_isd=-1"], "lambda_isd"),
        (["not_an_override"], "key.path=value"),
        (["nosection.x=1"], "nosection"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, overrides, fragment):
    out = tmp_path / "out"
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", PREVIEW, "--out", str(out), *overrides], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and fragment in err
    assert not out.exists()


def test_bad_yaml_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("intake:\n  crop_size: [1, 2\n")
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    wrong_key = tmp_path / "wrong.yaml"
    wrong_key.write_text("extends: " + PREVIEW + "\nfit:\n  geometry:\n    lambda_typo: 1\n")
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", str(wrong_key), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "lambda_typo" in err
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and "not found" in err


def test_unknown_stage_name(capsys):
    code, _, err = run_cli(["--image", str(EXAMPLE), "--stop-after", "sculpt"], capsys)
    assert code == 2 and "sculpt" in err and len(err.strip().splitlines()) == 1


def test_missing_image_argument(capsys):
    code, _, err = run_cli([], capsys)
    assert code == 2 and "--image" in err


def test_hero_config_without_weights_names_models_and_preview(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "out"
    code, _, err = run_cli(["--image", str(EXAMPLE), "--out", str(out), f"models.cache_dir={tmp_path / 'empty-cache'}"], capsys)
    assert code == 2
    line = err.strip()
    assert len(line.splitlines()) == 1
    for needle in ("models.normal_sd", "models.controlnet_landmarks", "models.ip_adapter", "models.arcface", "looked in",
                   str(tmp_path / "empty-cache"), "configs/preview.yaml"):
        assert needle in line
    assert not out.exists()


def test_check_models_lists_missing_and_found(tmp_path, capsys):
    folder = tmp_path / "my-sd15"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    code, out, _ = run_cli(["check-models", f"models.normal_sd={folder}", f"models.cache_dir={tmp_path / 'c'}"], capsys)
    assert code == 2
    assert f"found   {folder}" in out
    assert "MISSING" in out and "models.controlnet_landmarks" in out
    code, out, _ = run_cli(["check-models", "--config", PREVIEW], capsys)
    assert code == 0 and "needs no downloadable models" in out


def test_output_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "occupied"
    target.write_text("x")
    code, _, err = run_cli(["--image", str(EXAMPLE), "--config", PREVIEW, "--out", str(target)], capsys)
    assert code == 2 and "not a folder" in err


def test_unwritable_output_dir(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if Path(locked).stat().st_mode & 0o200 or __import__("os").geteuid() == 0:
            # root ignores permission bits: exercise the check's message through a read-only probe instead
            from fitter import cli

            original = cli.os.access
            cli.os.access = lambda *a, **k: False
            try:
                code, _, err = run_cli(["--image", str(EXAMPLE), "--config", PREVIEW, "--out", str(locked / "o")], capsys)
            finally:
                cli.os.access = original
        else:
            code, _, err = run_cli(["--image", str(EXAMPLE), "--config", PREVIEW, "--out", str(locked / "o")], capsys)
        assert code == 2 and "not writable" in err
    finally:
        locked.chmod(0o700)


BAD_INPUTS = ["missing", "directory", "empty", "truncated", "text_as_jpg", "tiny_image", "no_face", "bomb"]


def make_bad_input(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.png"
    if kind == "missing":
        return folder / "does_not_exist.jpg"
    if kind == "directory":
        (folder / "a_dir.png").mkdir()
        return folder / "a_dir.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = EXAMPLE.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "text_as_jpg":
        path = folder / "notes.jpg"
        path.write_text("this is not an image\n" * 20)
    elif kind == "tiny_image":
        Image.open(EXAMPLE).resize((100, 100)).save(path)
    elif kind == "no_face":
        from skimage import data

        Image.fromarray(data.camera()).save(path)
    elif kind == "bomb":
        Image.fromarray(np.zeros((9000, 9000), dtype=np.uint8)).save(path, optimize=False, compress_level=9)
    return path


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_inputs_exit_2_one_line_nothing_written(tmp_path, capsys, kind):
    photo = make_bad_input(kind, tmp_path)
    out = tmp_path / "out" / "nested"
    extra = ["intake.max_pixels=50000000"] if kind == "bomb" else []
    code, _, err = run_cli(["--image", str(photo), "--config", PREVIEW, "--out", str(out), *extra], capsys)
    assert code == 2, err
    lines = stderr_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert not (tmp_path / "out").exists()
