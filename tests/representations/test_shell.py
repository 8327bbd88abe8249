"""`outer_shell`: the hair volume of a sculpt, off a skin, as its own closed mesh (representations/mesh/shell.py).

Synthetic heads: the skin is a sphere of radius R = 0.5; the sculpt is one closed surface (marching cubes of a
minimum of signed distances, as a real sculpt is one surface) holding the skin and a hair cap: the shell between
radius R and R_CAP above the plane y = CAP_BASE. Coarse grids keep every test within a second or two (the first
one also compiles the numba kernels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import trimesh
from skimage.measure import marching_cubes

from representations.dmtet import mesh_signed_distance
from representations.mesh import Mesh, icosphere, mesh_to_trimesh
from representations.mesh.shell import (
    SINK_CELLS,
    ShellSettings,
    closure_problem,
    face_components,
    outer_shell,
    shell_uv,
    signed_volumes,
    without_fins,
)

R, R_CAP, CAP_BASE = 0.5, 0.58, 0.1
T = 0.02
"""min_thickness in the tests."""
RESOLUTION = 64
BOX = 0.75
Field = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def ball(radius: float, centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Field:
    return lambda x, y, z: np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) - radius


def cap(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The ball of radius R_CAP above y = CAP_BASE."""
    return np.maximum(ball(R_CAP)(x, y, z), CAP_BASE - y)


def union(*fields: Field) -> Field:
    return lambda x, y, z: np.minimum.reduce([f(x, y, z) for f in fields])


def surface_of(field: Field, n: int = 96) -> Mesh:
    """Marching cubes of ``field``'s zero level on an n³ grid over [−BOX, BOX]³, faces outwards."""
    axis = np.linspace(-BOX, BOX, n)
    values = field(*np.meshgrid(axis, axis, axis, indexing="ij"))
    verts, faces, _, _ = marching_cubes(values, 0.0, spacing=(axis[1] - axis[0],) * 3)
    mesh = Mesh(torch.tensor(verts - BOX, dtype=torch.float32), torch.tensor(faces.astype(np.int64)))
    if mesh_to_trimesh(mesh).volume < 0:
        mesh = mesh.replace(faces=mesh.faces.flip(1))
    return mesh


def cap_volume(radius: float, base: float) -> float:
    """Volume of the ball of ``radius`` above the plane y = ``base``."""
    return float(np.pi * (radius - base) ** 2 * (2 * radius + base) / 3)


def spacing(sculpt: Mesh, resolution: int) -> float:
    return float((sculpt.verts.amax(0) - sculpt.verts.amin(0)).max()) / resolution


def assert_closed_outward(mesh: Mesh) -> None:
    tm = mesh_to_trimesh(mesh)
    assert tm.is_watertight and tm.is_winding_consistent
    assert closure_problem(mesh) == ""
    assert tm.volume > 0


def pieces(mesh: Mesh) -> int:
    return int(face_components(mesh.faces.numpy(), mesh.num_verts).max()) + 1


@pytest.fixture(scope="module")
def skin() -> Mesh:
    return icosphere(4, radius=R)


@pytest.fixture(scope="module")
def sculpt() -> Mesh:
    return surface_of(union(ball(R), cap))


@pytest.fixture(scope="module")
def shell(sculpt: Mesh, skin: Mesh) -> Mesh:
    result = outer_shell(sculpt, skin, ShellSettings(min_thickness=T, resolution=RESOLUTION))
    assert result is not None
    return result


def test_shell_is_closed_and_faces_outwards(shell: Mesh):
    assert_closed_outward(shell)
    assert pieces(shell) == 1
    assert shell.verts.dtype == torch.float32 and shell.faces.dtype == torch.long


def test_shell_lies_inside_the_sculpt_and_follows_it(sculpt: Mesh, shell: Mesh):
    h = spacing(sculpt, RESOLUTION)
    distance = mesh_signed_distance(mesh_to_trimesh(sculpt), shell.verts.double().numpy())
    assert distance.max() <= h
    verts = shell.verts.numpy()
    outer = (np.linalg.norm(verts, axis=1) > (R + R_CAP) / 2) & (verts[:, 1] > CAP_BASE + 2 * h)
    assert outer.sum() > 1000 and np.abs(distance[outer]).max() < 0.05 * h  # the sculpt's own surface


def test_shell_covers_the_cap_and_sinks_into_the_skin(sculpt: Mesh, shell: Mesh):
    h = spacing(sculpt, RESOLUTION)
    sink = SINK_CELLS * h
    hair = cap_volume(R_CAP, CAP_BASE) - cap_volume(R, CAP_BASE)
    sunk = 2 * np.pi * R * (R - CAP_BASE) * sink  # the skin's area under the cap, times the depth
    volume = mesh_to_trimesh(shell).volume
    assert volume == pytest.approx(hair + sunk, rel=0.05)
    radius = np.linalg.norm(shell.verts.numpy(), axis=1)
    assert radius.min() == pytest.approx(R - sink, abs=0.5 * h)  # the inner surface: the skin sunk by `sink`


def test_no_shell_where_the_sculpt_is_skin(sculpt: Mesh, shell: Mesh):
    h = spacing(sculpt, RESOLUTION)
    reach = T + SINK_CELLS * h + h
    y = shell.verts[:, 1].numpy()
    assert y.min() > CAP_BASE - reach
    assert y.min() > CAP_BASE - 2 * h  # the edge term ends it where the cap leaves the skin


