"""Re-orienting meshes authored with other axis conventions into ours (+y up, the head faces +z)."""

from __future__ import annotations

import numpy as np
import torch

from .core import Mesh

_AXES = {"x": 0, "y": 1, "z": 2}


def axis_vector(axis: str) -> np.ndarray:
    """'+x', '-y', 'z' ... -> (3,) unit vector; ValueError for anything else."""
    text = axis.strip().lower() if isinstance(axis, str) else ""
    sign, letter = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.lstrip("+"))
    if letter not in _AXES:
        raise ValueError(f"axis {axis!r} is not one of +x, -x, +y, -y, +z, -z")
    vector = np.zeros(3)
    vector[_AXES[letter]] = sign
    return vector


def rotation_to_canonical(up_axis: str, front_axis: str) -> np.ndarray:
    """(3, 3) rotation R with R·up = +y and R·front = +z (a proper rotation: det +1).

    ``front_axis`` is the direction the face looks towards. ValueError if the two are parallel.
    """
    up, front = axis_vector(up_axis), axis_vector(front_axis)
    if abs(np.dot(up, front)) > 0.5:
        raise ValueError(f"up axis {up_axis!r} and front axis {front_axis!r} must be perpendicular")
    return np.stack([np.cross(up, front), up, front])


def reorient(mesh: Mesh, up_axis: str = "+y", front_axis: str = "+z") -> Mesh:
    """The mesh rotated from the given up/front convention into ours; winding is unchanged."""
    rotation = rotation_to_canonical(up_axis, front_axis)
    if np.array_equal(rotation, np.eye(3)):
        return mesh
    r = torch.as_tensor(rotation, dtype=mesh.verts.dtype, device=mesh.verts.device)
    return mesh.replace(verts=mesh.verts @ r.T)
