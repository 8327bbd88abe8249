"""The anny head as the prior fit sees it: its parameters, the anny -> world similarity and a fast pose.

Parameters (`HeadParams`, plain tensors; `FitHead.pack` lays them out as one vector with `bounds`):

* similarity anny -> world: ``world = scale · R · A · x_anny + t`` with ``A (x, y, z) = (x, z, -y)`` (anny: z up,
  face towards -y; world: y up, face towards +z, x the subject's left in both), ``R = exp(rotation) · R0``,
  ``scale = exp(log_scale) · s0``; R0, s0, t0 come from the closed-form start (`umeyama`);
* neck and head bone rotations (axis-angle in anny's axes, anny's "local-ref" pose deltas: the neck's is split
  evenly over neck01..neck03);
* phenotype (6, each in its anny range), the local changes that shape the head (signed, in [-1, 1]; a left/right
  pair is one value when tied), the 52 ARKit facial actions (in [0, 1]).

`PoseChain` poses only root..head; every other bone keeps its rest delta and therefore moves exactly with its
nearest posed ancestor, so five transforms and the skin weights summed per ancestor give what
`HeadModel.forward` gives for that pose (a test holds them equal) at a fraction of its cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from representations.parametric import HeadModel

ANNY_TO_WORLD_AXES = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""A: anny's axes (x left, y back, z up) to the world's (x left, y up, z front)."""
PHENOTYPE_RANGES = {"age": (-1 / 3, 1.0)}
"""Valid range of each phenotype (the others: [0, 1])."""
PHENOTYPE_CENTRE = {"age": 2 / 3}
"""Where the shape prior pulls each phenotype: anny's average (0.5), except age: 2/3 is a young adult
(0.5 is halfway between a child and a young adult)."""
HEAD_REGIONS = ("head", "forehead", "eyebrows", "eye", "ear", "nose", "mouth", "cheek", "chin", "neck",
                "measure-neck")
"""Local changes whose name (without `l-`/`r-`) starts with one of these shape the head; the rest (arms, legs,
torso...) barely touch its vertices and are left at 0."""
POSED_BONES = ("root", "neck01", "neck02", "neck03", "head")
NECK_BONES = ("neck01", "neck02", "neck03")


def axis_angle_matrix(v: Tensor) -> Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation (Rodrigues; its series near 0)."""
    theta2 = (v * v).sum(-1)[..., None, None]
    theta = torch.sqrt(theta2 + 1e-30)
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta2 + 1e-30))
    return torch.eye(3, dtype=v.dtype, device=v.device) + a * k + b * (k @ k)


def base_name(name: str) -> str:
    """A local change's name without its side: `l-ear-lobe-incr` -> `ear-lobe-incr`."""
    return name[2:] if name[:2] in ("l-", "r-") else name


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares similarity (R, s, t) with dst ≈ s·R·src + t (Umeyama 1991); (N, 3) each."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / (a * a).sum(1).mean())
    return rotation, scale, mu_d - scale * rotation @ mu_s


PARAMETERS = ("rotation", "translation", "log_scale", "neck", "head", "phenotype", "local", "facial")
"""`HeadParams` fields in the order `FitHead.pack` lays them out."""
GROUPS = {"pose": ("rotation", "translation", "log_scale", "neck", "head"), "shape": ("phenotype", "local"),
          "expression": ("facial",)}
"""`HeadParams` fields by the fit's phase that frees them."""


@dataclass
class HeadParams:
    """A batch of B parameter sets: each field (B, n)."""

    rotation: Tensor
    translation: Tensor
    log_scale: Tensor
    neck: Tensor
    head: Tensor
    phenotype: Tensor
    local: Tensor
    facial: Tensor


@dataclass
class Rows:
    """Some of the head's vertices: template (N, 3), blend basis (3N, K), pose-chain weights (N, 5)."""

    template: Tensor
    basis: Tensor
    weights: Tensor


