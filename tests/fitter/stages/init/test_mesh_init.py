"""init.kind=mesh (fitter/stages/init/user_mesh.py): a user mesh is checked before heavy work, each problem one
line; one over `init.max_mesh_faces` is decimated with a warning; a stop is never a user error."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

import fitter.stages.init.user_mesh as init_mesh
from common.errors import StopRequested, UserError
from fitter.config import REPO_ROOT, InitConfig
from fitter.stages.init.sdf_grid import GridSDF
from fitter.stages.init.user_mesh import MAX_READ_FACES, check_encloses_volume, check_mesh_input, mesh_grid_sdf, user_mesh
from representations.dmtet import mesh_signed_distance
from representations.mesh import icosphere, mesh_to_trimesh

EXAMPLE = str(REPO_ROOT / "examples" / "astronaut.png")
PREVIEW = str(REPO_ROOT / "configs" / "preview.yaml")


def mesh_cfg(path: Path, max_faces: int = InitConfig.max_mesh_faces) -> InitConfig:
    return InitConfig(kind="mesh", mesh_path=str(path), max_mesh_faces=max_faces)


def write_sphere(path: Path, subdivisions: int = 2, verts=None, faces=None) -> Path:
    sphere = trimesh.creation.icosphere(subdivisions)
    verts = sphere.vertices if verts is None else verts
    trimesh.Trimesh(verts, sphere.faces if faces is None else faces, process=False, validate=False).export(path)
    return path


def sphere_with(change) -> tuple[np.ndarray, np.ndarray]:
    sphere = trimesh.creation.icosphere(2)
    verts, faces = sphere.vertices.copy(), sphere.faces.copy()
    change(verts, faces)
    return verts, faces


def _nan(v, f):
    v[7, 0] = np.nan


def _inf(v, f):
    v[7, 2] = np.inf


def _one_point(v, f):
    v[:] = (0.1, 0.2, 0.3)


def _index_too_big(v, f):
    f[9, 1] = 5000


def _index_negative(v, f):
    f[9, 1] = -3


BAD_SPHERES = [(_nan, "non-finite"), (_inf, "non-finite"), (_one_point, "one point"),
               (_index_too_big, "vertex index 5000"), (_index_negative, "vertex index -3")]


@pytest.mark.parametrize("change, message", BAD_SPHERES, ids=lambda p: getattr(p, "__name__", p))
def test_broken_geometry_is_one_line_user_error(tmp_path, change, message):
    path = write_sphere(tmp_path / "head.ply", 2, *sphere_with(change))
    for check in (user_mesh, check_mesh_input):
        with pytest.raises(UserError, match=message) as info:
            check(mesh_cfg(path))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, content, message", [
    ("empty.obj", "", "cannot read empty.obj"),
    ("garbage.ply", "\x00\x01 not a mesh", "cannot read garbage.ply"),
    ("triangle.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "too few triangles (1)"),
    ("flat.obj", "".join(f"v {x} {y} 0\n" for x in range(3) for y in range(3)) + "f 1 2 5\nf 2 3 6\nf 4 5 8\nf 5 6 9\n", "is flat"),
    ("zero_area.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 1 2\nf 2 2 3\nf 3 3 4\nf 4 4 1\n", "only triangles of zero area"),
    ("head.stl", "solid x", "must be one of"),
])
def test_unusable_files_are_one_line_user_errors(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        user_mesh(mesh_cfg(tmp_path / name))
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="does not exist"):
        user_mesh(mesh_cfg(tmp_path / "missing.ply"))


def test_the_mesh_is_centred_and_scaled(tmp_path):
    sphere = trimesh.creation.icosphere(2, radius=3.0)
    sphere.apply_translation([10.0, -4.0, 2.0])
    sphere.export(tmp_path / "head.obj")
    mesh = user_mesh(mesh_cfg(tmp_path / "head.obj"))
    assert float(mesh.verts.abs().max()) == pytest.approx(0.9, abs=1e-5)
    assert torch.allclose(0.5 * (mesh.verts.max(0).values + mesh.verts.min(0).values), torch.zeros(3), atol=1e-5)


def test_a_mesh_over_the_limit_is_decimated_with_a_warning(tmp_path, caplog):
    path = write_sphere(tmp_path / "dense.ply", 4)  # 5120 faces
    with caplog.at_level(logging.WARNING, logger="headfit"):
        mesh = user_mesh(mesh_cfg(path, max_faces=1000))
    assert 900 <= mesh.num_faces <= 1000
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["init mesh dense.ply has 5120 faces, more than init.max_mesh_faces=1000: decimated to that many"]


def test_a_file_declaring_too_many_faces_is_refused_unread(tmp_path, monkeypatch):
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
              b"property float z\nelement face %d\nproperty list uchar int vertex_indices\nend_header\n" % (MAX_READ_FACES + 1))
    (tmp_path / "huge.ply").write_bytes(header)
    monkeypatch.setattr(init_mesh, "load_mesh", lambda *a, **k: pytest.fail("the file was read"))
    for check in (user_mesh, check_mesh_input):
        with pytest.raises(UserError, match="10,000,001 faces, more than the 10,000,000 that can be read"):
            check(mesh_cfg(tmp_path / "huge.ply"))


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    path = write_sphere(tmp_path / "head.ply")
    monkeypatch.setattr(init_mesh, "MAX_MESH_FILE_BYTES", path.stat().st_size - 1)
    monkeypatch.setattr(init_mesh, "load_mesh", lambda *a, **k: pytest.fail("the file was read"))
    with pytest.raises(UserError, match="GB that can be read; decimate it first"):
        check_mesh_input(mesh_cfg(path))


def test_the_pre_intake_check_reads_only_small_files(tmp_path, monkeypatch):
    path = write_sphere(tmp_path / "dense.ply", 4)
    check_mesh_input(mesh_cfg(path))  # under the limit: read and checked
    monkeypatch.setattr(init_mesh, "load_mesh", lambda *a, **k: pytest.fail("a file over the limit was read before the intake"))
    check_mesh_input(mesh_cfg(path, max_faces=1000))


def test_a_stop_while_reading_is_not_a_user_error(tmp_path, monkeypatch):
    path = write_sphere(tmp_path / "head.ply")

    def interrupted(*args, **kwargs):
        raise StopRequested("stop requested")

    monkeypatch.setattr(trimesh, "load", interrupted)
    with pytest.raises(StopRequested):
        user_mesh(mesh_cfg(path))


def test_a_field_without_inside_is_a_user_error():
    with pytest.raises(UserError, match="encloses no volume"):
        check_encloses_volume(GridSDF(torch.ones(8, 8, 8), 1.3), "open.obj")
    check_encloses_volume(GridSDF(torch.linspace(-1, 1, 512).reshape(8, 8, 8), 1.3), "closed.obj")


def test_the_distance_grid_in_pieces_equals_one_query():
    sphere = icosphere(2)
    resolution = 41  # 68921 points: two pieces
    assert resolution**3 > init_mesh.SDF_POINTS_PER_CALL
    grid = mesh_grid_sdf(sphere, resolution, 1.3)
    axis = torch.linspace(-1.3, 1.3, resolution)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    whole = mesh_signed_distance(mesh_to_trimesh(sphere), points.double().numpy())
    assert np.array_equal(grid.values.reshape(-1).numpy(), whole.astype(np.float32))


def test_cli_decimates_an_over_limit_mesh(tmp_path):
    """Through run.py: one warning line for the decimation, exit 0, the init built from at most the limit."""
    path = write_sphere(tmp_path / "dense.ply", 4)
    out = tmp_path / "run"
    args = [sys.executable, str(REPO_ROOT / "run.py"), "--image", EXAMPLE, "--config", PREVIEW, "--out", str(out),
            "--stop-after", "init", "init.kind=mesh", f"init.mesh_path={path}", "init.max_mesh_faces=1000"]
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    print(f"run.py took {time.perf_counter() - start:.1f} s")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("warning:") for line in lines), result.stderr
    assert [line for line in lines if "decimated" in line] == [
        "warning: init mesh dense.ply has 5120 faces, more than init.max_mesh_faces=1000: decimated to that many"]
    info = json.loads((out / "init" / "init.json").read_text())
    assert info["kind"] == "mesh" and 900 <= info["mesh_faces_used"] <= 1000
