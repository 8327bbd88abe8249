"""Constants and helpers that several test files share (not fixtures: those live in conftest.py).
Test files import from here, never from one another."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fitter.cli import main
from fitter.config import REPO_ROOT
from fitter.stages.export.report.viewer import npm_cache_dir

EXAMPLE = str(REPO_ROOT / "examples" / "astronaut.png")
PREVIEW = str(REPO_ROOT / "configs" / "preview.yaml")
SMOKE = [
    "fit.geometry.steps=12", "fit.geometry.init_fit_steps=30", "fit.geometry.grid_resolution=40",
    "fit.geometry.render_size=96", "fit.geometry.band_rebuild_every=5", "fit.texture.resolution=256",
    "fit.texture.unwrap.max_faces=4000", "export.view_size=128", "export.turntable_frames=6",
    "export.turntable_size=128", "run.checkpoint_every=4", "init.sdf_resolution=48",
    "rig.texture_size=256", "rig.hair_texture_size=128", "rig.hair_resolution=48",
]
"""Overrides that make the preview config a smoke-scale fit (seconds per stage)."""
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(available: bool, what: str, hint: str = "is not installed (bash .ci/run installs it)") -> None:
    """Fail under CI (which installs every tool), skip with the reason elsewhere."""
    if not available:
        message = f"{what} {hint}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def smoke_fit(out: Path, *extra: str) -> int:
    """The whole fit of the shipped photo at smoke scale, in this process; the exit code."""
    return main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), *SMOKE, *extra])


def shared_run(tmp_path_factory, worker_id: str) -> Path:
    """One finished smoke run per test session, shared by the xdist workers through a lock."""
    from filelock import FileLock

    if worker_id == "master":
        root = tmp_path_factory.getbasetemp()
    else:
        root = tmp_path_factory.getbasetemp().parent  # the session folder all workers share
    out = root / "shared_smoke_run"
    with FileLock(str(root / "shared_smoke_run.lock")):
        if not (out / "export" / "done.json").is_file():
            assert smoke_fit(out) == 0
    return out


def signal_when_logged(proc: subprocess.Popen, out: Path, needle: str, signum: int, timeout: float = 180) -> str:
    """Send `signum` to a running fit once `needle` appears in its run.log; its stderr once it ended."""
    deadline = time.time() + timeout
    log = out / "run.log"
    while time.time() < deadline and needle not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    proc.send_signal(signum)
    return proc.communicate(timeout=120)[1]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """`run.py ARGS` in this process: the exit code, stdout and stderr."""
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mirrored_photo(folder: Path) -> Path:
    """Another photo (another sha256, the same face mirrored)."""
    path = folder / "mirrored.png"
    Image.fromarray(np.asarray(Image.open(EXAMPLE))[:, ::-1].copy()).save(path)
    return path


def tiny_arcface(path: Path) -> Path:
    """A tiny random ONNX model with ArcFace's interface: (1, 3, 112, 112) -> (1, 512)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32), "w")
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 512])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def sphere_normals(size: int = 65, radius: int = 30):
    """Camera-frame normals (H, W, 3) of a unit sphere seen head-on, in the OpenGL camera frame (x right,
    y up, z towards the viewer; row 0 at the top), centred in a ``size``² image with a ``radius``-pixel
    silhouette, zero outside; and its mask (H, W, 1). Both float32 torch tensors."""
    import torch

    c = (size - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    x, y = (cols - c) / radius, (c - rows) / radius
    inside = x**2 + y**2 <= 1.0
    z = torch.sqrt((1.0 - x**2 - y**2).clamp_min(0.0))
    normals = torch.stack([x, y, z], dim=-1) * inside[..., None]
    return normals.float(), inside[..., None].float()


GLTF_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
GLTF_DTYPES = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}


def read_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON" and json_length % 4 == 0
    bin_length, bin_type = struct.unpack_from("<I4s", data, 20 + json_length)
    assert bin_type == b"BIN\0" and 28 + json_length + bin_length == len(data)
    return json.loads(data[20:20 + json_length]), data[28 + json_length:]


def accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    """(count, components) array of accessor ``index`` (tightly packed views only)."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    assert "byteStride" not in view and view["byteOffset"] % 4 == 0
    dtype = GLTF_DTYPES[acc["componentType"]]
    array = np.frombuffer(blob, dtype=dtype, count=acc["count"] * GLTF_COMPONENTS[acc["type"]],
                          offset=view["byteOffset"] + acc.get("byteOffset", 0))
    assert array.nbytes <= view["byteLength"]
    return array.reshape(acc["count"], GLTF_COMPONENTS[acc["type"]])


def validator_issues(path: Path) -> dict:
    """The Khronos validator's ``issues`` for a GLB (needs node + gltf-validator in the npm cache)."""
    node = shutil.which("node")
    modules = npm_cache_dir() / "node_modules"
    need(node is not None and (modules / "gltf-validator").is_dir(), "node + gltf-validator in .cache/npm")
    script = ("const v=require('gltf-validator');const b=require('fs').readFileSync(process.argv[1]);"
              "v.validateBytes(new Uint8Array(b)).then(r=>console.log(JSON.stringify(r.issues)))"
              ".catch(e=>{console.error(String(e));process.exit(3)})")
    result = subprocess.run([str(node), "-e", script, str(path)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "NODE_PATH": str(modules)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