def test_no_hair_gives_none(skin: Mesh):
    assert outer_shell(skin, skin, ShellSettings(min_thickness=T, resolution=32)) is None
    grown = surface_of(ball(R + 0.5 * T), n=80)  # everywhere less than min_thickness off the skin
    assert outer_shell(grown, skin, ShellSettings(min_thickness=T, resolution=48)) is None
    around = icosphere(3, radius=4 * R)  # a skin whose surface misses the sculpt's grid: all of it is inside
    assert outer_shell(grown, around, ShellSettings(min_thickness=T, resolution=32)) is None


def test_thin_sheet_stays_skin_and_only_the_cap_comes_back(skin: Mesh):
    sculpt = surface_of(union(ball(R + 0.5 * T), cap))
    shell = outer_shell(sculpt, skin, ShellSettings(min_thickness=T, resolution=RESOLUTION))
    assert shell is not None
    assert_closed_outward(shell)
    assert pieces(shell) == 1
    h = spacing(sculpt, RESOLUTION)
    assert shell.verts[:, 1].min() > CAP_BASE - (T + SINK_CELLS * h + 2 * h)
    hair = cap_volume(R_CAP, CAP_BASE) - cap_volume(R, CAP_BASE)
    sunk = 2 * np.pi * R * (R - CAP_BASE) * SINK_CELLS * h
    assert mesh_to_trimesh(shell).volume == pytest.approx(hair + sunk, rel=0.05)


def test_small_pieces_are_dropped(skin: Mesh):
    bump = ball(0.06, (0.0, -0.1, R + 0.02))  # a lump on the face, ~1 % of the cap's volume
    sculpt = surface_of(union(ball(R), cap, bump))
    kept = outer_shell(sculpt, skin, ShellSettings(min_thickness=T, resolution=48))
    both = outer_shell(sculpt, skin, ShellSettings(min_thickness=T, resolution=48, min_volume_fraction=0.0))
    assert kept is not None and both is not None
    assert pieces(kept) == 1 and pieces(both) == 2
    assert kept.verts[:, 1].min() > 0
    labels = face_components(both.faces.numpy(), both.num_verts)
    volumes = np.sort(signed_volumes(both.verts.double().numpy(), both.faces.numpy().astype(np.int64), labels))
    assert 0 < volumes[0] < 0.02 * volumes[1]


def test_floor_and_cavities(skin: Mesh, shell: Mesh):
    sculpt = surface_of(union(ball(R), cap))
    assert outer_shell(sculpt, skin, ShellSettings(min_thickness=T, resolution=32, floor=R_CAP)) is None
    hollow = surface_of(lambda x, y, z: np.maximum(union(ball(R), cap)(x, y, z), -ball(0.2)(x, y, z)))
    assert len(trimesh.Trimesh(hollow.verts.numpy(), hollow.faces.numpy()).split(only_watertight=False)) == 2
    carved = outer_shell(hollow, skin, ShellSettings(min_thickness=T, resolution=RESOLUTION))
    assert carved is not None  # a cavity (an inward-facing part) inside the skin leaves the hair alone
    assert mesh_to_trimesh(carved).volume == pytest.approx(mesh_to_trimesh(shell).volume, rel=0.01)


def test_decimated_shell_stays_closed(sculpt: Mesh, skin: Mesh):
    shell = outer_shell(sculpt, skin, ShellSettings(min_thickness=T, resolution=RESOLUTION, max_faces=4000))
    assert shell is not None and shell.num_faces <= 4000
    assert_closed_outward(shell)


def test_fins_left_by_decimation_are_removed():
    sphere = icosphere(2)
    fin_verts = torch.tensor([[2.0, 0.0, 0.0], [2.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    n = sphere.num_verts
    fin = torch.tensor([[n, n + 1, n + 2], [n, n + 2, n + 1]])
    with_fin = Mesh(torch.cat([sphere.verts, fin_verts]), torch.cat([sphere.faces, fin]))
    cleaned = without_fins(with_fin)
    assert cleaned.num_faces == sphere.num_faces and cleaned.num_verts == n
    assert without_fins(sphere) is sphere


def test_invalid_inputs_raise(sculpt: Mesh, skin: Mesh):
    settings = ShellSettings(min_thickness=T, resolution=32)
    open_skin = skin.replace(faces=skin.faces[10:])
    with pytest.raises(ValueError, match=r"skin is not a closed surface: \d+ edges without an opposite"):
        outer_shell(sculpt, open_skin, settings)
    empty = Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="sculpt has 0 triangles"):
        outer_shell(empty, skin, settings)
    with pytest.raises(ValueError, match="skin's faces face inwards"):
        outer_shell(sculpt, skin.replace(faces=skin.faces.flip(1)), settings)
    with pytest.raises(ValueError, match="min_thickness must be positive"):
        ShellSettings(min_thickness=0.0)


def test_shell_uv_gives_its_own_layout(sculpt: Mesh, skin: Mesh):
    shell = outer_shell(sculpt, skin, ShellSettings(min_thickness=T, resolution=32, max_faces=2000))
    assert shell is not None
    textured = shell_uv(shell, resolution=256)
    assert textured.has_uv and textured.uv is not None and textured.uv_faces is not None
    assert torch.equal(textured.verts, shell.verts) and textured.num_faces == shell.num_faces
    assert 0.0 <= float(textured.uv.min()) and float(textured.uv.max()) <= 1.0
