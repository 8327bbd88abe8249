"""The `Mesh` container: geometry, optional UV layout and texture, all torch tensors.

Conventions (shared with `representations/cameras.py`: world +y up, the head faces +z):

verts       (V, 3) float, world coordinates.
faces       (F, 3) long, counter-clockwise seen from outside (normals point out by the right-hand rule).
uv          (T, 2) float in [0, 1]. UV seams are expressed by separate indices: corner k of face f
            has position ``verts[faces[f, k]]`` and texture coordinate ``uv[uv_faces[f, k]]``.
uv_faces    (F, 3) long, required whenever ``uv`` is set.
texture     (H, W, 3) float in [0, 1]; row 0 is the top of the image.
vertex_colors (V, 3) float in [0, 1], optional (PLY colour).

UV to texture: u grows to the right, v grows upwards, v = 0 is the bottom row of the image (the
OBJ convention, and what trimesh presents for glTF; glTF files store 1 - v and trimesh flips it on
read and write). So (u, v) lies at pixel coordinates x = u·W, y = (1 - v)·H, pixel (i, j) covering
[j, j+1) × [i, i+1). See `representations/mesh/texture.py` for the helpers that apply it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Mesh:
    verts: torch.Tensor
    faces: torch.Tensor
    uv: torch.Tensor | None = None
    uv_faces: torch.Tensor | None = None
    texture: torch.Tensor | None = None
    vertex_colors: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_shape("verts", self.verts, (None, 3))
        _check_shape("faces", self.faces, (None, 3))
        if (self.uv is None) != (self.uv_faces is None):
            raise ValueError("uv and uv_faces must be given together")
        if self.uv is not None:
            _check_shape("uv", self.uv, (None, 2))
            _check_shape("uv_faces", self.uv_faces, (self.faces.shape[0], 3))
        if self.texture is not None:
            _check_shape("texture", self.texture, (None, None, 3))
        if self.vertex_colors is not None:
            _check_shape("vertex_colors", self.vertex_colors, (self.verts.shape[0], 3))

    @property
    def num_verts(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def has_uv(self) -> bool:
        return self.uv is not None

    @property
    def device(self) -> torch.device:
        return self.verts.device

    def to(self, device: torch.device | str) -> "Mesh":
        return self._map(lambda t: t.to(device))

    def detach(self) -> "Mesh":
        return self._map(lambda t: t.detach())

    def clone(self) -> "Mesh":
        return self._map(lambda t: t.clone())

    def replace(self, **fields: Any) -> "Mesh":
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **fields)

    def without_uv(self) -> "Mesh":
        return self.replace(uv=None, uv_faces=None, texture=None)

    def _map(self, fn) -> "Mesh":
        fields: dict[str, Any] = {f.name: (None if (v := getattr(self, f.name)) is None else fn(v)) for f in dataclasses.fields(self)}
        return Mesh(**fields)


def _check_shape(name: str, tensor: object, shape: tuple[int | None, ...]) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"Mesh.{name} must be a torch.Tensor, got {type(tensor).__name__}")
    ok = tensor.ndim == len(shape) and all(want is None or got == want for got, want in zip(tensor.shape, shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"Mesh.{name} has shape {tuple(tensor.shape)}, expected {want}")
