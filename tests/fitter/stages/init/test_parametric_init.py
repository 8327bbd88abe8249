"""init.kind=parametric (fitter/stages/init/parametric.py, hair.py) on a stand-in for the prior stage's head
(anny's default head in the world frame, tests/fitter/stages/init/fake_prior.py) and a synthetic photo mask:
the init is closed, inside is negative, the cranium has human proportions, the hair layer sits on the skull
above and behind and not on the face or below the ears, and the prior-surface points cover the skin the
photo sees least."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from common.errors import ConfigError, UserError
from fitter.config import Config, InitConfig, load_config
from fitter.context import RunContext
from fitter.stages.init.hair import SILHOUETTE_SIZE
from fitter.stages.init.parametric import (
    boundary_loops,
    check_closed,
    closed_parts,
    fill_cavities,
    parametric_head,
    prior_head_file,
    read_prior_surface,
)
from fitter.stages.init.sdf_grid import GridSDF
from fitter.stages.init.stage import grid_to_mesh, run
from representations.cameras import Camera, look_at
from representations.mesh import Mesh, mesh_to_trimesh, read_mesh
from representations.render import default_rasterizer
from tests.fitter.stages.init.fake_prior import anny_world_head, write_fake_prior
from tests.helpers import PREVIEW

pytestmark = pytest.mark.usefixtures("one_thread")
HERO = PREVIEW.replace("preview.yaml", "portrait3d.yaml")

RESOLUTION = 80
HAIR_PX = 12
"""The synthetic photo's hair: the head's silhouette grown by this many pixels (~0.1 units) above the ears' middle."""


@pytest.fixture(scope="module")
def head() -> Mesh:
    return anny_world_head()


@pytest.fixture(scope="module")
def camera() -> Camera:
    """A reference camera like the intake's (PanoHead focal, 9.2 units away, slightly above the eyes)."""
    return Camera.from_normalized_focal(np.linalg.inv(look_at((0.0, 1.2, 9.1))), SILHOUETTE_SIZE)


@pytest.fixture(scope="module")
def mask(head: Mesh, camera: Camera) -> np.ndarray:
    """The head's own silhouette plus hair: grown by HAIR_PX above the ears' middle."""
    with torch.no_grad():
        silhouette = default_rasterizer("torch").render(head.verts, head.faces, camera, ["mask"])["mask"][..., 0].numpy() > 0.5
    ear_row = int(camera.project(np.array([[0.0, -0.25, -0.2]]))[0][0, 1])
    hair = ndimage.binary_dilation(silhouette, iterations=HAIR_PX)
    hair[ear_row:] = False
    return (silhouette | hair).astype(np.float32)


@pytest.fixture(scope="module")
def built(head, mask, camera):
    return parametric_head(head, mask, camera, RESOLUTION, 1.3)


def crown_and_back(head: Mesh) -> tuple[np.ndarray, np.ndarray]:
    v = head.verts.numpy()
    return v[v[:, 1].argmax()], v[v[:, 2].argmin()]


def test_anny_head_is_closed_part_by_part(head):
    loops = boundary_loops(head.faces.numpy(), head.num_verts)
    assert sorted(len(loop) for loop in loops) == [8, 42]  # an eyeball's hole, the neck
    parts, ids = closed_parts(head)
    assert len(parts) == 4 and parts[0].num_verts > 4000  # skin, teeth, two eyeballs
    for part, index in zip(parts, ids):
        check_closed(part)
        assert mesh_to_trimesh(part).is_watertight and len(index) == part.num_verts
    assert sum(int((index >= 0).sum()) for index in ids) == head.num_verts


def test_an_open_or_inside_out_part_is_refused(head):
    skin = closed_parts(head)[0][0]
    with pytest.raises(UserError, match="not closed"):
        check_closed(Mesh(skin.verts, skin.faces[:-1]))
    with pytest.raises(UserError, match="outwards"):
        check_closed(Mesh(skin.verts, skin.faces.flip(1)))


