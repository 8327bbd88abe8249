"""Error corpus, command line and run folder: bad settings, output folders that are not ours or are
busy, a disk that fills during a checkpoint, a damaged checkpoint, batch inputs (see tests/corpus.py)."""

from __future__ import annotations

import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fitter.config import REPO_ROOT
from tests.corpus import EXAMPLE, LOCK, MANIFEST, PREVIEW, Case, run_case
from tests.helpers import SMOKE

_held: list[int] = []


@pytest.fixture(autouse=True)
def release_held_locks():
    yield
    while _held:
        os.close(_held.pop())


def fit(out: str = "out", *extra: str) -> list[str]:
    return ["--image", str(EXAMPLE), "--config", PREVIEW, "--out", out, *extra]


def overrides(*items: str):
    return lambda folder: fit("out", "--stop-after", "intake", *items)


def config_extending(target: str, content: str):
    def build(folder: Path) -> list[str]:
        (folder / target).write_text(content)
        (folder / "mine.yaml").write_text(f"extends: {target}\n")
        return ["--image", str(EXAMPLE), "--config", "mine.yaml", "--out", "out"]

    return build


def photo_folder_as_out(folder: Path) -> list[str]:
    photos = folder / "photos"
    (photos / "init").mkdir(parents=True)
    (photos / "export").mkdir()
    shutil.copy(EXAMPLE, photos / "face.png")
    (photos / "init" / "notes.txt").write_text("mine")
    (photos / "export" / "draft.obj").write_text("v 0 0 0\n")
    return fit(str(photos), "--image", str(photos / "face.png"))


def our_folder(folder: Path, *files: str) -> Path:
    out = folder / "out"
    out.mkdir()
    (out / MANIFEST).write_text('{"tool": "headfit", "format": 1, "files": {%s}}' % ", ".join(f'"{f}": "export"' for f in files))
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE, out / name)
    return out


def photo_is_an_output(folder: Path) -> list[str]:
    out = our_folder(folder, "head.png")
    return ["--image", str(out / "head.png"), "--config", PREVIEW, "--out", str(out)]


def locked_by_another_run(folder: Path) -> list[str]:
    out = our_folder(folder)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"pid 4242 on host, started 2026-12-02 10:00:00: run.py --image other.png\n", 0)
    _held.append(fd)
    return fit(str(out), "--stop-after", "intake")


def limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (12 << 20, 12 << 20))  # subject/ and init/ fit, the ~18 MB checkpoint not


def damaged_checkpoint(folder: Path) -> list[str]:
    """A run stopped in the geometry stage whose checkpoint was then damaged; resumed."""
    args = fit("out", *SMOKE, "--stop-after", "geometry")
    subprocess.run([sys.executable, str(REPO_ROOT / "run.py"), *args], cwd=folder, check=True,
                   capture_output=True, timeout=300)
    (folder / "out" / "geometry" / "done.json").unlink()
    checkpoint = folder / "out" / "geometry" / "sculpt.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    return args + ["--resume"]


def batch_list_with_hidden_name(folder: Path) -> list[str]:
    shutil.copy(EXAMPLE, folder / ".batch.png")
    (folder / "list.txt").write_text(".batch.png\n")
    return ["batch", "--images", "list.txt", "--out", "root", "--config", PREVIEW]


LOW_RES = ("low resolution",)
CASES = [
    Case("feather-inf", overrides("fit.texture.feather_deg=inf"), "fit.texture.feather_deg must be a finite number"),
    Case("hair-anchor-inf", overrides("fit.texture.hair_anchor_weight=inf"), "hair_anchor_weight must be a finite"),
    Case("depth-tolerance-inf", overrides("fit.texture.depth_tolerance=inf"), "depth_tolerance must be a finite"),
    Case("view-radius-inf", overrides("export.view_radius=inf"), "export.view_radius must be a finite"),
    Case("lr-nan", overrides("fit.geometry.lr=nan"), "fit.geometry.lr must be a finite"),
    Case("feather-too-wide", overrides("fit.texture.feather_deg=81"), "fit.texture.feather_deg must be in (0, max_angle_deg]"),
    Case("seed-negative", overrides("run.seed=-1"), "run.seed must be in [0,"),
    Case("seed-float", overrides("run.seed=1e23"), "run.seed"),
    Case("seed-huge", overrides("run.seed=99999999999999999999999"), "run.seed must fit in 64 bits"),
    Case("crop-size-huge", overrides("intake.crop_size=1000000000"), "intake.crop_size must be in [128, 4096]"),
    Case("crop-size-abort", overrides("intake.crop_size=40000"), "intake.crop_size must be in [128, 4096]"),
    Case("unknown-key", overrides("fit.geometry.lambda_typo=1"), "lambda_typo"),
    Case("wrong-type", overrides("fit.geometry.steps=many"), "fit.geometry.steps"),
    Case("extends-a-secrets-file", config_extending("secrets.env", "SECRET_TOKEN: hunter2\n"), "is not a .yaml/.yml file"),
    Case("extends-passwd", config_extending("passwd", "root:x:0:0:root:/root:/bin/bash\n"), "is not a .yaml/.yml file"),
    Case("empty-out", lambda folder: fit(""), "--out"),
    Case("unknown-stage", lambda folder: fit("out", "--stop-after", "polish"), "polish"),
    Case("out-is-the-photos-folder", photo_folder_as_out, "not empty and was not made by headfit"),
    Case("photo-is-an-output", photo_is_an_output, "is one of the outputs"),
    Case("out-in-use", locked_by_another_run, "in use by another headfit run (pid 4242"),
    Case("disk-limit-during-checkpoint", lambda folder: fit("out", *SMOKE, "--stop-after", "geometry"), "sculpt.pt",
         warnings=LOW_RES, writes_nothing=False, preexec=limit_file_size),
    Case("damaged-checkpoint", damaged_checkpoint, "sculpt.pt is damaged", warnings=LOW_RES, writes_nothing=False),
    Case("batch-photo-named-like-the-batch-folder", batch_list_with_hidden_name, "start with '.'"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_user_error_is_one_line_exit_2_and_touches_nothing(case, tmp_path):
    result = run_case(case, tmp_path / "case")
    assert "hunter2" not in result.stderr and "root:x:0" not in result.stderr
