"""The anny head's rig at a fitted shape and pose (representations/parametric/rig.py): bone frames that skin the
mesh exactly as `HeadModel.forward` does, and facial-action offsets that act where they should."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from representations.parametric import HeadModel, head_model
from representations.parametric.rig import HeadRig, head_rig, local_transforms, pose_deltas

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = {"gender": 0.8, "age": 0.6, "weight": 0.3}
LOCAL = {"nose-scale-horiz-incr": 0.5, "l-ear-scale-incr": 0.4}


def rotation_about(axis: list[float], angle: float) -> np.ndarray:
    return Rotation.from_rotvec(np.asarray(axis) * angle).as_matrix()


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return head_model()


@pytest.fixture(scope="module")
def posed(model: HeadModel) -> torch.Tensor:
    return pose_deltas(model, {"neck02": rotation_about([1.0, 0.0, 0.0], 0.2), "head": rotation_about([0.0, 0.0, 1.0], -0.3)})


@pytest.fixture(scope="module")
def rig(model: HeadModel, posed: torch.Tensor) -> HeadRig:
    return head_rig(model, SHAPE, LOCAL, posed)


def test_bone_frames_skin_the_rest_shape_into_the_posed_one(model: HeadModel, posed: torch.Tensor):
    """Linear blend skinning with the posed frames times the inverse rest frames gives forward's vertices."""
    with torch.no_grad():
        rest_frames = model.bone_frames(SHAPE, LOCAL)[0].double()
        posed_frames = model.bone_frames(SHAPE, LOCAL, None, posed)[0].double()
        rest = model(SHAPE, LOCAL)[0].double()
        expected = model(SHAPE, LOCAL, None, posed)[0].double()
    transforms = posed_frames @ torch.linalg.inv(rest_frames)  # (J, 4, 4)
    homogeneous = torch.cat([rest, torch.ones(len(rest), 1, dtype=rest.dtype)], 1)
    skinned = torch.einsum("vj,jab,vb->va", model.skin_weights.double(), transforms, homogeneous)[:, :3]
    assert (skinned - expected).abs().max() < 1e-5
    assert not torch.allclose(rest, expected, atol=1e-3)  # the pose did move the head


def test_rest_frames_are_orthonormal_bones_along_head_to_tail(model: HeadModel):
    frames = model.bone_frames()[0].double()
    rot = frames[:, :3, :3]
    assert torch.allclose(rot.transpose(-1, -2) @ rot, torch.eye(3, dtype=rot.dtype).expand_as(rot), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(len(rot), dtype=rot.dtype), atol=1e-5)
    assert frames[0, :3, 3].abs().max() < 1e-9  # the root's head at the origin, as forward puts it


def test_local_transforms_rebuild_the_frames(rig: HeadRig):
    local = local_transforms(rig.frames, rig.bone_parents)
    rebuilt = np.zeros_like(local)
    for j, parent in enumerate(rig.bone_parents):
        rebuilt[j] = local[j] if parent < 0 else rebuilt[parent] @ local[j]
    assert np.abs(rebuilt - rig.frames).max() < 1e-9


def test_action_offsets_equal_forward_differences(model: HeadModel, posed: torch.Tensor, rig: HeadRig):
    weights = {"jawOpen": 0.7, "mouthSmileLeft": 0.4, "eyeBlinkRight": 1.0}
    with torch.no_grad():
        expected = model(SHAPE, LOCAL, weights, posed)[0].double().numpy()
    assert np.abs(rig.neutral + rig.expression_offset(weights) - expected).max() < 1e-5
    assert np.isfinite(rig.action_offsets).all() and len(rig.action_names) == 52
    height = np.ptp(rig.neutral[:, 2])
    assert np.linalg.norm(rig.action_offsets, axis=-1).max() < 0.2 * height


def test_pose_deltas_refuse_unknown_bones(model: HeadModel):
    with pytest.raises(ValueError, match="unknown bone"):
        pose_deltas(model, {"tail": np.eye(3)})
