"""`run.py batch`: photo discovery, subject plans, retries, and smoke-scale batches on Ray (with
logical GPUs) and on submitit's local executor."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.errors import UserError
from fitter.batch import task as task_module
from fitter.batch.discover import find_images
from fitter.batch.state import Plan, plan_subject
from fitter.batch.task import SubjectTask, run_subject
from fitter.cli import main
from fitter.config import REPO_ROOT
from tests.helpers import EXAMPLE, PREVIEW, SMOKE

BAD_REASON = "is not an image file"


def make_photos(folder: Path, good: tuple[str, ...], bad: str = "broken") -> Path:
    folder.mkdir(parents=True)
    for stem in good:
        shutil.copy(EXAMPLE, folder / f"{stem}.png")
    (folder / f"{bad}.png").write_bytes(b"this is not a photo")
    return folder


def batch(photos: Path, root: Path, engine: str, *options: str) -> int:
    return main(["batch", "--images", str(photos), "--out", str(root), "--config", PREVIEW, "--engine", engine,
                 *options, *SMOKE])


def summary_rows(root: Path) -> dict[str, dict[str, str]]:
    with open(root / "summary.csv", newline="") as f:
        return {row["stem"]: row for row in csv.DictReader(f)}


def statuses(root: Path) -> dict[str, str]:
    return {stem: row["status"] for stem, row in summary_rows(root).items()}


def test_folder_discovery_is_sorted_images_only(tmp_path):
    for name in ("b.png", "a.JPG", "c.webp", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in find_images(tmp_path)] == ["a.JPG", "b.png", "c.webp"]


def test_list_discovery_allows_comments_and_relative_paths(tmp_path):
    listing = tmp_path / "lists" / "subjects.txt"
    listing.parent.mkdir()
    listing.write_text(f"# subjects\n\n  ../photos/ann.png  \n{tmp_path / 'x' / 'bob.jpg'}\n# bob.png\n")
    assert find_images(listing) == [listing.parent / "../photos/ann.png", tmp_path / "x" / "bob.jpg"]


def test_duplicate_stems_are_one_line_exit_2(tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("one/face.png\ntwo/face.jpg\nother.png\n")
    with pytest.raises(UserError, match="face"):
        find_images(listing)
    root = tmp_path / "root"
    assert batch(listing, root, "local") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "same name" in err and "face" in err
    assert not root.exists()


def test_missing_images_and_bad_options_exit_2(tmp_path, capsys):
    assert batch(tmp_path / "nowhere", tmp_path / "root", "local") == 2
    assert batch(tmp_path, tmp_path / "root", "local", "--retries", "-1") == 2
    assert batch(tmp_path, tmp_path / "root", "slurm-please") == 2
    assert batch(tmp_path, tmp_path / "root", "local", "fit.nonsense=1") == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("error:") for line in lines)
    assert "no such folder" in lines[0] and "--retries" in lines[1] and "nonsense" in lines[3]


def test_plan_follows_what_is_on_disk(tmp_path):
    out, image, config = tmp_path / "ann", Path(EXAMPLE), "fit: {}\n"
    assert plan_subject(out, image, config) is Plan.FRESH
    (out / "subject").mkdir(parents=True)
    (out / "config.yaml").write_text(config)
    assert plan_subject(out, image, config) is Plan.RESUME
    (out / "export").mkdir()
    (out / "export" / "done.json").write_text("{}")
    assert plan_subject(out, image, config) is Plan.RESUME  # no metrics yet
    (out / "metrics.json").write_text("{}")
    assert plan_subject(out, image, config) is Plan.SKIP
    assert plan_subject(out, image, "fit: {other: 1}\n") is Plan.FRESH
    (out / "subject" / "subject.json").write_text(json.dumps({"input_sha256": "0" * 64}))
    assert plan_subject(out, image, config) is Plan.FRESH  # another photo under the same name


FAKE_FIT = """
import sys
with open(sys.argv[1], "a") as f:
    f.write(" ".join(sys.argv[2:]) + "\\n")