def test_a_head_of_another_topology_is_refused(mask, camera):
    sphere = trimesh.creation.icosphere(subdivisions=3)
    with pytest.raises(UserError, match="anny's"):
        parametric_head(Mesh(torch.as_tensor(sphere.vertices, dtype=torch.float32), torch.as_tensor(sphere.faces)), mask, camera, 32, 1.3)


def test_init_is_closed_and_negative_inside(built, head):
    surface = grid_to_mesh(built.sdf.closed())
    assert mesh_to_trimesh(surface).is_watertight
    crown, back = crown_and_back(head)
    inside = torch.tensor(np.array([built.hair.centre, [0.0, -0.4, 0.3], crown - [0, 0.1, 0], back + [0, 0, 0.1]]), dtype=torch.float32)
    outside = torch.tensor([[0.0, 0.0, 1.25], [1.2, 0.0, 0.0], [0.0, 1.25, 0.0], [0.0, -0.3, 1.05]], dtype=torch.float32)
    assert (built.sdf(inside) < 0).all() and (built.head_sdf(inside) < 0).all()
    assert (built.sdf(outside) > 0).all() and (built.head_sdf(outside) > 0).all()
    below_the_cut = torch.tensor([[0.0, -1.25, -0.2]])
    assert built.sdf(below_the_cut) > 0  # the neck ends inside the box


def cranium_ratio(mesh: Mesh, above: float = 0.2) -> float:
    """Breadth over length (x over z extent) of the surface above height ``above`` (the eyes are near −0.05)."""
    v = mesh.verts.numpy()
    top = v[v[:, 1] > above]
    return float(np.ptp(top[:, 0]) / np.ptp(top[:, 2]))


def test_cranium_has_human_proportions(built):
    assert 0.7 <= cranium_ratio(grid_to_mesh(built.head_sdf)) <= 0.85
    assert 0.7 <= cranium_ratio(grid_to_mesh(built.sdf)) <= 0.9


def test_hair_rests_on_the_skull_above_and_behind_not_on_the_face(built, head):
    crown, back = crown_and_back(head)
    v = head.verts.numpy()
    nose_tip = v[v[:, 2].argmax()]
    chin = v[(v[:, 2] > 0.3)][:, 1].argmin()
    on_hair = torch.tensor(np.array([crown + [0, 0.05, 0], back + [0, 0, -0.05]]), dtype=torch.float32)
    assert (built.head_sdf(on_hair) > 0).all() and (built.sdf(on_hair) < 0).all()
    front = torch.tensor(np.array([nose_tip + [0, 0, 0.04], v[v[:, 2] > 0.3][chin] + [0, -0.04, 0.02],
                                   [0.0, 0.15, float(v[np.abs(v[:, 0]) < 0.05][:, 2].max()) - 0.05]]), dtype=torch.float32)
    np.testing.assert_allclose(built.sdf(front), built.head_sdf(front), atol=0.005)
    low = v[:, 1] < -0.75  # the neck and jaw, below the ear lobes
    neck = torch.as_tensor(v[low] + 0.04 * np.sign(v[low] * [1, 0, 1]), dtype=torch.float32)
    np.testing.assert_allclose(built.sdf(neck), built.head_sdf(neck), atol=0.005)
    thickness = built.hair.thickness_per_vertex
    assert 0.05 < built.hair.mean_margin < 0.15 and thickness.max() <= 0.6  # HAIR_PX ≈ 0.1 world units


def test_no_hair_without_hair_in_the_photo(head, camera):
    with torch.no_grad():
        silhouette = default_rasterizer("torch").render(head.verts, head.faces, camera, ["mask"])["mask"][..., 0].numpy()
    bald = parametric_head(head, silhouette, camera, 48, 1.3)
    assert bald.hair.thickness_per_vertex.max() < 0.02


