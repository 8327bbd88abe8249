"""Writing a rigged, morphable head as binary glTF 2.0 (GLB), by hand (numpy + json + struct).

What the file holds:

* one skinned, textured mesh at the scene root (no transform: the spec ignores a skinned mesh's own
  transform and the Khronos validator warns about one) with POSITION, NORMAL (area-weighted, of
  the unsplit mesh), TEXCOORD_0, JOINTS_0 and WEIGHTS_0 (the 4 largest influences, renormalised);
* its morph targets as POSITION deltas, their default weights in ``mesh.weights`` and their names
  in ``mesh.extras.targetNames``: glTF has no field for target names, and that extras key is the
  convention Blender's importer and three.js read shape-key / morph names from;
* a skeleton: an armature node (the joints' common parent, may carry a uniform scale) with the
  joints below it as TRS nodes, and a skin whose inverse bind matrices are computed from the node
  transforms themselves (so the bind pose is exactly the rest pose);
* one animation per `MorphClip` driving the mesh node's morph ``weights`` (LINEAR; Blender imports
  each as an action on the shape keys and, because the node is animated, leaves an empty object
  named after it, "head.001", next to the mesh object it moves under the armature);
* rigid attachments (eyes, teeth, ...), vertices given in the scene frame at bind pose, written one
  of two ways. ``attach="child"``: a mesh node under its joint node whose local transform undoes the
  joint's bind transform, so the vertices land where given. ``attach="skinned"``: a mesh node at the
  scene root skinned with weight 1 to its joint (same skin). Both follow the joint identically per
  the spec; "skinned" is for Blender: its importer (bpy 5.0, default bone heuristic "BLENDER")
  shortens bones by the armature object's scale but moves children of a bone back by the unshortened
  length, so with a scaled armature node a "child" attachment lands off by (1 - 1/scale) bone lengths
  (the other heuristics, TEMPERANCE and FORTUNE, import it in place).

Every mesh gets its own PBR metallic-roughness material (metallic 0, roughness 0.8, as `export.py`)
with its texture embedded as PNG in the binary chunk. glTF stores one uv per vertex, so vertices are
split at UV seams: vertex i stays at index i (with the uv of its first corner) and seam copies are
appended in order of first use; `split_vertex_ids` gives the original vertex of every written one.
Texture v is stored as 1 - v (glTF's origin is the image's top left; `Mesh` uses the bottom left).
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from common.atomic import write_with

from .convert import PBR_METALLIC, PBR_ROUGHNESS, split_at_seams
from .core import Mesh
from .geometry import vertex_normals
from .texture import texture_to_image
from .validate import check_face_indices

FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR, LINEAR_MIPMAP_LINEAR, REPEAT = 9729, 9987, 10497
MAX_INFLUENCES = 4
"""Joint influences per vertex in JOINTS_0 / WEIGHTS_0."""
DECOMPOSE_TOL = 1e-5
"""How far a transform's 3x3 part may be from rotation times per-axis scale and still count as TRS."""
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {FLOAT: np.float32, UNSIGNED_BYTE: np.uint8, UNSIGNED_SHORT: np.uint16, UNSIGNED_INT: np.uint32}


@dataclass
class Skeleton:
    """A joint hierarchy at bind pose.

    names     J joint names (unique).
    parents   J parent indices, -1 for a root; a parent comes before its children.
    local     (J, 4, 4) bind transform of each joint relative to its parent (a root's: to the armature node).
    armature  (4, 4) transform of the armature node, the parent of the root joints, in the scene frame.
    """

    names: list[str]
    parents: list[int]
    local: np.ndarray
    armature: np.ndarray

    def global_transforms(self) -> np.ndarray:
        """(J, 4, 4) bind transform of each joint in the scene frame: armature @ local chain."""
        local = np.asarray(self.local, dtype=np.float64)
        out = np.empty_like(local)
        for j, parent in enumerate(self.parents):
            out[j] = (np.asarray(self.armature, dtype=np.float64) if parent < 0 else out[parent]) @ local[j]
        return out

    def inverse_bind_matrices(self) -> np.ndarray:
        """(J, 4, 4) inverse of `global_transforms` (maps scene-frame bind-pose vertices into each joint's frame)."""
        return np.stack([_affine_inverse(m) for m in self.global_transforms()])