class FitHead:
    """`HeadModel` + the fit's parametrisation (module docstring)."""

    def __init__(self, model: HeadModel, tie_symmetric: bool = True):
        self.model = model
        names = model.local_change_names
        kept = [i for i, n in enumerate(names) if base_name(n).startswith(HEAD_REGIONS)]
        keys = [base_name(names[i]) if tie_symmetric else names[i] for i in kept]
        self.free_names = list(dict.fromkeys(keys))
        expand = torch.zeros(len(self.free_names), len(names))
        for i, key in zip(kept, keys):
            expand[self.free_names.index(key), i] = 1.0
        self.expand = expand
        """(free, 256): free local values -> anny's 256 local changes."""
        lo = [PHENOTYPE_RANGES.get(n, (0.0, 1.0))[0] for n in model.phenotype_names]
        hi = [PHENOTYPE_RANGES.get(n, (0.0, 1.0))[1] for n in model.phenotype_names]
        self.phenotype_lo, self.phenotype_hi = torch.tensor(lo), torch.tensor(hi)
        self.phenotype_centre = torch.tensor([PHENOTYPE_CENTRE.get(n, 0.5) for n in model.phenotype_names])
        self.chain = PoseChain(model)
        self.basis_rows = model.vertex_basis.T.contiguous()
        """(3V, K): `HeadModel.vertex_basis` by vertex coordinate, so that a few vertices' rows are cheap to take."""
        self.axes = ANNY_TO_WORLD_AXES
        self.r0, self.s0, self.t0 = torch.eye(3), 1.0, torch.zeros(3)
        self._start = self.initial_params()

    def initial_params(self) -> HeadParams:
        """The start (B = 1): no turn from the similarity's start, no bend, the phenotype at its centre, no local
        change, no facial action."""
        z = torch.zeros
        return HeadParams(z(1, 3), z(1, 3), z(1, 1), z(1, 3), z(1, 3), self.phenotype_centre.clone()[None],
                          z(1, len(self.free_names)), z(1, len(self.model.facial_action_names)))

    def set_start(self, rotation: np.ndarray, scale: float, translation: np.ndarray) -> None:
        self.r0 = torch.as_tensor(rotation, dtype=torch.float32)
        self.s0 = float(scale)
        self.t0 = torch.as_tensor(translation, dtype=torch.float32)

    def sizes(self) -> dict[str, int]:
        return {name: int(getattr(self._start, name).shape[1]) for name in PARAMETERS}

    def offsets(self) -> dict[str, tuple[int, int]]:
        """(start, end) of each parameter in `pack`'s vectors."""
        out, at = {}, 0
        for name, n in self.sizes().items():
            out[name], at = (at, at + n), at + n
        return out

    def pack(self, p: HeadParams) -> Tensor:
        """(B, n) the parameters as vectors, in `PARAMETERS` order."""
        return torch.cat([getattr(p, name) for name in PARAMETERS], dim=1)

    def unpack(self, theta: Tensor) -> HeadParams:
        """`pack`'s inverse for (B, n) (a (n,) vector is a batch of one)."""
        return HeadParams(*theta.reshape(-1, theta.shape[-1]).split(list(self.sizes().values()), dim=1))

    def bounds(self) -> tuple[Tensor, Tensor]:
        """(n,) lower and upper bound of each entry of `pack`'s vectors (±inf: unbounded)."""
        n = sum(self.sizes().values())
        lo, hi = self.unpack(torch.full((1, n), -float("inf"))), self.unpack(torch.full((1, n), float("inf")))
        lo.phenotype[:], hi.phenotype[:] = self.phenotype_lo, self.phenotype_hi
        lo.local[:], hi.local[:] = -1.0, 1.0
        lo.facial[:], hi.facial[:] = 0.0, 1.0
        return self.pack(lo)[0], self.pack(hi)[0]

    def local_changes(self, p: HeadParams) -> Tensor:
        """(B, 256) anny's local changes."""
        return p.local @ self.expand

    def similarity(self, p: HeadParams) -> tuple[Tensor, Tensor, Tensor]:
        """R (B, 3, 3), scale (B,), t (B, 3): world = scale · R · A · x + t."""
        return axis_angle_matrix(p.rotation) @ self.r0, self.s0 * torch.exp(p.log_scale[:, 0]), self.t0 + p.translation

    def to_world(self, p: HeadParams, anny_points: Tensor) -> Tensor:
        """(B, N, 3) anny-frame points -> world."""
        rotation, scale, t = self.similarity(p)
        return scale[:, None, None] * anny_points @ (rotation @ self.axes).transpose(1, 2) + t[:, None]

    def bone_rotations(self, p: HeadParams) -> dict[str, Tensor]:
        """The posed bones' (B, 3, 3) deltas, by name (root: identity)."""
        neck = axis_angle_matrix(p.neck / len(NECK_BONES))
        return {"root": torch.eye(3).expand_as(neck), **{n: neck for n in NECK_BONES}, "head": axis_angle_matrix(p.head)}

    def rows(self, ids: Optional[Tensor] = None) -> Rows:
        """What `anny_vertices` needs to compute only the vertices ``ids`` (N,) (None: all)."""
        model = self.model
        if ids is None:
            return Rows(model.template_vertices, self.basis_rows, self.chain.weights)
        columns = (ids[:, None] * 3 + torch.arange(3)).reshape(-1)
        return Rows(model.template_vertices[ids], self.basis_rows[columns], self.chain.weights[ids])

    def anny_vertices(self, p: HeadParams, facial: bool = True, rows: Optional[Rows] = None) -> Tensor:
        """(B, V, 3) posed vertices in anny's frame, or only those of ``rows`` (facial actions at 0 with
        ``facial=False``): `HeadModel.rest` and `HeadModel.forward` computing only the rows asked for."""
        model = self.model
        rows = self.rows() if rows is None else rows
        fa = p.facial if facial else torch.zeros_like(p.facial)
        c = model.coefficients(p.phenotype, self.local_changes(p), fa)
        vertices = rows.template + (c @ rows.basis.T).reshape(len(c), -1, 3)
        bones = model.template_bones + (c @ model.bone_basis).reshape(len(c), -1, 3)
        heads, tails = bones.chunk(2, dim=1)
        rots = self.bone_rotations(p)
        return self.chain(vertices, heads, tails, [rots[n] for n in POSED_BONES], rows.weights)

    def world_vertices(self, p: HeadParams, facial: bool = True, rows: Optional[Rows] = None) -> Tensor:
        return self.to_world(p, self.anny_vertices(p, facial, rows))

    def full_pose(self, p: HeadParams) -> Tensor:
        """(B, J, 4, 4) pose deltas for `HeadModel.forward` (identity but for the posed bones)."""
        pose = torch.eye(4).repeat(len(p.neck), len(self.model.bone_names), 1, 1)
        for name, rot in self.bone_rotations(p).items():
            pose[:, self.model.bone_names.index(name), :3, :3] = rot
        return pose


