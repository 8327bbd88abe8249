"""`--resume` after something changed: the stale checkpoint is never loaded, the stage starts over.

The attack this guards against: fit photo A into OUT, interrupt it, then `--resume` with photo B
(or changed `fit.geometry.*` settings) into the same OUT; the run said "resumed at step N" and
delivered A's mesh, or crashed with a traceback on a changed tensor shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fitter.cli import main
from fitter.training import loop as loop_module
from representations.mesh import read_mesh
from tests.helpers import EXAMPLE, PREVIEW, SMOKE, mirrored_photo

pytestmark = pytest.mark.slow
STOP_STEP = 6
START_OVER = "geometry: its checkpoint was made with other inputs or settings; starting the stage over"


def geometry_fit(out: Path, *extra: str, image: str = EXAMPLE) -> int:
    return main(["--image", image, "--config", PREVIEW, "--out", str(out), *SMOKE, "--stop-after", "geometry", *extra])


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A fit of the example photo asked to stop during sculpt step STOP_STEP: the checkpoint holds
    STOP_STEP + 1 steps, the geometry is unfinished."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    original = loop_module.TrainLoop._one_step

    def one_step(self, current: int):
        if self.stage == "geometry" and self.name == "sculpt" and current == STOP_STEP:
            self.ctx.stop.requested = True
        return original(self, current)

    loop_module.TrainLoop._one_step = one_step
    try:
        assert geometry_fit(out) == 130
    finally:
        loop_module.TrainLoop._one_step = original
    assert (out / "geometry" / "sculpt.pt").is_file() and not (out / "geometry" / "done.json").exists()
    return out


def resumed_copy(interrupted: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    return out


def test_resume_with_another_photo_fits_that_photo(interrupted, tmp_path, capsys):
    out = resumed_copy(interrupted, tmp_path)
    photo = str(mirrored_photo(tmp_path))
    assert geometry_fit(out, "--resume", image=photo) == 0
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    assert geometry_fit(fresh, image=photo) == 0
    a, b = read_mesh(fresh / "geometry" / "mesh.ply"), read_mesh(out / "geometry" / "mesh.ply")
    assert a.num_faces == b.num_faces and np.array_equal(a.verts.numpy(), b.verts.numpy())
    old = read_mesh(interrupted / "init" / "mesh.ply")
    assert not np.array_equal(old.verts.numpy(), read_mesh(out / "init" / "mesh.ply").verts.numpy())
    assert "resumed at step" not in (out / "run.log").read_text().split("mirrored.png")[-1]


@pytest.mark.parametrize("change", ["fit.geometry.lambda_mask=50", "fit.geometry.hashgrid.hidden=16"])
def test_resume_with_changed_settings_starts_the_stage_over(interrupted, tmp_path, capsys, change):
    out = resumed_copy(interrupted, tmp_path)
    assert geometry_fit(out, "--resume", change) == 0
    err = capsys.readouterr().err
    assert START_OVER in err and "Traceback" not in err
    assert "resumed at step" not in (out / "run.log").read_text().split(START_OVER)[-1]
    summary = json.loads((out / "geometry" / "geometry.json").read_text())
    assert "init_fit_error" in summary  # phase 1a ran again: the stage really started over


def test_resume_with_nothing_changed_continues(interrupted, tmp_path, capsys):
    out = resumed_copy(interrupted, tmp_path)
    assert geometry_fit(out, "--resume") == 0
    assert START_OVER not in capsys.readouterr().err
    assert f"geometry/sculpt: resumed at step {STOP_STEP + 1}" in (out / "run.log").read_text()
