"""UV unwrapping with xatlas, run in a child process (`_xatlas_worker.py`) with a timeout.

xatlas segfaults on some inputs and can take minutes on large meshes; a crash or hang of the child
becomes a `UVUnwrapError` saying what happened, and the caller keeps running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import require

from .cleanup import decimate
from .core import Mesh
from .errors import UVUnwrapError

_WORKER = Path(__file__).with_name("_xatlas_worker.py")


@dataclass(frozen=True)
class UnwrapOptions:
    """The run config's `fit.texture.unwrap` section; the texture size the atlas is packed for (xatlas
    PackOptions.resolution) is `unwrap_uv`'s ``resolution``.
    padding: gap between charts in atlas texels. xatlas sizes the atlas only approximately to
    ``resolution`` (often up to ~30 % larger); UVs are normalised to the atlas, so in the final
    texture the gap is ``padding · resolution / max(atlas width, height)`` texels (see `AtlasInfo`).
    max_faces: meshes above this are decimated first (xatlas: ~12 s for 40k faces on our CPU).
    timeout_s: wall-clock limit for the child process."""

    padding: int = 4
    max_faces: int = 50_000
    timeout_s: float = 300.0
    block_align: bool = False
    brute_force: bool = False
    max_chart_iterations: int = 1

    def __post_init__(self) -> None:
        require(0 <= self.padding <= 64 and 0 < self.timeout_s <= 86400, "padding",
                "must be in [0, 64] with timeout_s in (0, 86400]")
        require(self.max_faces >= 1000, "max_faces", "must be >= 1000")
        require(self.max_chart_iterations >= 1, "max_chart_iterations", "must be >= 1")


@dataclass(frozen=True)
class AtlasInfo:
    chart_count: int
    width: int
    height: int
    utilization: float
    padding_texels: float
    """The smallest chart gap in texels of a ``resolution``² texture."""


def unwrap_uv(mesh: Mesh, resolution: int, options: UnwrapOptions = UnwrapOptions()) -> Mesh:
    """A copy of ``mesh`` with ``uv`` (T, 2) and ``uv_faces`` (F, 3) from xatlas, packed for a
    ``resolution``² texture; texture dropped.

    Meshes with more than ``options.max_faces`` faces are decimated first, so the returned geometry
    may be coarser; otherwise ``verts`` are the input's and ``faces`` the same triangles.
    Raises `UVUnwrapError` when the worker crashes, times out, or returns an unusable atlas.
    """
    return unwrap_uv_with_info(mesh, resolution, options)[0]


def unwrap_uv_with_info(mesh: Mesh, resolution: int, options: UnwrapOptions = UnwrapOptions()) -> tuple[Mesh, AtlasInfo]:
    if mesh.num_faces > options.max_faces:
        mesh = decimate(mesh, options.max_faces)
    verts = mesh.verts.detach().cpu().numpy().astype(np.float32)
    faces = mesh.faces.cpu().numpy().astype(np.uint32)
    vmapping, indices, uvs, info = run_xatlas(verts, faces, resolution, options)
    device = mesh.verts.device
    out = Mesh(
        verts=mesh.verts.detach(),
        faces=torch.from_numpy(vmapping[indices].astype(np.int64)).to(device),
        uv=torch.from_numpy(uvs).to(device=device, dtype=mesh.verts.dtype),
        uv_faces=torch.from_numpy(indices.astype(np.int64)).to(device),
        vertex_colors=mesh.vertex_colors,
    )
    return out, info


def run_xatlas(verts: np.ndarray, faces: np.ndarray, resolution: int,
               options: UnwrapOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray, AtlasInfo]:
    """xatlas on (V, 3) float32 verts and (F, 3) uint32 faces in a child process.

    Returns vmapping (N,) original vertex of each atlas vertex, indices (F, 3) into the atlas
    vertices, uvs (N, 2) in [0, 1], and the atlas info.
    """
    with tempfile.TemporaryDirectory(prefix="xatlas_") as tmp:
        workdir = Path(tmp)
        np.save(workdir / "verts.npy", np.ascontiguousarray(verts, dtype=np.float32))
        np.save(workdir / "faces.npy", np.ascontiguousarray(faces, dtype=np.uint32))
        (workdir / "options.json").write_text(json.dumps(asdict(options) | {"resolution": resolution}))
        _run_worker(workdir, options.timeout_s, what=f"{len(verts)} vertices, {len(faces)} faces")
        return _read_result(workdir, len(verts), len(faces), resolution, options)


def _run_worker(workdir: Path, timeout_s: float, what: str) -> None:
    command = [sys.executable, "-I", str(_WORKER), str(workdir)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UVUnwrapError(f"xatlas worker timed out after {timeout_s:g} s on a mesh with {what}; it was killed") from None
    if done.returncode == 0:
        return
    detail = _stderr_tail(done.stderr)
    if done.returncode < 0:
        cause = f"was killed by signal {_signal_name(-done.returncode)}"
    else:
        cause = f"exited with code {done.returncode}"
        if done.returncode > 128:
            cause += f" (as a shell reports death by {_signal_name(done.returncode - 128)})"
    raise UVUnwrapError(f"xatlas worker {cause} on a mesh with {what}" + (f": {detail}" if detail else ""))


def _read_result(workdir: Path, num_verts: int, num_faces: int, resolution: int, options: UnwrapOptions):
    try:
        vmapping = np.load(workdir / "vmapping.npy", allow_pickle=False).astype(np.int64)
        indices = np.load(workdir / "indices.npy", allow_pickle=False).astype(np.int64)
        uvs = np.load(workdir / "uvs.npy", allow_pickle=False).astype(np.float32)
        raw = json.loads((workdir / "atlas.json").read_text())
    except (OSError, ValueError) as error:
        raise UVUnwrapError(f"xatlas worker exited cleanly but its output is unreadable: {error}") from None
    problem = _result_problem(vmapping, indices, uvs, raw, num_verts, num_faces)
    if problem:
        raise UVUnwrapError(f"xatlas returned an unusable atlas: {problem}")
    gap = options.padding * resolution / max(raw["width"], raw["height"])
    info = AtlasInfo(raw["chart_count"], raw["width"], raw["height"], raw["utilization"], gap)
    return vmapping, indices, np.clip(uvs, 0.0, 1.0), info


def _result_problem(vmapping, indices, uvs, raw: dict, num_verts: int, num_faces: int) -> str:
    if raw["atlas_count"] != 1:
        return f"{raw['atlas_count']} atlases instead of 1 (charts would overlap in one texture)"
    if indices.shape != (num_faces, 3) or uvs.shape != (len(vmapping), 2):
        return f"shapes indices {indices.shape}, uvs {uvs.shape}, vmapping {vmapping.shape}"
    if indices.size and (indices.min() < 0 or indices.max() >= len(vmapping)):
        return "face indices out of range"
    if len(vmapping) and (vmapping.min() < 0 or vmapping.max() >= num_verts):
        return "vertex mapping out of range"
    if not np.isfinite(uvs).all() or uvs.min(initial=0.0) < -1e-4 or uvs.max(initial=0.0) > 1.0 + 1e-4:
        return "uvs not finite or outside [0, 1]"
    return ""


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)


def _stderr_tail(stderr: bytes, max_chars: int = 600) -> str:
    text = stderr.decode("utf-8", errors="replace").strip()
    return text[-max_chars:].replace("\n", " | ")
