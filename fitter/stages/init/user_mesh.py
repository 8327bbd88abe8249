"""Init kind `mesh`: a user's OBJ/PLY/GLB/glTF head turned into a starting shape.

The file is checked before any heavy work: it must exist and be of a readable kind, and a file that
declares more than `MAX_READ_FACES` faces, or is larger than `MAX_MESH_FILE_BYTES`, is refused
before it is read. The mesh read must stand
for a solid (`representations.mesh.check_solid`: finite, indices in range, not flat, some area).
A mesh with more than `init.max_mesh_faces` faces (default 30,000) is decimated to that many, with a
warning: the init keeps only an 80³ grid (spacing 0.033 units) of the mesh, and at 30k faces a head's
triangles are about 0.024 units across, finer than that grid, so the decimation loses nothing the
grid would keep, and the grid takes about 25 s instead of minutes. Then it is turned into our axes (`init.up_axis`, `init.front_axis`), centred
and scaled so its largest coordinate is `TARGET_HALF_HEIGHT`.

Costs on 2 CPU cores, for a 5.2M-face mesh: reading 1.3 s (binary PLY) to 17 s (OBJ), checks 1 s,
decimation 20 s; then the 80³ signed-distance grid, whose cost grows with the faces kept (about
15 s at 10k faces, 25 s at 30k, 57 s at 100k) whatever the file held.

Every problem is a one-line `UserError`. A stop request (Ctrl-C, SIGTERM) raises `StopRequested` as
soon as the native call in progress returns (the longest: decimating, 12-18 s at 5.2M faces).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from common.errors import StopRequested, UserError
from fitter.config import InitConfig
from fitter.stages.init.sdf_grid import GridSDF
from representations.dmtet import mesh_signed_distance
from representations.mesh import (
    Mesh,
    check_solid,
    count_faces,
    decimate,
    load_mesh,
    mesh_to_trimesh,
    remove_unreferenced_vertices,
)
from representations.mesh.load import READABLE_SUFFIXES

log = logging.getLogger("headfit")

MAX_READ_FACES = 10_000_000
"""A mesh file that declares more faces is refused unread: reading and decimating it would take
over a minute and several GB (3 GB at 5.2M faces)."""
SDF_POINTS_PER_CALL = 1 << 16
"""Grid points per native distance query: a stop request waits for at most one (about 2 s at 30k
faces; each call also rebuilds the query's search tree, which costs about 0.1 s)."""
MAX_MESH_FILE_BYTES = 1 << 30
"""A larger mesh file is refused unread whatever its count says (10M faces take about 200 MB as
binary PLY or GLB, 450 MB as OBJ)."""
TARGET_HALF_HEIGHT = 0.9
"""A user mesh is scaled so its largest coordinate magnitude (after centring) is this."""


def check_mesh_file(path: Path) -> int | None:
    """The file exists, has a readable suffix, is at most `MAX_MESH_FILE_BYTES` long and declares at
    most `MAX_READ_FACES` faces; returns the count it declares (None when its header does not say)."""
    if not path.is_file():
        raise UserError(f"init.mesh_path {path} does not exist (or is not a file)")
    if path.suffix.lower() not in READABLE_SUFFIXES:
        raise UserError(f"init.mesh_path {path}: mesh files must be one of {', '.join(READABLE_SUFFIXES)}")
    size = path.stat().st_size
    if size > MAX_MESH_FILE_BYTES:
        raise UserError(f"init mesh {path} is {size / 2**30:.1f} GB, more than the {MAX_MESH_FILE_BYTES / 2**30:g} GB "
                        "that can be read; decimate it first (e.g. in Blender or MeshLab)")
    declared = count_faces(path)
    if declared is not None and declared > MAX_READ_FACES:
        raise UserError(f"init mesh {path} has {declared:,} faces, more than the {MAX_READ_FACES:,} that can be read; "
                        "decimate it first (e.g. in Blender or MeshLab)")
    return declared


def check_mesh_input(init_cfg: InitConfig) -> None:
    """Before the intake: the checks of `check_mesh_file`, and all the checks of `user_mesh` unless
    the file declares more than `init.max_mesh_faces` (then reading it waits for the init stage). A
    file whose header gives no count is read too: it is most likely not a mesh at all."""
    declared = check_mesh_file(Path(init_cfg.mesh_path))
    if declared is None or declared <= init_cfg.max_mesh_faces:
        user_mesh(init_cfg)


def user_mesh(init_cfg: InitConfig) -> Mesh:
    """The init mesh of the config, checked, decimated to `init.max_mesh_faces`, in our axes,
    centred and scaled (see the module docstring)."""
    path = Path(init_cfg.mesh_path)
    check_mesh_file(path)
    mesh = _read_checked(path, init_cfg.up_axis, init_cfg.front_axis)
    limit = init_cfg.max_mesh_faces
    if mesh.num_faces > limit:
        log.warning("init mesh %s has %d faces, more than init.max_mesh_faces=%d: decimated to that many",
                    path.name, mesh.num_faces, limit)
        mesh = decimate(mesh, limit)
    return centred_and_scaled(mesh)


def _read_checked(path: Path, up_axis: str, front_axis: str) -> Mesh:
    try:
        mesh = load_mesh(path, up_axis=up_axis, front_axis=front_axis)
        check_solid(mesh, "it")
    except (ValueError, OSError) as exc:
        if isinstance(exc.__cause__, StopRequested):  # the reader wraps whatever its parser raised
            raise exc.__cause__ from None
        raise UserError(f"cannot use init mesh {path}: {exc}") from None
    return remove_unreferenced_vertices(mesh.without_uv().replace(vertex_colors=None))


def centred_and_scaled(mesh: Mesh) -> Mesh:
    """The mesh with its bounding box centred on the origin and its largest coordinate `TARGET_HALF_HEIGHT`."""
    verts = mesh.verts.double()
    centre = 0.5 * (verts.min(0).values + verts.max(0).values)
    scale = TARGET_HALF_HEIGHT / (verts - centre).abs().max()
    return Mesh(((verts - centre) * scale).float(), mesh.faces)


def mesh_grid_sdf(mesh: Mesh, resolution: int, bound: float) -> GridSDF:
    """Exact signed distance of a closed mesh sampled on a resolution³ grid over [-bound, bound]³."""
    tm = mesh_to_trimesh(mesh)

    def sdf(points: torch.Tensor) -> torch.Tensor:
        parts = [mesh_signed_distance(tm, part.double().numpy()) for part in points.split(SDF_POINTS_PER_CALL)]
        return torch.as_tensor(np.concatenate(parts), dtype=torch.float32)

    return GridSDF.from_function(sdf, resolution, bound)


def check_encloses_volume(sdf: GridSDF, path: str) -> None:
    """A user mesh whose grid SDF is nowhere negative has no inside (an open sheet, say)."""
    if not bool((sdf.values < 0).any()):
        raise UserError(f"init mesh {path} encloses no volume on the init grid: it must be a closed surface "
                        "with its faces turned outwards")