@dataclass
class MorphTargets:
    """names: K unique names; deltas: (K, V, 3) position offsets per vertex; default_weights: (K,)."""

    names: list[str]
    deltas: np.ndarray
    default_weights: np.ndarray


@dataclass
class MorphClip:
    """An animation of the morph weights: times (N,) seconds >= 0, strictly increasing; weights (N, K)."""

    name: str
    times: np.ndarray
    weights: np.ndarray


@dataclass
class AttachedMesh:
    """A textured mesh, vertices in the scene frame at bind pose, that follows joint ``joint`` rigidly."""

    name: str
    mesh: Mesh
    joint: str


def split_vertex_ids(mesh: Mesh) -> np.ndarray:
    """(S,) int64: the original vertex of each vertex `save_rigged_glb` writes for ``mesh`` (split at
    UV seams). The first V entries are 0..V-1; seam copies follow in order of first use."""
    _check_textured(mesh, "mesh")
    return _split_at_seams(mesh)[0]


def save_rigged_glb(path: str | Path, mesh: Mesh, skin_weights: np.ndarray, skeleton: Skeleton, morphs: MorphTargets | None,
                    clips: Sequence[MorphClip] = (), attached: Sequence[AttachedMesh] = (), name: str = "head",
                    attach: Literal["child", "skinned"] = "child") -> None:
    """Write the GLB described in the module docstring, atomically.

    mesh          textured `Mesh` (V vertices) in the scene frame at bind pose.
    skin_weights  (V, J) non-negative influence of each joint on each vertex (any scale; renormalised).
    morphs        K morph targets of ``mesh`` (or None); ``clips`` animate their weights.
    attached      rigid meshes that follow a joint, written as ``attach`` says (see the module docstring).
    Raises ValueError on inconsistent inputs.
    """
    skin_weights = np.asarray(skin_weights, dtype=np.float64)
    _check_inputs(mesh, skin_weights, skeleton, morphs, clips, attached, name)
    if attach not in ("child", "skinned"):
        raise ValueError(f"attach must be 'child' or 'skinned', got {attach!r}")
    data = _build(mesh, skin_weights, skeleton, morphs, clips, attached, name, attach).to_bytes()
    write_with(path, lambda tmp: tmp.write_bytes(data))


# ---------------------------------------------------------------------------------------------- checks


def _check_inputs(mesh: Mesh, skin_weights: np.ndarray, skeleton: Skeleton, morphs: MorphTargets | None,
                  clips: Sequence[MorphClip], attached: Sequence[AttachedMesh], name: str) -> None:
    _check_textured(mesh, "mesh")
    _check_skeleton(skeleton)
    num_joints = len(skeleton.names)
    _check_array("skin_weights", skin_weights, (mesh.num_verts, num_joints))
    if (skin_weights < 0).any():
        raise ValueError("skin_weights must be non-negative")
    num_targets = 0 if morphs is None else _check_morphs(morphs, mesh.num_verts)
    if clips and morphs is None:
        raise ValueError("clips animate morph weights, but no morph targets were given")
    _check_unique("clip names", [clip.name for clip in clips])
    for clip in clips:
        _check_clip(clip, num_targets)
    _check_unique("attached mesh names", [name, *(item.name for item in attached)])
    for item in attached:
        _check_textured(item.mesh, f"attached mesh {item.name!r}")
        if item.joint not in skeleton.names:
            raise ValueError(f"attached mesh {item.name!r} follows joint {item.joint!r}, which the skeleton does not have")


def _check_textured(mesh: Mesh, what: str) -> None:
    if mesh.uv is None or mesh.uv_faces is None or mesh.texture is None:
        raise ValueError(f"{what} needs uv, uv_faces and a texture")
    if mesh.num_faces == 0:
        raise ValueError(f"{what} has no faces")
    check_face_indices(mesh.faces, mesh.num_verts, what)
    check_face_indices(mesh.uv_faces, int(mesh.uv.shape[0]), f"{what} (uv_faces)")
    for field in ("verts", "uv", "texture"):
        if not torch.isfinite(getattr(mesh, field)).all():
            raise ValueError(f"{what} has non-finite {field}")


