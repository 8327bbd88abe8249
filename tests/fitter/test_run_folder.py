"""The run folder: only the engine's own files are ever overwritten or deleted (the manifest), one
run at a time (the lock), and a redone stage leaves no stale later outputs behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from common.errors import OutputError
from fitter.cli import main
from fitter.config import REPO_ROOT
from fitter.outdir import LOCK, MANIFEST, RunFolder
from tests.corpus import snapshot
from tests.helpers import EXAMPLE, PREVIEW, SMOKE, mirrored_photo, shared_run


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def test_an_existing_folder_that_is_not_ours_is_refused_untouched(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "init").mkdir(parents=True)
    (photos / "export").mkdir()
    shutil.copy(EXAMPLE, photos / "head.png")  # the user's photo, named like one of our outputs
    (photos / "init" / "notes.txt").write_text("mine")
    (photos / "export" / "draft.obj").write_text("v 0 0 0\n")
    before = snapshot(tmp_path, with_dirs=True)
    assert main(["--image", str(photos / "head.png"), "--config", PREVIEW, "--out", str(photos)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "not empty" in line and "--out NEW_DIR" in line
    assert snapshot(tmp_path, with_dirs=True) == before


def test_empty_out_is_an_error_not_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--image", EXAMPLE, "--config", PREVIEW, "--out", ""]) == 2
    assert "--out" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_a_refused_photo_leaves_a_new_or_empty_out_as_it_was(tmp_path, capsys):
    no_face = tmp_path / "coffee.png"
    from skimage import data

    Image.fromarray(data.coffee()).save(no_face)
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new" / "nested", empty):
        assert main(["--image", str(no_face), "--config", PREVIEW, "--out", str(out)]) == 2
        assert "no face" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "new").exists() and list(empty.iterdir()) == []


def test_the_guard_refuses_to_overwrite_files_it_did_not_write(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.stage = "export"
        from common import atomic

        atomic.write_text(out / "head.mtl", "ours")
        (out / "views").mkdir()
        (out / "views" / "front.png").write_bytes(b"the user's")
        with pytest.raises(OutputError, match="did not write"):
            atomic.write_bytes(out / "views" / "front.png", b"ours")
        atomic.write_text(tmp_path / "elsewhere.txt", "outside OUT: not the guard's business")
    assert (out / "views" / "front.png").read_bytes() == b"the user's"
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert listed["head.mtl"] == "export" and "views/front.png" not in listed and "elsewhere.txt" not in str(listed)


def test_remove_stages_deletes_only_listed_files_inside_out(tmp_path):
    out = tmp_path / "run"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    with RunFolder(out) as folder:
        from common import atomic

        folder.stage = "geometry"
        atomic.write_text(out / "geometry" / "mesh.ply", "x")
        folder.stage = "export"
        atomic.write_text(out / "views" / "a.png", "x")
        (out / "geometry" / "notes.txt").write_text("the user's")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"]["../precious.txt"] = "export"  # a tampered manifest must not reach outside OUT
    (out / MANIFEST).write_text(json.dumps(manifest))
    with RunFolder(out) as folder:
        assert folder.remove_stages(["geometry", "export"]) == ["geometry/mesh.ply", "views/a.png"]
    assert outside.read_text() == "keep" and (out / "geometry" / "notes.txt").is_file()
    assert not (out / "views").exists()


def test_the_photo_may_not_be_one_of_the_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        from common import atomic

        folder.stage = "export"
        atomic.write_bytes(out / "head.png", EXAMPLE_BYTES())
    before = snapshot(tmp_path)
    assert main(["--image", str(out / "head.png"), "--config", PREVIEW, "--out", str(out)]) == 2
    assert "one of the outputs" in one_error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before


def EXAMPLE_BYTES() -> bytes:  # noqa: N802
    return Path(EXAMPLE).read_bytes()


def test_a_second_run_into_a_locked_folder_fails_at_once_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    holder = RunFolder(out).open()
    try:
        assert f"pid {os.getpid()}" in (out / LOCK).read_text()
        before = snapshot(tmp_path)
        assert main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), "--stop-after", "intake"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "in use by another headfit run" in line and f"pid {os.getpid()}" in line
        assert snapshot(tmp_path) == before
    finally:
        holder.close()
    assert not out.exists()  # the holder wrote nothing: it leaves no trace
    assert main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), "--stop-after", "intake"]) == 0


@pytest.mark.slow
def test_two_processes_into_one_folder_do_not_mix(tmp_path):
    """The attack: a fit into X, then another photo into X while it runs. The second fails at once,
    the first finishes with its own subject."""
    out = tmp_path / "X"
    first = subprocess.Popen([sys.executable, "run.py", "--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), *SMOKE,
                              "--stop-after", "geometry"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not (out / LOCK).is_file() or not (out / LOCK).read_text():
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "run.py", "--image", str(mirrored_photo(tmp_path)), "--config", PREVIEW,
                             "--out", str(out), *SMOKE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second started: make it longer"
    assert second.returncode == 2
    line = one_error_line(second.stderr)
    assert "in use by another headfit run" in line and f"pid {first.pid}" in line
    assert first.wait(timeout=300) == 0
    # a normal run's stderr: documented warnings only (no DEBUG step lines, no native log lines)
    assert all(line.startswith("warning: low resolution") for line in first.stderr.read().splitlines())
    subject = json.loads((out / "subject" / "subject.json").read_text())
    assert subject["input_path"] == str(Path(EXAMPLE).resolve())


def test_a_rerun_with_a_new_photo_that_stops_early_leaves_no_stale_stage(tmp_path_factory, worker_id, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(shared_run(tmp_path_factory, worker_id), out)
    (out / "geometry" / "notes.txt").write_text("the user's")
    assert main(["--image", str(mirrored_photo(tmp_path)), "--config", PREVIEW, "--out", str(out), *SMOKE, "--stop-after", "init"]) == 0
    capsys.readouterr()
    for stale in ("geometry/mesh.ply", "geometry/sculpt.pt", "geometry/done.json", "texture", "rig", "export", "head.glb", "head_rigged.glb",
                  "head.obj", "head.png", "views", "turntable.mp4", "metrics.json", "report.html", "report"):
        assert not (out / stale).exists(), stale
    assert (out / "geometry" / "notes.txt").read_text() == "the user's"
    assert (out / "init" / "done.json").is_file()
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert all((out / rel).is_file() for rel in listed) and not any(rel.startswith("geometry/") for rel in listed)


def test_stopping_after_the_intake_with_a_new_photo_drops_every_later_stage(tmp_path_factory, worker_id, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(shared_run(tmp_path_factory, worker_id), out)
    assert main(["--image", str(mirrored_photo(tmp_path)), "--config", PREVIEW, "--out", str(out), *SMOKE, "--stop-after", "intake"]) == 0
    capsys.readouterr()
    assert not any((out / stage).exists() for stage in ("prior", "init", "geometry", "texture", "rig", "export"))
    assert not (out / "head.glb").exists() and (out / "subject" / "subject.json").is_file()


def test_eval_results_join_the_manifest_and_go_when_a_stage_is_redone(tmp_path_factory, worker_id, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(shared_run(tmp_path_factory, worker_id), out)
    assert main(["eval", str(out), "--out", str(tmp_path / "summary")]) == 0
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert listed["eval.json"] == "eval" and any(rel.startswith("eval/") for rel in listed)
    assert main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), *SMOKE, "--stop-after", "init"]) == 0
    capsys.readouterr()
    assert not (out / "eval.json").exists() and not (out / "eval").exists()