print("INFO: lots of log", file=sys.stderr)
print({message!r}, file=sys.stderr)
sys.exit({code})
"""


@pytest.mark.parametrize("code, message, status, attempts, reason", [
    (1, "internal error: RuntimeError: boom", "failed", 3, "internal error: RuntimeError: boom"),
    (2, "error: photo.png: no face found", "refused", 1, "photo.png: no face found"),
    (0, "", "done", 1, ""),
])
def test_fit_exit_code_decides_retries(tmp_path, monkeypatch, code, message, status, attempts, reason):
    calls = tmp_path / "calls.txt"
    script = FAKE_FIT.format(message=message, code=code)

    def fake_command(task: SubjectTask, resume: bool) -> list[str]:
        return [sys.executable, "-c", script, str(calls), task.stem, "--resume" if resume else "--fresh"]

    monkeypatch.setattr(task_module, "fit_command", fake_command)
    task = SubjectTask("ann", "ann.png", str(tmp_path / "ann"), PREVIEW, retries=2, log=str(tmp_path / "ann.log"))
    result = run_subject(task)
    assert (result.status, result.attempts, result.reason) == (status, attempts, reason)
    # A retry continues from the checkpoint of the failed attempt.
    assert calls.read_text().splitlines() == ["ann --fresh"] + ["ann --resume"] * (attempts - 1)
    assert (tmp_path / "ann.log").read_text().count("== attempt") == attempts


SLEEPY_FIT = """
import signal, sys, time
def stop(*_):
    open(sys.argv[1], "a").write("terminated\\n")
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1], "a").write("started\\n")
time.sleep(60)
"""
RUNNER = """
import sys
from fitter.batch import task as t
t.fit_command = lambda task, resume: [sys.executable, "-c", sys.argv[1], sys.argv[2]]
t.run_once(t.SubjectTask("ann", "ann.png", "out", "c.yaml", log=sys.argv[3]), False, 1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_fit_is_stopped_when_its_runner_dies(tmp_path):
    events = tmp_path / "events.txt"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, SLEEPY_FIT, str(events), str(tmp_path / "fit.log")], cwd=REPO_ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and "started" not in (events.read_text() if events.exists() else ""):
        time.sleep(0.1)
    runner.kill()  # as Ray or SLURM would kill a worker: no chance to clean up
    runner.wait()
    while time.time() < deadline and "terminated" not in events.read_text():
        time.sleep(0.1)
    assert events.read_text().split() == ["started", "terminated"]