def _check_skeleton(skeleton: Skeleton) -> None:
    num_joints = len(skeleton.names)
    if num_joints == 0:
        raise ValueError("the skeleton has no joints")
    _check_unique("joint names", skeleton.names)
    if len(skeleton.parents) != num_joints:
        raise ValueError(f"skeleton has {num_joints} names but {len(skeleton.parents)} parents")
    for j, parent in enumerate(skeleton.parents):
        if not -1 <= parent < j:
            raise ValueError(f"joint {j} ({skeleton.names[j]!r}) has parent {parent}: a parent must come before its child (or be -1)")
    _check_array("skeleton.local", np.asarray(skeleton.local, dtype=np.float64), (num_joints, 4, 4))
    _check_array("skeleton.armature", np.asarray(skeleton.armature, dtype=np.float64), (4, 4))
    for j, matrix in enumerate(np.asarray(skeleton.local, dtype=np.float64)):
        _trs_or_raise(matrix, f"skeleton.local[{j}] ({skeleton.names[j]!r})")
    _trs_or_raise(np.asarray(skeleton.armature, dtype=np.float64), "skeleton.armature")


def _check_morphs(morphs: MorphTargets, num_verts: int) -> int:
    num_targets = len(morphs.names)
    if num_targets == 0:
        raise ValueError("morphs has no targets (pass None for a mesh without morph targets)")
    _check_unique("morph target names", morphs.names)
    _check_array("morphs.deltas", np.asarray(morphs.deltas, dtype=np.float64), (num_targets, num_verts, 3))
    _check_array("morphs.default_weights", np.asarray(morphs.default_weights, dtype=np.float64), (num_targets,))
    return num_targets


def _check_clip(clip: MorphClip, num_targets: int) -> None:
    times = np.asarray(clip.times, dtype=np.float64)
    _check_array(f"clip {clip.name!r} times", times, (None,))
    _check_array(f"clip {clip.name!r} weights", np.asarray(clip.weights, dtype=np.float64), (len(times), num_targets))
    if len(times) == 0:
        raise ValueError(f"clip {clip.name!r} has no keys")
    stored = times.astype(np.float32)
    if stored[0] < 0 or (np.diff(stored) <= 0).any():
        raise ValueError(f"clip {clip.name!r}: times must be >= 0 and strictly increasing (as float32)")


def _check_array(what: str, array: np.ndarray, shape: tuple[int | None, ...]) -> None:
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{what} has shape {tuple(array.shape)}, expected {want}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} has non-finite values")