def test_prior_surface_weights_low_on_the_face_high_on_the_sides_and_back(built, camera):
    s = built.surface
    points, normals, weights = s["points"], s["normals"], s["weights"]
    assert len(points) > 2000 and points.shape == normals.shape and weights.shape == (len(points),)
    facing = normals @ s["view_dir"]
    assert weights[facing > 0.9].max() < 0.2
    sides = np.abs(normals[:, 0]) > 0.8
    back = normals[:, 2] < -0.8
    assert weights[sides].mean() > 0.8 and weights[back].min() > 0.99
    assert (points[:, 1] < -0.5).any() and (np.abs(points[:, 0]) > 0.7).any()  # neck and ears
    assert (built.hair.thickness(torch.as_tensor(points)).numpy() < 0.01).all()  # none under hair
    crown_region = points[:, 1] > 0.7
    assert not crown_region.any()  # the scalp is under hair


def test_fill_cavities_closes_voids_only():
    axis = torch.linspace(-1, 1, 33)
    p = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
    shell = torch.maximum(p.norm(dim=-1) - 0.8, 0.4 - p.norm(dim=-1))  # a hollow ball: a void inside
    filled = fill_cavities(GridSDF(shell, 1.0))
    assert filled(torch.zeros(1, 3)) < 0 and filled(torch.tensor([[0.95, 0.95, 0.95]])) > 0
    cup = torch.maximum(shell, -p[..., 1])  # the same, cut open at the top: no void left
    assert fill_cavities(GridSDF(cup, 1.0))(torch.tensor([[0.0, 0.3, 0.0]])) > 0


def test_prior_head_file_follows_neutralize(tmp_path, head):
    prior = write_fake_prior(tmp_path, head, neutralize=True)
    assert prior_head_file(prior).name == "neutral.ply"
    write_fake_prior(tmp_path, head, neutralize=False)
    assert prior_head_file(prior).name == "posed.ply"
    (prior / "posed.ply").unlink()
    with pytest.raises(UserError, match="posed.ply"):
        prior_head_file(prior)
    with pytest.raises(UserError, match="fit.json"):
        prior_head_file(tmp_path / "nowhere")


def test_parametric_is_the_default_init_and_template_stays():
    assert InitConfig().kind == "parametric" and Config().init.kind == "parametric"
    assert load_config(PREVIEW).init.kind == "parametric" and load_config(HERO).init.kind == "parametric"
    assert load_config(PREVIEW, ["init.kind=template"]).init.kind == "template"
    assert InitConfig().sdf_resolution == 128 and load_config(PREVIEW, ["init.sdf_resolution=64"]).init.sdf_resolution == 64
    with pytest.raises(ConfigError, match="sdf_resolution"):
        load_config(PREVIEW, ["init.sdf_resolution=8"])


def test_a_posed_head_is_read_when_not_neutralized(tmp_path, head):
    moved = Mesh(head.verts + torch.tensor([0.0, 0.0, 0.1]), head.faces)
    prior = write_fake_prior(tmp_path, head, neutralize=False, posed=moved)
    info = json.loads((prior / "fit.json").read_text())
    assert info["neutralize"] is False
    read = trimesh.load(prior_head_file(prior), process=False)
    np.testing.assert_allclose(read.vertices, moved.verts.numpy(), atol=1e-6)


def test_the_stage_writes_a_parametric_init_from_the_prior_folder(run_dir):
    write_fake_prior(run_dir)
    ctx = RunContext(load_config(PREVIEW, ["models.preset=tiny-random", "init.sdf_resolution=48"]), run_dir, torch.device("cpu"))
    run(ctx)
    info = json.loads((run_dir / "init" / "init.json").read_text())
    assert info["kind"] == "parametric" and info["source"] == "prior/neutral.ply" and info["sdf_resolution"] == 48
    surface = read_prior_surface(run_dir / "init")
    assert surface is not None and len(surface["points"]) == info["prior_surface_points"] > 500
    assert mesh_to_trimesh(read_mesh(run_dir / "init" / "mesh.ply")).is_watertight