def test_ray_started_here_refuses_fits_that_need_missing_gpus(tmp_path):
    photos = make_photos(tmp_path / "photos", ())
    command = [sys.executable, "run.py", "batch", "--images", str(photos), "--out", str(tmp_path / "root"),
               "--config", PREVIEW, "--engine", "ray", "--gpus-per-fit", "64"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: each fit asks for 64 GPU")


def test_ray_on_a_cpu_machine_asks_for_no_gpu_by_default(tmp_path):
    """The attack: `batch --engine ray` on a CPU box failed with "each fit asks for 1 GPU"."""
    photos = make_photos(tmp_path / "photos", ())
    command = [sys.executable, "run.py", "batch", "--images", str(photos), "--out", str(tmp_path / "root"),
               "--config", PREVIEW, "--engine", "ray"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert "each fit asks for 0 (--gpus-per-fit sets it)" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 2 and result.stderr.splitlines()[-1] == "error: 1 of 1 subjects not fitted: broken refused"


@pytest.mark.parametrize("have, asks", [({"CPU": 2.0}, 0.0), ({"CPU": 8.0, "GPU": 4.0}, 1.0)])
def test_ray_gpus_per_fit_default_follows_the_cluster(have, asks):
    from types import SimpleNamespace

    from fitter.batch.ray_engine import RayEngine

    fake_ray = SimpleNamespace(cluster_resources=lambda: have)
    engine = RayEngine(None, 1)
    engine._choose_gpus(fake_ray)
    assert engine.gpus == asks
    explicit = RayEngine(0.5, 1)
    explicit._choose_gpus(fake_ray)
    assert explicit.gpus == 0.5


def test_a_listed_photo_with_a_hidden_name_is_refused(tmp_path, capsys):
    shutil.copy(EXAMPLE, tmp_path / ".batch.png")
    (tmp_path / "list.txt").write_text(".batch.png\n")
    assert main(["batch", "--images", str(tmp_path / "list.txt"), "--out", str(tmp_path / "root"), "--config", PREVIEW]) == 2
    assert "start with '.'" in capsys.readouterr().err and not (tmp_path / "root").exists()


@pytest.fixture(scope="module")
def ray_with_logical_gpus():
    import logging

    import ray

    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=80 * 1024**2,
             log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_batch(tmp_path_factory, ray_with_logical_gpus) -> tuple[Path, Path, int, str]:
    """Two good photos and a corrupt one through Ray, each fit asking for one (logical) GPU."""
    base = tmp_path_factory.mktemp("batch")
    photos = make_photos(base / "photos", ("ann", "bob"))
    root = base / "root"
    code = batch(photos, root, "ray", "--gpus-per-fit", "1", "--retries", "2")
    return photos, root, code, (root / "summary.csv").read_text()


def test_ray_batch_fits_good_photos_and_reports_the_bad_one(ray_batch):
    photos, root, code, _ = ray_batch
    assert code == 2
    rows = summary_rows(root)
    assert statuses(root) == {"ann": "done", "bob": "done", "broken": "refused"}
    assert rows["broken"]["attempts"] == "1" and rows["broken"]["reason"] == f"broken.png {BAD_REASON} (or a format that cannot be read)"
    assert float(rows["ann"]["psnr_db"]) > 15 and int(rows["bob"]["faces"]) > 500
    for stem in ("ann", "bob"):
        assert 0 < float(rows[stem]["wrap_error_pct"]) <= float(rows[stem]["wrap_error_p95_pct"])  # the rigged head's
        assert (root / stem / "head.glb").is_file() and (root / stem / "turntable.mp4").is_file()
        assert (root / stem / "head_rigged.glb").is_file()
        assert float(rows[stem]["wall_s"]) > 0 and rows[stem]["attempts"] == "1"
    assert not (root / "broken").exists()
    summary = json.loads((root / "summary.json").read_text())
    assert summary["counts"] == {"done": 2, "refused": 1} and summary["engine"] == "ray"
    assert "== attempt 1" in (root / ".batch" / "logs" / "broken.log").read_text()


def test_ray_rerun_skips_completed_subjects(ray_batch, capsys):
    photos, root, _, _ = ray_batch
    rows = summary_rows(root)
    markers = {stem: (root / stem / "export" / "done.json").stat().st_mtime_ns for stem in ("ann", "bob")}
    assert batch(photos, root, "ray", "--gpus-per-fit", "1") == 2
    assert statuses(root) == {"ann": "skipped", "bob": "skipped", "broken": "refused"}
    assert {s: (root / s / "export" / "done.json").stat().st_mtime_ns for s in markers} == markers
    assert summary_rows(root)["ann"]["psnr_db"] == rows["ann"]["psnr_db"]  # a skipped subject keeps its metrics
    err = capsys.readouterr().err
    assert "ann: skipped" in err and f"broken: refused after 1 attempt(s): broken.png {BAD_REASON}" in err
    assert err.splitlines()[-1] == "error: 1 of 3 subjects not fitted: broken refused"


def test_submitit_local_executor_resumes_a_partial_subject(ray_batch, tmp_path):
    photos, ray_root, _, first_summary = ray_batch
    root = tmp_path / "root"
    shutil.copytree(ray_root, root)
    geometry_marker = (root / "bob" / "geometry" / "done.json").read_text()
    (root / "bob" / "metrics.json").unlink()  # as if the fit had stopped during the export stage
    (root / "bob" / "export" / "done.json").unlink()
    assert batch(photos, root, "submitit", "--cluster", "local", "--gpus-per-fit", "0", "--retries", "0") == 2
    rows = summary_rows(root)
    assert statuses(root) == {"ann": "skipped", "bob": "done", "broken": "refused"} and rows["bob"]["resumed"] == "True"
    assert (root / "bob" / "geometry" / "done.json").read_text() == geometry_marker  # only the export ran again
    assert (root / "bob" / "metrics.json").is_file() and BAD_REASON in rows["broken"]["reason"]
    assert list((root / ".batch" / "submitit").glob("*_result.pkl"))  # the fits went through submitit jobs
