"""The rig stage on the shared smoke run of the shipped photo, and on copies of it with another head shape, a
sculpt with a hole and a sculpt far from the prior: topology, UVs and blendshapes that act where they should."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import UserError
from fitter.config import load_config
from fitter.context import RunContext
from fitter.stages.rig import contract
from fitter.stages.rig.fbx import bpy_available
from fitter.stages.rig.stage import run
from representations.mesh import Mesh, read_mesh, save_ply
from representations.parametric import head_model
from representations.parametric.assets import ARKIT_NAMES
from representations.parametric.landmarks import load_landmark_map
from tests.helpers import accessor, need, read_glb, shared_run

pytestmark = pytest.mark.usefixtures("one_thread")
UPPER_LIP, LOWER_LIP = 13, 14
"""MediaPipe's inner-lip midpoints."""
LEFT_UPPER_LID, LEFT_LOWER_LID, RIGHT_UPPER_LID, RIGHT_LOWER_LID = 386, 374, 159, 145
"""MediaPipe's eyelid midpoints; left and right are the subject's."""
SMOKE_WRAP_MEAN_PCT = 1.5
"""The smoke run's sculpt is coarse (a 40³ grid): its wrap error bound; the preview's is in bench/RESULTS.md."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, worker_id) -> Path:
    return shared_run(tmp_path_factory, worker_id)


def skin_primitive(path: Path) -> tuple[dict, bytes, dict]:
    doc, blob = read_glb(path)
    skinned = [m for m in doc["meshes"] if m["primitives"][0].get("targets")]
    assert len(skinned) == 1
    return doc, blob, skinned[0]


def rig_copy(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns("report*", "init", "rig", "export", "*.mp4", "*.pt"))
    return out


def run_rig(out: Path, *overrides: str) -> dict:
    run(RunContext(cfg=load_config(out / "config.yaml", overrides), out=out, device=torch.device("cpu")))
    return json.loads((out / "rig" / "rig.json").read_text())


def test_rigged_head_on_the_shipped_photo(run_dir: Path):
    rig = json.loads((run_dir / "rig" / "rig.json").read_text())
    assert rig["enabled"] and rig["vertices"] == 4538 and rig["faces"] == 9014
    assert rig["bones"] == 64 and rig["morph_targets"] == 52 and rig["hair"]["faces"] > 1000
    assert 0 < rig["wrap_error"]["mean_pct"] <= SMOKE_WRAP_MEAN_PCT <= rig["wrap_error"]["max_pct"] + SMOKE_WRAP_MEAN_PCT
    assert rig["wrapped_fraction"] > 0.5 and rig["pinned_vertices"] > 100
    assert rig["photo_expression"]["mouthSmileLeft"] > 0.3  # the astronaut smiles
    assert (run_dir / "head_rigged.glb").read_bytes() == (run_dir / "rig" / "head_rigged.glb").read_bytes()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["rig"]["wrap_error"] == rig["wrap_error"]


def test_rigged_mesh_keeps_the_model_topology_and_uvs(run_dir: Path):
    doc, blob, mesh = skin_primitive(run_dir / "head_rigged.glb")
    model = head_model()
    primitive = mesh["primitives"][0]
    assert mesh["extras"]["targetNames"] == ARKIT_NAMES and len(primitive["targets"]) == 52
    positions = accessor(doc, blob, primitive["attributes"]["POSITION"])
    uv = accessor(doc, blob, primitive["attributes"]["TEXCOORD_0"])
    corners = accessor(doc, blob, primitive["indices"]).reshape(-1, 3).astype(np.int64)
    assert len(corners) == 9014
    ids = split_ids(positions, corners, model)
    assert (ids[corners] == model.faces.numpy()).all()  # the model's faces, in its order
    expected_uv = model.uvs.numpy()[model.face_uvs.numpy()]  # (F, 3, 2)
    assert np.abs(uv[corners][..., 0] - expected_uv[..., 0]).max() < 1e-6
    assert np.abs(1 - uv[corners][..., 1] - expected_uv[..., 1]).max() < 1e-6  # glTF stores 1 - v


def split_ids(positions: np.ndarray, corners: np.ndarray, model) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The model vertex of each written vertex: the writer keeps vertex i at i and appends seam copies; a copy's
    original is the model vertex its corners take in the model's faces."""
    ids = np.full(len(positions), -1)
    ids[corners.reshape(-1)] = model.faces.numpy().reshape(-1)
    assert (ids[: model.num_vertices] == np.arange(model.num_vertices)).all()
    assert np.abs(positions - positions[ids]).max() == 0  # a copy sits where its original does
    return ids


def test_blendshapes_act_where_they_should(run_dir: Path):
    doc, blob, mesh = skin_primitive(run_dir / "head_rigged.glb")
    primitive = mesh["primitives"][0]
    model = head_model()
    rest = accessor(doc, blob, primitive["attributes"]["POSITION"])[: model.num_vertices].astype(np.float64)
    deltas = {name: accessor(doc, blob, target["POSITION"])[: model.num_vertices].astype(np.float64)
              for name, target in zip(ARKIT_NAMES, primitive["targets"])}
    height = json.loads((run_dir / "rig" / "rig.json").read_text())["head_height"]
    for name, delta in deltas.items():
        assert np.isfinite(delta).all() and np.linalg.norm(delta, axis=1).max() < 0.25 * height, name  # jawOpen: ~0.18
    landmarks = load_landmark_map()

    def lip_gap(vertices: np.ndarray) -> float:
        points = landmarks.points(torch.as_tensor(vertices), model.faces).numpy()
        return float(np.linalg.norm(points[UPPER_LIP] - points[LOWER_LIP]))

    assert lip_gap(rest + deltas["jawOpen"]) > lip_gap(rest) + 0.02 * height
    # eyeBlinkLeft closes the subject's left eye (MediaPipe's lids 386/374) and leaves the right one (159/145) open
    def lid_gaps(vertices: np.ndarray) -> np.ndarray:
        points = landmarks.points(torch.as_tensor(vertices), model.faces).numpy()
        return np.linalg.norm(points[[LEFT_UPPER_LID, RIGHT_UPPER_LID]] - points[[LEFT_LOWER_LID, RIGHT_LOWER_LID]], axis=1)

    left, right = lid_gaps(rest + deltas["eyeBlinkLeft"]) / lid_gaps(rest)
    assert left < 0.5 and abs(right - 1) < 0.1