class PoseChain:
    """Linear blend skinning with only `POSED_BONES` posed (module docstring)."""

    def __init__(self, model: HeadModel):
        self.model = model
        self.ids = [model.bone_names.index(n) for n in POSED_BONES]
        assert self.ids == list(range(len(POSED_BONES))), "expected the chain root..head as bones 0..4"
        group = torch.zeros(len(model.bone_names), len(self.ids))
        for j in range(len(model.bone_names)):
            k = j
            while k not in self.ids:
                k = model.bone_parents[k]
            group[j, self.ids.index(k)] = 1.0
        self.weights = model.skin_weights @ group  # (V, 5)

    def __call__(self, vertices: Tensor, heads: Tensor, tails: Tensor, deltas: list[Tensor], weights: Tensor) -> Tensor:
        """Posed ``vertices`` (B, N, 3) with their chain ``weights`` (N, 5) (rows of `self.weights`), rest bone
        ``heads``, ``tails`` (B, J, 3) and the chain's ``deltas`` (five (B, 3, 3))."""
        n = len(self.ids)
        R = self.model.bone_orientations(heads, tails)[:, :n]  # (B, 5, 3, 3)
        Rt = R.transpose(-1, -2)
        h = heads[:, :n]
        world_rot = [Rt[:, 0] @ deltas[0] @ R[:, 0]]
        world_t = [torch.zeros_like(h[:, 0])]
        for child in range(1, n):
            parent = self.model.bone_parents[child]
            local_rot = Rt[:, parent] @ deltas[child] @ R[:, child]
            local_t = (Rt[:, parent] @ (h[:, child] - h[:, parent])[..., None])[..., 0]
            world_rot.append(world_rot[parent] @ local_rot)
            world_t.append(world_t[parent] + (world_rot[parent] @ local_t[..., None])[..., 0])
        t_rot = torch.stack(world_rot, dim=1) @ Rt  # (B, 5, 3, 3)
        t_t = torch.stack(world_t, dim=1) - (t_rot @ h[..., None])[..., 0]
        blended = torch.einsum("vk,bkij->bvij", weights, t_rot)
        return (blended @ vertices[..., None])[..., 0] + torch.einsum("vk,bki->bvi", weights, t_t)