def _check_unique(what: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for item in names:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{what} must be non-empty strings, got {item!r}")
        if item in seen:
            raise ValueError(f"{what} must be unique: {item!r} appears twice")
        seen.add(item)


# ------------------------------------------------------------------------------------------ transforms


@dataclass
class _Trs:
    translation: np.ndarray  # (3,)
    rotation: np.ndarray  # (4,) unit quaternion x, y, z, w
    scale: np.ndarray  # (3,)

    def json(self) -> dict[str, list[float]]:
        """Node properties; defaults left out."""
        out: dict[str, list[float]] = {}
        if np.any(self.translation != 0):
            out["translation"] = [float(x) for x in self.translation]
        if np.any(self.rotation != np.array([0.0, 0.0, 0.0, 1.0])):
            out["rotation"] = [float(x) for x in self.rotation]
        if np.any(self.scale != 1):
            out["scale"] = [float(x) for x in self.scale]
        return out

    def matrix(self) -> np.ndarray:
        """(4, 4) T @ R @ S."""
        out = np.eye(4)
        out[:3, :3] = _quaternion_to_matrix(self.rotation) * self.scale[None, :]
        out[:3, 3] = self.translation
        return out


def _decompose(matrix: np.ndarray) -> _Trs | None:
    """(4, 4) affine -> TRS, or None when its 3x3 part is not rotation times per-axis scale (shear)."""
    if np.abs(matrix[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > DECOMPOSE_TOL:
        return None
    linear = matrix[:3, :3]
    scale = np.linalg.norm(linear, axis=0)
    if scale.min() <= 0:
        return None
    if np.linalg.det(linear) < 0:
        scale = -scale  # a mirror: negative scale on all three axes leaves a proper rotation
    rotation = linear / scale[None, :]
    if np.abs(rotation.T @ rotation - np.eye(3)).max() > DECOMPOSE_TOL:
        return None
    uniform = np.abs(scale - scale.mean()).max() <= DECOMPOSE_TOL * np.abs(scale).max()
    return _Trs(matrix[:3, 3].copy(), _matrix_to_quaternion(rotation), np.full(3, scale.mean()) if uniform else scale)


def _trs_or_raise(matrix: np.ndarray, what: str) -> _Trs:
    trs = _decompose(matrix)
    if trs is None:
        raise ValueError(f"{what} is not a translation, rotation and scale (sheared or last row not 0 0 0 1)")
    return trs


def _matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion (x, y, z, w), w >= 0 (Shepperd's method)."""
    m = rotation
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    quat = np.asarray(q) / np.linalg.norm(q)
    return -quat if quat[3] < 0 else quat


def _quaternion_to_matrix(quat: np.ndarray) -> np.ndarray:
    """(4,) unit quaternion (x, y, z, w) -> (3, 3) rotation."""
    x, y, z, w = quat
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _affine_inverse(matrix: np.ndarray) -> np.ndarray:
    """(4, 4) inverse of an affine transform, with an exact 0 0 0 1 last row."""
    out = np.eye(4)
    out[:3, :3] = np.linalg.inv(matrix[:3, :3])
    out[:3, 3] = -out[:3, :3] @ matrix[:3, 3]
    return out


def _column_major(matrices: np.ndarray) -> np.ndarray:
    """(..., 4, 4) -> (..., 16) in glTF's column-major order."""
    return np.swapaxes(matrices, -1, -2).reshape(*matrices.shape[:-2], 16)


# ------------------------------------------------------------------------------------------ the buffer


class _Glb:
    """A glTF document and its binary chunk, one 4-byte aligned bufferView per accessor or image."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": "headfit"}, "scene": 0}
        self.blob = bytearray()
        self.sampler = self.add("samplers", {"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": REPEAT, "wrapT": REPEAT})

    def add(self, key: str, item: dict[str, Any]) -> int:
        """Append ``item`` to the top-level array ``key``; its index."""
        items = self.doc.setdefault(key, [])
        items.append(item)
        return len(items) - 1

    def view(self, data: bytes, target: int | None = None) -> int:
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob += data + b"\0" * (-len(data) % 4)
        return self.add("bufferViews", view)

    def accessor(self, array: np.ndarray, component: int, kind: str, target: int | None = None, bounds: bool = False) -> int:
        """(N, C) or (N,) array -> accessor of N elements of ``kind``; min/max when ``bounds``."""
        values = np.ascontiguousarray(array, dtype=_DTYPES[component]).reshape(len(array), _COMPONENTS[kind])
        accessor: dict[str, Any] = {"bufferView": self.view(values.tobytes(), target), "componentType": component,
                                    "count": len(values), "type": kind}
        if bounds:
            accessor["min"] = [v.item() for v in values.min(axis=0)]
            accessor["max"] = [v.item() for v in values.max(axis=0)]
        return self.add("accessors", accessor)

    def to_bytes(self) -> bytes:
        self.doc["buffers"] = [{"byteLength": len(self.blob)}]
        text = json.dumps(self.doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
        text += b" " * (-len(text) % 4)
        total = 12 + 8 + len(text) + 8 + len(self.blob)
        return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(text), b"JSON"), text,
                         struct.pack("<I4s", len(self.blob), b"BIN\0"), bytes(self.blob)])


# ------------------------------------------------------------------------------------------ the scene


def _build(mesh: Mesh, skin_weights: np.ndarray, skeleton: Skeleton, morphs: MorphTargets | None,
           clips: Sequence[MorphClip], attached: Sequence[AttachedMesh], name: str, attach: str) -> _Glb:
    glb = _Glb()
    joint_nodes, globals_ = _add_skeleton(glb, skeleton)
    ibm = glb.accessor(_column_major(np.stack([_affine_inverse(m) for m in globals_])), FLOAT, "MAT4")
    roots = [j for j, parent in enumerate(skeleton.parents) if parent < 0]
    skin = glb.add("skins", {"name": f"{name}_skin", "joints": joint_nodes, "inverseBindMatrices": ibm,
                             "skeleton": joint_nodes[roots[0]] if len(roots) == 1 else 0})
    primitive, ids = _textured_primitive(glb, mesh, f"{name}_material")
    primitive["attributes"].update(_skin_attributes(glb, skin_weights[ids]))
    gltf_mesh: dict[str, Any] = {"name": name, "primitives": [primitive]}
    if morphs is not None:
        deltas = np.asarray(morphs.deltas, dtype=np.float64)[:, ids]
        primitive["targets"] = [{"POSITION": glb.accessor(d, FLOAT, "VEC3", ARRAY_BUFFER, bounds=True)} for d in deltas]
        gltf_mesh["weights"] = [float(w) for w in np.asarray(morphs.default_weights, dtype=np.float64)]
        gltf_mesh["extras"] = {"targetNames": list(morphs.names)}
    scene_nodes = [0, glb.add("nodes", {"name": name, "mesh": glb.add("meshes", gltf_mesh), "skin": skin})]
    for clip in clips:
        _add_clip(glb, clip, scene_nodes[1])
    for item in attached:
        joint = skeleton.names.index(item.joint)
        if attach == "skinned":
            scene_nodes.append(_add_attached_skinned(glb, item, joint, len(skeleton.names), skin))
        else:
            _add_attached_child(glb, item, joint_nodes[joint], globals_[joint])
    glb.add("scenes", {"nodes": scene_nodes})
    return glb


def _add_skeleton(glb: _Glb, skeleton: Skeleton) -> tuple[list[int], np.ndarray]:
    """Armature node (index 0) and joint nodes; returns the joints' node indices and their (J, 4, 4)
    bind globals, computed from the TRS actually written."""
    armature = _trs_or_raise(np.asarray(skeleton.armature, dtype=np.float64), "skeleton.armature")
    glb.add("nodes", {"name": "Armature", **armature.json()})
    locals_ = [_trs_or_raise(m, name) for m, name in zip(np.asarray(skeleton.local, dtype=np.float64), skeleton.names)]
    joint_nodes = [glb.add("nodes", {"name": joint, **trs.json()}) for joint, trs in zip(skeleton.names, locals_)]
    written = Skeleton(skeleton.names, skeleton.parents, np.stack([t.matrix() for t in locals_]), armature.matrix())
    for j, parent in enumerate(skeleton.parents):
        _add_child(glb, 0 if parent < 0 else joint_nodes[parent], joint_nodes[j])
    return joint_nodes, written.global_transforms()


def _add_child(glb: _Glb, parent: int, child: int) -> None:
    glb.doc["nodes"][parent].setdefault("children", []).append(child)


def _add_attached_child(glb: _Glb, item: AttachedMesh, joint_node: int, joint_global: np.ndarray) -> None:
    """A mesh node under the joint node whose transform is the joint's inverse bind transform; when
    that is not TRS (non-uniform scales along a rotated chain), the transform goes into the vertices."""
    inverse = _affine_inverse(joint_global)
    trs = _decompose(inverse)
    mesh = item.mesh
    if trs is None:
        verts = mesh.verts.detach().cpu().double()
        mesh = mesh.replace(verts=verts @ torch.from_numpy(inverse[:3, :3]).T + torch.from_numpy(inverse[:3, 3]))
    primitive, _ = _textured_primitive(glb, mesh, f"{item.name}_material")
    gltf_mesh = glb.add("meshes", {"name": item.name, "primitives": [primitive]})
    node = glb.add("nodes", {"name": item.name, "mesh": gltf_mesh, **({} if trs is None else trs.json())})
    _add_child(glb, joint_node, node)


def _add_attached_skinned(glb: _Glb, item: AttachedMesh, joint: int, num_joints: int, skin: int) -> int:
    """A scene-root mesh node skinned with weight 1 to ``joint``; its node index."""
    primitive, ids = _textured_primitive(glb, item.mesh, f"{item.name}_material")
    one_hot = np.zeros((len(ids), num_joints))
    one_hot[:, joint] = 1.0
    primitive["attributes"].update(_skin_attributes(glb, one_hot))
    gltf_mesh = glb.add("meshes", {"name": item.name, "primitives": [primitive]})
    return glb.add("nodes", {"name": item.name, "mesh": gltf_mesh, "skin": skin})


def _add_clip(glb: _Glb, clip: MorphClip, mesh_node: int) -> None:
    times = np.asarray(clip.times, dtype=np.float64)
    sampler = {"input": glb.accessor(times, FLOAT, "SCALAR", bounds=True),
               "output": glb.accessor(np.asarray(clip.weights, dtype=np.float64).reshape(-1), FLOAT, "SCALAR"),
               "interpolation": "LINEAR"}
    glb.add("animations", {"name": clip.name, "samplers": [sampler],
                           "channels": [{"sampler": 0, "target": {"node": mesh_node, "path": "weights"}}]})


# ------------------------------------------------------------------------------------------ mesh data


def _split_at_seams(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`convert.split_at_seams` of a textured mesh: ids (S,), uv (S, 2) in `Mesh` convention, faces (F, 3)."""
    assert mesh.uv is not None and mesh.uv_faces is not None  # checked by the callers
    return split_at_seams(mesh.num_verts, mesh.faces.cpu().numpy(), mesh.uv.detach().cpu().double().numpy(),
                          mesh.uv_faces.cpu().numpy())


def _textured_primitive(glb: _Glb, mesh: Mesh, material_name: str) -> tuple[dict[str, Any], np.ndarray]:
    """A primitive with POSITION (with bounds), NORMAL, TEXCOORD_0, indices and a material, for
    ``mesh`` split at its UV seams; also the (S,) original vertex of each written one."""
    ids, uv, faces = _split_at_seams(mesh)
    verts = mesh.verts.detach().cpu().double()
    normals = vertex_normals(verts, mesh.faces.cpu()).numpy()
    lost = np.linalg.norm(normals, axis=1) < 0.5  # unreferenced vertices, or only degenerate faces around them
    normals[lost] = [0.0, 0.0, 1.0]
    attributes = {"POSITION": glb.accessor(verts.numpy()[ids], FLOAT, "VEC3", ARRAY_BUFFER, bounds=True),
                  "NORMAL": glb.accessor(normals[ids], FLOAT, "VEC3", ARRAY_BUFFER),
                  "TEXCOORD_0": glb.accessor(np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1), FLOAT, "VEC2", ARRAY_BUFFER)}
    primitive = {"attributes": attributes, "indices": _indices(glb, faces, len(ids)), "material": _material(glb, mesh.texture, material_name)}
    return primitive, ids


def _skin_attributes(glb: _Glb, skin_weights: np.ndarray) -> dict[str, int]:
    """JOINTS_0 / WEIGHTS_0 from (S, J) weights: the 4 largest, renormalised to sum 1; unused slots
    point at joint 0 with weight 0, and a vertex without weight goes to joint 0 with weight 1."""
    joints, weights = _top_influences(skin_weights)
    component = UNSIGNED_BYTE if skin_weights.shape[1] < 256 else UNSIGNED_SHORT
    return {"JOINTS_0": glb.accessor(joints, component, "VEC4", ARRAY_BUFFER),
            "WEIGHTS_0": glb.accessor(weights, FLOAT, "VEC4", ARRAY_BUFFER)}


def _top_influences(skin_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, J) weights -> joints (S, 4) int64 and weights (S, 4) float32 summing to 1, largest first."""
    num, count = skin_weights.shape
    padded = np.concatenate([skin_weights, np.zeros((num, max(0, MAX_INFLUENCES - count)))], axis=1)
    joints = np.argsort(-padded, axis=1, kind="stable")[:, :MAX_INFLUENCES]
    weights = np.take_along_axis(padded, joints, axis=1)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(total > 0, weights / np.where(total > 0, total, 1.0), np.eye(MAX_INFLUENCES)[0])
    joints = np.where(weights > 0, joints, 0)
    stored = weights.astype(np.float32)
    stored[:, 0] = np.float32(1.0) - stored[:, 1:].sum(axis=1, dtype=np.float32)  # float32 sum as close to 1 as it gets
    return joints, stored


def _indices(glb: _Glb, faces: np.ndarray, num_verts: int) -> int:
    """(F, 3) triangles -> index accessor: UNSIGNED_SHORT when every index (and no restart value) fits."""
    component = UNSIGNED_SHORT if num_verts < 65536 else UNSIGNED_INT
    return glb.accessor(faces.reshape(-1), component, "SCALAR", ELEMENT_ARRAY_BUFFER)


def _material(glb: _Glb, texture: torch.Tensor | None, name: str) -> int:
    """A PBR material with ``texture`` (H, W, 3) embedded as PNG as its base colour."""
    assert texture is not None  # checked by the callers
    png = io.BytesIO()
    texture_to_image(texture).save(png, format="PNG")
    image = glb.add("images", {"name": name, "bufferView": glb.view(png.getvalue()), "mimeType": "image/png"})
    source = glb.add("textures", {"sampler": glb.sampler, "source": image})
    return glb.add("materials", {"name": name, "pbrMetallicRoughness": {
        "baseColorTexture": {"index": source}, "metallicFactor": PBR_METALLIC, "roughnessFactor": PBR_ROUGHNESS}})