def test_another_head_shape_gives_the_same_topology(run_dir: Path, tmp_path: Path):
    out = rig_copy(run_dir, tmp_path)
    fit_path = out / "prior" / "fit.json"
    fit = json.loads(fit_path.read_text())
    fit["phenotype"] |= {"gender": 0.1, "weight": 0.9, "age": 0.9}
    fit["local_changes"] |= {"nose-scale-horiz-incr": 0.6, "chin-width-incr": -0.5}
    fit_path.write_text(json.dumps(fit))
    rig = run_rig(out)
    assert rig["wrap_error"]["mean_pct"] <= 2 * SMOKE_WRAP_MEAN_PCT
    doc_a, blob_a, mesh_a = skin_primitive(run_dir / "rig" / "head_rigged.glb")
    doc_b, blob_b, mesh_b = skin_primitive(out / "rig" / "head_rigged.glb")
    pa, pb = mesh_a["primitives"][0], mesh_b["primitives"][0]
    assert (accessor(doc_a, blob_a, pa["indices"]) == accessor(doc_b, blob_b, pb["indices"])).all()
    assert (accessor(doc_a, blob_a, pa["attributes"]["TEXCOORD_0"]) == accessor(doc_b, blob_b, pb["attributes"]["TEXCOORD_0"])).all()
    positions_a = accessor(doc_a, blob_a, pa["attributes"]["POSITION"])
    positions_b = accessor(doc_b, blob_b, pb["attributes"]["POSITION"])
    assert positions_a.shape == positions_b.shape and not np.allclose(positions_a, positions_b)


def test_a_sculpt_with_a_hole_warns_and_still_exports(run_dir: Path, tmp_path: Path, caplog):
    before = json.loads((run_dir / "rig" / "rig.json").read_text())["wrap_error"]
    out = rig_copy(run_dir, tmp_path)
    sculpt = read_mesh(out / "geometry" / "mesh.ply")
    low, high = sculpt.verts.min(0).values, sculpt.verts.max(0).values
    nose = sculpt.verts[sculpt.verts[:, 2].argmax()]
    cheek = nose + torch.tensor([0.2, -0.1, -0.15]) * (high - low)  # the subject's left cheek
    keep = (sculpt.verts[sculpt.faces].mean(1) - cheek).norm(dim=1) > 0.12 * float((high - low)[0])
    save_ply(Mesh(sculpt.verts, sculpt.faces[keep]), out / "geometry" / "mesh.ply")
    with caplog.at_level(logging.WARNING, logger="headfit"):
        rig = run_rig(out, f"rig.wrap_warn_pct={1.05 * before['mean_pct']:.4f}")
    assert rig["wrap_error"]["mean_pct"] > 1.05 * before["mean_pct"]
    warnings = [r.getMessage() for r in caplog.records if "rig.wrap_warn_pct" in r.getMessage()]
    assert warnings and f"{rig['wrap_error']['mean_pct']:.2f}%" in warnings[0]
    assert (out / "rig" / "head_rigged.glb").is_file()


def test_a_sculpt_far_from_the_prior_is_a_clear_error(run_dir: Path, tmp_path: Path):
    out = rig_copy(run_dir, tmp_path)
    sculpt = read_mesh(out / "geometry" / "mesh.ply")
    save_ply(sculpt.replace(verts=sculpt.verts + torch.tensor([0.0, 0.0, 3.0])), out / "geometry" / "mesh.ply")
    with pytest.raises(UserError, match="nothing usable to wrap"):
        run_rig(out)
    assert not (out / "rig" / "head_rigged.glb").exists()


def test_rig_off_writes_no_rigged_head(run_dir: Path, tmp_path: Path):
    out = rig_copy(run_dir, tmp_path)
    assert run_rig(out, "rig.enabled=false") == {"enabled": False}
    assert not (out / "rig" / "head_rigged.glb").exists()


def test_fbx_through_blender(run_dir: Path, tmp_path: Path):
    need(bpy_available(), "bpy 5.0.1 (Blender as a Python module, pip install -e '.[blender]')")
    out = rig_copy(run_dir, tmp_path)
    rig = run_rig(out, "rig.fbx=true", "rig.hair=false")
    assert (out / "rig" / "head_rigged.fbx").read_bytes()[:18] == b"Kaydara FBX Binary" and rig["seconds"]["fbx"] > 0


def test_fbx_without_blender_is_refused_before_the_intake(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(contract, "bpy_available", lambda: False)
    with pytest.raises(UserError, match="rig.fbx=true needs Blender"):
        contract.check(load_config(None, ["rig.fbx=true"]), tmp_path / "photo.png")
    contract.check(load_config(None, ["rig.fbx=true", "rig.enabled=false"]), tmp_path / "photo.png")
