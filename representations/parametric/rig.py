"""The anny head's rig at one fitted shape and pose: skeleton, skin weights and the 52 facial actions as
per-vertex offsets, everything in `HeadModel.forward`'s output frame (anny's axes, metres).

The facial actions blend the rest shape before skinning, and skinning is linear in the rest vertices, so an
action's offset at a pose is exactly forward(action = 1) − forward(all actions = 0) at that pose: these are
the morph targets of a mesh bound in that pose (glTF applies morph targets before skinning, in bind space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from representations.parametric.model import HeadModel


@dataclass
class HeadRig:
    bone_names: list[str]
    bone_parents: list[int]
    """Parent index per bone, −1 for the root; a parent comes before its children."""
    frames: np.ndarray
    """(J, 4, 4) each bone's frame at the bind pose (rotation: its axes; translation: its head)."""
    skin_weights: np.ndarray
    """(V, J) linear-blend skinning weights, rows summing to 1."""
    neutral: np.ndarray
    """(V, 3) the bound head with every facial action at 0."""
    action_names: list[str]
    action_offsets: np.ndarray
    """(K, V, 3) each facial action's offset at weight 1."""

    def expression_offset(self, weights: Mapping[str, float]) -> np.ndarray:
        """(V, 3) the offset of the facial actions at `weights` (names not given are 0)."""
        w = np.array([float(weights.get(name, 0.0)) for name in self.action_names])
        return np.tensordot(w, self.action_offsets, axes=1)


def pose_deltas(model: HeadModel, rotations: Mapping[str, np.ndarray]) -> torch.Tensor:
    """(1, J, 4, 4) anny "local-ref" pose deltas: the given bones' (3, 3) rotations, identity elsewhere."""
    pose = torch.eye(4, dtype=model.template_vertices.dtype).repeat(1, len(model.bone_names), 1, 1)
    for name, rotation in rotations.items():
        if name not in model.bone_names:
            raise ValueError(f"unknown bone {name!r}")
        pose[0, model.bone_names.index(name), :3, :3] = torch.as_tensor(np.asarray(rotation), dtype=pose.dtype)
    return pose


@torch.no_grad()
def head_rig(model: HeadModel, phenotype: Mapping[str, float], local_changes: Mapping[str, float],
             pose: torch.Tensor) -> HeadRig:
    """The rig of the head with this shape, bound in `pose` ((1, J, 4, 4), see `pose_deltas`)."""
    k = len(model.facial_action_names)
    actions = torch.cat([torch.zeros(1, k), torch.eye(k)]).to(model.template_vertices.dtype)
    vertices = model(dict(phenotype), dict(local_changes), actions, pose)
    frames = model.bone_frames(dict(phenotype), dict(local_changes), None, pose)[0]
    neutral = vertices[0]
    return HeadRig(
        bone_names=list(model.bone_names), bone_parents=list(model.bone_parents), frames=frames.double().numpy(),
        skin_weights=model.skin_weights.double().numpy(), neutral=neutral.double().numpy(),
        action_names=list(model.facial_action_names), action_offsets=(vertices[1:] - neutral).double().numpy(),
    )


def local_transforms(frames: np.ndarray, parents: list[int]) -> np.ndarray:
    """(J, 4, 4) each bone's frame relative to its parent's (a root's: the frames' own frame)."""
    local = frames.copy()
    for j, parent in enumerate(parents):
        if parent >= 0:
            local[j] = np.linalg.inv(frames[parent]) @ frames[j]
    return local
