"""One smoke run, then its report in headless Chromium, its exports through the Khronos glTF
validator, trimesh and Blender, and `run.py eval` on it.

The browser, validator and Blender are installed by .ci/run; under CI=true a missing tool is a
failure, elsewhere the test is skipped and says what to install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from fitter.cli import main
from representations.cameras import EVAL_VIEWS
from representations.parametric.assets import ARKIT_NAMES
from tests.helpers import need, shared_run, validator_issues


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, worker_id) -> Path:
    return shared_run(tmp_path_factory, worker_id)


def test_report_files(run_dir):
    page = (run_dir / "report.html").read_text()
    for name in EVAL_VIEWS:
        assert f'src="report/eval_{name}.png"' in page and (run_dir / "report" / f"eval_{name}.png").is_file()
    assert 'src="subject/image_512.png"' in page and 'src="turntable.mp4"' in page
    curve = Image.open(run_dir / "report" / "loss_geometry_sculpt.png")
    assert curve.size[0] >= 500 and np.asarray(curve.convert("L")).std() > 10
    assert "psnr_db" in page and "lambda_mask" in page  # metrics table and resolved config
    assert "report.html" in (run_dir / "run.log").read_text()
    # the lit texture in the viewer, the albedo (texture/albedo.png, copied) beside it, its lighting in metrics.json
    assert (run_dir / "head_albedo.png").read_bytes() == (run_dir / "texture" / "albedo.png").read_bytes()
    assert "The viewer shows the lit texture (the photo's lighting baked in, head.png);" in page
    assert 'href="head_albedo.png"' in page and 'src="head_albedo.png"' in page and "for relighting" in page
    lighting = json.loads((run_dir / "metrics.json").read_text())["lighting"]
    assert np.asarray(lighting["sh"]).shape == (3, 9) and 0 < lighting["fit_rmse"] < 0.1 and lighting["face_samples"] > 1000
    assert lighting["sh"][0][0] > 0.5  # the red channel's ambient term of a lit face (colour ≈ 0.28 · L00)


def test_report_says_which_texture_the_viewer_shows_only_with_an_albedo(tmp_path):
    from fitter.stages.export.report.page import textures_html

    assert textures_html(tmp_path, {}) == ""
    (tmp_path / "head_albedo.png").write_bytes(b"")
    note = textures_html(tmp_path, {"lighting": {"fit_rmse": 0.0421}})
    assert "The viewer shows the lit texture (the photo's lighting baked in, head.png);" in note
    assert "has the estimated lighting divided out, for relighting." in note and "0.042" in note
    assert note.count("<img") == 2 and 'src="head.png"' in note and 'src="head_albedo.png"' in note


def test_report_in_headless_chromium(run_dir, tmp_path):
    chromium = shutil.which("chromium")
    need(chromium is not None, "Debian chromium")
    need((run_dir / "report" / "model-viewer.min.js").is_file(), "@google/model-viewer",
         "is not installed (python run.py install-viewer, or bash .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((run_dir / "report.html").as_uri())
        # loaded and shown (model-viewer's `modelIsVisible`), then two animation frames: the first drawn one
        page.wait_for_function("(() => { const v = document.getElementById('head');"
                               " return v?.loaded === true && v.modelIsVisible === true; })()", timeout=60_000)
        page.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        shot = tmp_path / "viewer.png"
        page.locator("#head").screenshot(path=str(shot))
        browser.close()
    assert problems == []
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    changed = np.abs(pixels - background).sum(-1) > 40
    assert changed.mean() > 0.05, "the viewer's canvas is blank"
    assert pixels[changed].std() > 20  # a textured face, not a flat silhouette


def test_rigged_viewer_plays_expressions(run_dir, tmp_path):
    """The rigged head's viewer: its buttons pose the morph targets (the jaw-open key of the clip and the neutral
    pose render differently around the mouth) and it shows the rigged GLB's animations."""
    chromium = shutil.which("chromium")
    need(chromium is not None, "Debian chromium")
    need((run_dir / "report" / "model-viewer.min.js").is_file(), "@google/model-viewer",
         "is not installed (python run.py install-viewer, or bash .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((run_dir / "report.html").as_uri())
        page.locator("#rigged").scroll_into_view_if_needed()  # model-viewer shows a model only once it is on screen
        page.wait_for_function("(() => { const v = document.getElementById('rigged');"
                               " return v?.loaded === true && v.modelIsVisible === true; })()", timeout=60_000)
        animations = page.evaluate("document.getElementById('rigged').availableAnimations")
        shots = {}
        for name, script in (("neutral", "showPose('neutral')"), ("jaw", "showPose('expression_demo', 0.45)")):
            page.evaluate(script)
            page.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
            shots[name] = tmp_path / f"{name}.png"
            page.locator("#rigged").screenshot(path=str(shots[name]))
        browser.close()
    assert problems == []
    assert set(animations) == {"photo_expression", "neutral", "expression_demo"}
    neutral, jaw = (np.asarray(Image.open(shots[k]).convert("RGB")).astype(int) for k in ("neutral", "jaw"))
    background = np.median(neutral.reshape(-1, 3), axis=0)
    assert (np.abs(neutral - background).sum(-1) > 40).mean() > 0.05, "the rigged viewer's canvas is blank"
    changed = np.abs(neutral - jaw).sum(-1) > 30
    assert changed.mean() > 0.002, "opening the jaw changed nothing on the canvas"


def test_report_without_viewer_says_so(run_dir, tmp_path, monkeypatch):
    from fitter.config import load_config
    from fitter.stages.export.report import viewer, write_report

    monkeypatch.setenv("HEADFIT_NPM_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(viewer, "VENDOR_DIR", tmp_path / "empty-vendor")
    monkeypatch.setattr(viewer.subprocess, "run", lambda *a, **k: pytest.fail("a report ran a command"))
    out = tmp_path / "run"
    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns("report*", "*.pt"))
    write_report(out, load_config(out / "config.yaml"))
    page = (out / "report.html").read_text()
    assert 'id="no-viewer"' in page and "<model-viewer" not in page and "empty-cache" in page
    assert "python run.py install-viewer" in page
    assert not (out / "report" / "model-viewer.min.js").exists()


@pytest.mark.parametrize("name", ["head.glb", "head_rigged.glb"])
def test_glbs_pass_khronos_validator(run_dir, name):
    issues = validator_issues(run_dir / name)
    errors = [m for m in issues["messages"] if m["severity"] == 0]
    assert issues["numErrors"] == 0, errors
    if name == "head_rigged.glb":  # written by hand (representations/mesh/gltf_rig.py): not even a warning
        assert issues["numWarnings"] == 0, [m for m in issues["messages"] if m["severity"] == 1]


def test_obj_set_loads_in_trimesh_with_texture(run_dir):
    mesh = trimesh.load(run_dir / "head.obj", force="mesh")
    assert len(mesh.faces) > 500 and mesh.visual.uv is not None and len(mesh.visual.uv) == len(mesh.vertices)
    image = mesh.visual.material.image
    assert image is not None and image.size == Image.open(run_dir / "head.png").size
    uv = np.asarray(mesh.visual.uv)
    assert uv.min() >= 0.0 and uv.max() <= 1.0


BLENDER_CHECK = """
import json, sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
mesh = [o for o in bpy.context.scene.objects if o.type == "MESH"][0].data
images = [n.image for m in mesh.materials for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
print(json.dumps({"faces": len(mesh.polygons), "uv_layers": len(mesh.uv_layers),
                  "image": list(images[0].size) if images else None}))
"""


def test_glb_imports_into_blender(run_dir):
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('bpy') is not None)"],
                           capture_output=True, text=True, timeout=60)
    need(probe.stdout.strip() == "True", "bpy 5.0.1 (Blender as a Python module, pip install -e '.[blender]')")
    result = subprocess.run([sys.executable, "-c", BLENDER_CHECK, str(run_dir / "head.glb")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    glb = trimesh.load(run_dir / "head.glb", force="mesh")
    assert info["faces"] == len(glb.faces) and info["uv_layers"] == 1
    assert info["image"] == list(Image.open(run_dir / "head.png").size)


def test_eval_command_on_run(run_dir, tmp_path, capsys):
    summary = tmp_path / "summary"
    assert main(["eval", str(run_dir), "--out", str(summary)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((run_dir / "eval.json").read_text())
    metrics = result["metrics"]
    assert set(result["views"]) == set(EVAL_VIEWS)
    assert all((run_dir / v["image"]).is_file() for v in result["views"].values())
    metrics_json = json.loads((run_dir / "metrics.json").read_text())["reference"]
    assert metrics["psnr_db"]["value"] == pytest.approx(metrics_json["psnr_db"], abs=1e-6)
    assert metrics["ssim"]["value"] == pytest.approx(metrics_json["ssim"], abs=1e-6)
    dlib = metrics["identity_dlib_distance"]
    assert dlib["computed"] and set(dlib["per_view"]) == set(EVAL_VIEWS)
    assert dlib["per_view"]["rear"] is None  # no face on the back of the head
    for key, setting in (("clip_i", "models.clip"), ("lpips", "models.lpips"), ("identity_arcface_cosine", "models.arcface")):
        assert metrics[key] == {"computed": False, "value": None, "reason": metrics[key]["reason"]}
        assert setting in metrics[key]["reason"]
    rows = (summary / "eval_summary.csv").read_text().splitlines()
    assert rows[0] == "run,identity_arcface_cosine,identity_dlib_distance,clip_i,lpips,psnr_db,ssim"
    assert rows[1].startswith(f"{run_dir.name},,") and len(rows) == 2
    markdown = (summary / "eval_summary.md").read_text()
    assert "| run |" in markdown and "lpips: not computed" in markdown and markdown in printed


BLENDER_RIG_CHECK = """
import json, sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
objects = bpy.context.scene.objects
armatures = [o for o in objects if o.type == "ARMATURE"]
meshes = [o for o in objects if o.type == "MESH" and o.data.shape_keys is not None]
skin = meshes[0].data if meshes else None
images = [n.image for m in (skin.materials if skin else []) for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
print(json.dumps({"armatures": len(armatures), "bones": [b.name for b in armatures[0].data.bones] if armatures else [],
                  "shape_keys": [k.name for k in skin.shape_keys.key_blocks] if skin else [],
                  "uv_layers": len(skin.uv_layers) if skin else 0, "image": list(images[0].size) if images else None,
                  "meshes": sorted(o.name for o in objects if o.type == "MESH")}))
"""


def test_rigged_glb_imports_into_blender(run_dir):
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('bpy') is not None)"],
                           capture_output=True, text=True, timeout=60)
    need(probe.stdout.strip() == "True", "bpy 5.0.1 (Blender as a Python module, pip install -e '.[blender]')")
    result = subprocess.run([sys.executable, "-c", BLENDER_RIG_CHECK, str(run_dir / "head_rigged.glb")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    rig = json.loads((run_dir / "rig" / "rig.json").read_text())
    assert info["armatures"] == 1 and len(info["bones"]) == rig["bones"] == 64 and "jaw" in info["bones"]
    assert info["shape_keys"][0] == "Basis" and info["shape_keys"][1:] == ARKIT_NAMES
    assert info["uv_layers"] == 1 and info["image"] == [256, 256]  # the smoke run's rig.texture_size
    assert "hair" in info["meshes"]
