"""The rigged, morphable GLB writer on a small synthetic rig: a UV-mapped cylinder with a seam, a
4-joint chain under a rotated, scaled armature node, 3 morph targets, 2 clips and an attached mesh.

Read back by hand (JSON + binary chunk), through the Khronos glTF validator and through Blender's
importer. Under CI=true a missing validator or bpy is a failure, elsewhere a skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from representations.mesh import Mesh
from representations.mesh.gltf_rig import AttachedMesh, MorphClip, MorphTargets, Skeleton, save_rigged_glb, split_vertex_ids
from tests.helpers import accessor, need, read_glb, validator_issues

RINGS, SEGMENTS = 5, 8
JOINTS = ["neck", "head", "jaw", "eye_socket"]
TARGETS = ["jawOpen", "cheekPuff", "browInnerUp"]
HEAD_TEXTURE = (32, 64)  # (H, W)
EYE_TEXTURE = (8, 16)


def cylinder(radius: float, height: float, center: tuple[float, float, float], texture_hw: tuple[int, int], seed: int) -> Mesh:
    """An open cylinder along +y: RINGS x SEGMENTS vertices, a UV seam where u wraps (one extra uv column)."""
    ring = np.arange(RINGS)[:, None]
    angle = 2 * np.pi * np.arange(SEGMENTS)[None, :] / SEGMENTS
    verts = np.stack(np.broadcast_arrays(radius * np.sin(angle), height * ring / (RINGS - 1), radius * np.cos(angle)), -1)
    verts = verts.reshape(-1, 3) + np.asarray(center)
    u, v = np.meshgrid(np.arange(SEGMENTS + 1) / SEGMENTS, np.arange(RINGS) / (RINGS - 1))
    uv = np.stack([u, v], -1).reshape(-1, 2)
    faces, uv_faces = [], []
    for r in range(RINGS - 1):
        for k in range(SEGMENTS):
            a, b, c, d = r * SEGMENTS + k, r * SEGMENTS + (k + 1) % SEGMENTS, (r + 1) * SEGMENTS + (k + 1) % SEGMENTS, (r + 1) * SEGMENTS + k
            ta, tb, tc, td = r * (SEGMENTS + 1) + k, r * (SEGMENTS + 1) + k + 1, (r + 1) * (SEGMENTS + 1) + k + 1, (r + 1) * (SEGMENTS + 1) + k
            faces += [[a, b, c], [a, c, d]]
            uv_faces += [[ta, tb, tc], [ta, tc, td]]
    texture = torch.rand((*texture_hw, 3), generator=torch.Generator().manual_seed(seed))
    return Mesh(verts=torch.tensor(verts, dtype=torch.float32), faces=torch.tensor(faces), uv=torch.tensor(uv, dtype=torch.float32),
                uv_faces=torch.tensor(uv_faces), texture=texture)


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    out = np.eye(4)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


def translation(x: float, y: float, z: float) -> np.ndarray:
    out = np.eye(4)
    out[:3, 3] = x, y, z
    return out


def make_rig() -> dict:
    """The arguments of `save_rigged_glb` for the synthetic head."""
    head = cylinder(0.5, 2.0, (0.0, 0.0, 0.0), HEAD_TEXTURE, seed=0)
    armature = translation(0.1, -0.2, 0.05) @ rotation("y", 30) @ np.diag([1.5, 1.5, 1.5, 1.0])
    local = np.stack([translation(0.0, 0.0, 0.0) @ rotation("x", 10), translation(0.0, 0.45, 0.0) @ rotation("z", -15),
                      translation(0.05, 0.3, 0.1) @ rotation("x", 25), translation(0.0, 0.3, -0.05)])
    skeleton = Skeleton(names=list(JOINTS), parents=[-1, 0, 1, 2], local=local, armature=armature)
    joint_y = skeleton.global_transforms()[:, 1, 3]
    verts = head.verts.double().numpy()
    weights = np.exp(-((verts[:, 1:2] - joint_y[None, :]) / 0.4) ** 2)
    weights[verts[:, 1] > 1.2, 0] = 0.0  # the top rings: influences of 3 joints only
    weights[0] = 0.0  # a vertex without weight: joint 0, weight 1
    ring = np.arange(head.num_verts) // SEGMENTS
    deltas = np.zeros((3, head.num_verts, 3))
    deltas[0, ring == 0, 1] = -0.2
    deltas[1, :, [0, 2]] = 0.1 * verts[:, [0, 2]].T
    deltas[2, ring == RINGS - 1, 1] = 0.15
    morphs = MorphTargets(list(TARGETS), deltas, np.array([0.0, 0.25, 0.0]))
    clips = [MorphClip("talk", np.array([0.0, 0.5, 1.0]), np.array([[0, 0, 0], [1, 0.2, 0], [0, 0, 0.5]], dtype=float)),
             MorphClip("smile", np.array([0.0, 0.25]), np.array([[0, 0, 0], [0, 1, 1]], dtype=float))]
    eye = cylinder(0.1, 0.1, (0.2, 1.7, 0.4), EYE_TEXTURE, seed=1)
    return dict(mesh=head, skin_weights=weights, skeleton=skeleton, morphs=morphs, clips=clips,
                attached=[AttachedMesh("eye", eye, "eye_socket")], name="head")


@pytest.fixture(scope="module")
def rig() -> dict:
    return make_rig()


@pytest.fixture(scope="module")
def glb_path(rig, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rig") / "child.glb"
    save_rigged_glb(path, **rig)
    return path


@pytest.fixture(scope="module")
def skinned_glb_path(rig, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rig") / "skinned.glb"
    save_rigged_glb(path, **rig, attach="skinned")
    return path


def node_matrix(node: dict) -> np.ndarray:
    """(4, 4) local transform of a glTF node (TRS or matrix)."""
    if "matrix" in node:
        return np.asarray(node["matrix"]).reshape(4, 4).T
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    out = np.eye(4)
    out[:3, :3] = rot * np.asarray(node.get("scale", [1, 1, 1]))[None, :]
    out[:3, 3] = node.get("translation", [0, 0, 0])
    return out


def world_matrices(doc: dict) -> list[np.ndarray]:
    parent = {child: i for i, node in enumerate(doc["nodes"]) for child in node.get("children", [])}

    def world(i: int) -> np.ndarray:
        local = node_matrix(doc["nodes"][i])
        return local if i not in parent else world(parent[i]) @ local

    return [world(i) for i in range(len(doc["nodes"]))]


def test_read_back(rig, glb_path):
    doc, blob = read_glb(glb_path)
    head: Mesh = rig["mesh"]
    ids = split_vertex_ids(head)
    assert len(ids) == head.num_verts + RINGS  # one seam copy per ring
    assert np.array_equal(ids[:head.num_verts], np.arange(head.num_verts))
    assert doc["asset"]["generator"] == "headfit" and doc["scenes"][doc["scene"]]["nodes"] == [0, 5]
    mesh_node = doc["nodes"][5]
    assert "matrix" not in mesh_node and "translation" not in mesh_node and "rotation" not in mesh_node
    gltf_mesh = doc["meshes"][mesh_node["mesh"]]
    primitive = gltf_mesh["primitives"][0]
    attr = {key: accessor(doc, blob, i) for key, i in primitive["attributes"].items()}
    verts = head.verts.double().numpy()
    assert np.allclose(attr["POSITION"], verts[ids], atol=1e-6)
    position = doc["accessors"][primitive["attributes"]["POSITION"]]
    assert position["min"] == attr["POSITION"].min(0).tolist() and position["max"] == attr["POSITION"].max(0).tolist()
    assert np.allclose(np.linalg.norm(attr["NORMAL"], axis=1), 1.0, atol=1e-6)
    # the uv of every face corner survives the split, with v flipped
    indices = accessor(doc, blob, primitive["indices"]).reshape(-1, 3)
    assert doc["accessors"][primitive["indices"]]["componentType"] == 5123
    assert np.array_equal(ids[indices], head.faces.numpy())
    corner_uv = head.uv.double().numpy()[head.uv_faces.numpy()]
    texcoord = attr["TEXCOORD_0"][indices]
    assert np.allclose(texcoord[..., 0], corner_uv[..., 0], atol=1e-6) and np.allclose(texcoord[..., 1], 1 - corner_uv[..., 1], atol=1e-6)
    # skinning: 4 influences summing to 1, the largest first; vertex 0 (no weight) on joint 0
    assert doc["accessors"][primitive["attributes"]["JOINTS_0"]]["componentType"] == 5121
    joints, weights = attr["JOINTS_0"].astype(int), attr["WEIGHTS_0"].astype(np.float64)
    assert np.abs(weights.sum(1) - 1).max() < 1e-6 and (weights >= 0).all()
    assert np.array_equal(joints[:, 0], rig["skin_weights"][ids].argmax(1)) and (joints[weights == 0] == 0).all()
    assert joints[0].tolist() == [0, 0, 0, 0] and weights[0].tolist() == [1, 0, 0, 0]
    top = rig["skin_weights"][ids[5]]
    assert np.allclose(weights[5], np.sort(top)[::-1] / top.sum(), atol=1e-6)
    # skeleton: inverse bind matrices undo the node chain, which equals the input skeleton
    skin = doc["skins"][mesh_node["skin"]]
    worlds = world_matrices(doc)
    ibm = accessor(doc, blob, skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    joint_worlds = np.stack([worlds[n] for n in skin["joints"]])
    assert np.allclose(ibm @ joint_worlds, np.eye(4), atol=1e-5)
    assert np.allclose(joint_worlds, rig["skeleton"].global_transforms(), atol=1e-6)
    assert [doc["nodes"][n]["name"] for n in skin["joints"]] == JOINTS and skin["skeleton"] == skin["joints"][0]
    # morph targets
    morphs: MorphTargets = rig["morphs"]
    assert gltf_mesh["extras"]["targetNames"] == TARGETS and gltf_mesh["weights"] == [0.0, 0.25, 0.0]
    for k, target in enumerate(primitive["targets"]):
        acc = doc["accessors"][target["POSITION"]]
        delta = accessor(doc, blob, target["POSITION"])
        assert np.allclose(delta, morphs.deltas[k][ids], atol=1e-6)
        assert acc["min"] == delta.min(0).tolist() and acc["max"] == delta.max(0).tolist()
    # animations
    assert [a["name"] for a in doc["animations"]] == ["talk", "smile"]
    for clip, animation in zip(rig["clips"], doc["animations"]):
        sampler = animation["samplers"][0]
        assert sampler["interpolation"] == "LINEAR" and animation["channels"][0]["target"] == {"node": 5, "path": "weights"}
        times = doc["accessors"][sampler["input"]]
        assert times["count"] == len(clip.times) and (times["min"], times["max"]) == ([clip.times[0]], [clip.times[-1]])
        assert np.allclose(accessor(doc, blob, sampler["output"]).reshape(-1), clip.weights.reshape(-1))
    # the attached mesh: a child of its joint whose world transform at bind pose is the identity
    eye_node = next(i for i, n in enumerate(doc["nodes"]) if n["name"] == "eye")
    assert eye_node in doc["nodes"][skin["joints"][3]]["children"] and "skin" not in doc["nodes"][eye_node]
    assert np.allclose(worlds[eye_node], np.eye(4), atol=1e-6)
    eye: Mesh = rig["attached"][0].mesh
    eye_position = accessor(doc, blob, doc["meshes"][doc["nodes"][eye_node]["mesh"]]["primitives"][0]["attributes"]["POSITION"])
    assert np.allclose(eye_position, eye.verts.double().numpy()[split_vertex_ids(eye)], atol=1e-6)
    # one material and embedded PNG per mesh
    assert len(doc["materials"]) == 2 and all(m["pbrMetallicRoughness"]["metallicFactor"] == 0 for m in doc["materials"])
    assert [doc["images"][i]["mimeType"] for i in range(2)] == ["image/png"] * 2
    assert all(v["byteOffset"] % 4 == 0 for v in doc["bufferViews"]) and doc["buffers"][0]["byteLength"] == len(blob)


def test_read_back_skinned_attachment(rig, skinned_glb_path):
    """attach="skinned": the eye is a scene-root node in the head's skin, all weight on its joint."""
    doc, blob = read_glb(skinned_glb_path)
    eye_node = next(i for i, n in enumerate(doc["nodes"]) if n["name"] == "eye")
    assert doc["scenes"][0]["nodes"] == [0, 5, eye_node] and doc["nodes"][eye_node]["skin"] == doc["nodes"][5]["skin"]
    assert not any(eye_node in n.get("children", []) for n in doc["nodes"])
    attributes = doc["meshes"][doc["nodes"][eye_node]["mesh"]]["primitives"][0]["attributes"]
    eye: Mesh = rig["attached"][0].mesh
    assert np.allclose(accessor(doc, blob, attributes["POSITION"]), eye.verts.double().numpy()[split_vertex_ids(eye)], atol=1e-6)
    assert (accessor(doc, blob, attributes["JOINTS_0"]) == [JOINTS.index("eye_socket"), 0, 0, 0]).all()
    assert (accessor(doc, blob, attributes["WEIGHTS_0"]) == [1, 0, 0, 0]).all()


def assert_valid(path: Path) -> None:
    """No errors and no warnings (infos and hints are allowed; the rig produces none today)."""
    issues = validator_issues(path)
    serious = [f"{m['code']} at {m.get('pointer')}: {m['message']}" for m in issues["messages"] if m["severity"] <= 1]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, serious


@pytest.mark.parametrize("attach", ["child", "skinned"])
def test_khronos_validator_finds_no_errors_or_warnings(glb_path, skinned_glb_path, attach):
    assert_valid(glb_path if attach == "child" else skinned_glb_path)


BLENDER_CHECK = """
import json, sys, bpy

def world_verts(obj):
    bpy.context.view_layer.update()
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    out = [list(evaluated.matrix_world @ v.co) for v in mesh.vertices]
    evaluated.to_mesh_clear()
    return out

def describe(obj):
    mesh = obj.data
    images = [list(n.image.size) for m in mesh.materials if m and m.node_tree for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
    keys = [k.name for k in mesh.shape_keys.key_blocks] if mesh.shape_keys else []
    return {"name": obj.name, "shape_keys": keys, "uv_layers": len(mesh.uv_layers), "images": images,
            "groups": [g.name for g in obj.vertex_groups], "armature_modifiers": sum(m.type == "ARMATURE" for m in obj.modifiers)}

def inspect(path, heuristic):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path, bone_heuristic=heuristic)
    scene = bpy.context.scene
    objects = list(scene.objects)
    shapes = {b.custom_shape for o in objects if o.type == "ARMATURE" for b in o.pose.bones}  # the importer's bone display shape
    meshes = [o for o in objects if o.type == "MESH" and o not in shapes]
    skinned = [o for o in meshes if o.data.shape_keys]
    info = {"armatures": [[b.name for b in o.data.bones] for o in objects if o.type == "ARMATURE"],
            "meshes": [describe(o) for o in meshes], "actions": sorted(a.name for a in bpy.data.actions),
            "shape_key_action": bool(skinned and skinned[0].data.shape_keys.animation_data and skinned[0].data.shape_keys.animation_data.action)}
    for obj in objects:  # the clips would set the weights at frame 0
        obj.animation_data_clear()
        if obj.type == "MESH" and obj.data.shape_keys:
            obj.data.shape_keys.animation_data_clear()
    scene.frame_set(0)
    if len(skinned) == 1:
        blocks = skinned[0].data.shape_keys.key_blocks
        for block in blocks[1:]:
            block.value = 0.0
        info["rest"] = world_verts(skinned[0])
        info["moved"] = {}
        for block in blocks[1:]:
            block.value = 1.0
            info["moved"][block.name] = world_verts(skinned[0])
            block.value = 0.0
    info["attached"] = {o.name: world_verts(o) for o in meshes if not o.data.shape_keys}
    return info

args = sys.argv[1:]
print(json.dumps({path: inspect(path, heuristic) for path, heuristic in zip(args[::2], args[1::2])}))
"""


def to_blender(points: np.ndarray) -> np.ndarray:
    """glTF +Y up -> Blender +Z up: (x, y, z) -> (x, -z, y)."""
    return np.stack([points[:, 0], -points[:, 2], points[:, 1]], axis=1)


def test_blender_imports_rig(rig, glb_path, skinned_glb_path):
    """Both attach modes. The "child" file is imported with the TEMPERANCE bone heuristic: Blender's
    default heuristic misplaces children of bones under a scaled armature (see gltf_rig's docstring)."""
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('bpy') is not None)"],
                           capture_output=True, text=True, timeout=60)
    need(probe.stdout.strip() == "True", "bpy 5.0.1 (Blender as a Python module, pip install -e '.[blender]')")
    imports = {str(skinned_glb_path): "BLENDER", str(glb_path): "TEMPERANCE"}
    result = subprocess.run([sys.executable, "-c", BLENDER_CHECK, *(x for pair in imports.items() for x in pair)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    ids = split_vertex_ids(rig["mesh"])
    expected = to_blender(rig["mesh"].verts.double().numpy()[ids])
    eye: Mesh = rig["attached"][0].mesh
    for path, info in report.items():
        assert info["armatures"] == [JOINTS], path
        by_name = {m["name"]: m for m in info["meshes"]}
        assert set(by_name) == {"head", "eye"}, (path, list(by_name))
        head = by_name["head"]
        assert head["shape_keys"] == ["Basis", *TARGETS] and head["uv_layers"] == 1 and head["armature_modifiers"] == 1
        assert head["images"] == [[HEAD_TEXTURE[1], HEAD_TEXTURE[0]]] and sorted(head["groups"]) == sorted(JOINTS)
        assert by_name["eye"]["images"] == [[EYE_TEXTURE[1], EYE_TEXTURE[0]]] and by_name["eye"]["shape_keys"] == []
        assert info["actions"] == ["smile", "talk"] and info["shape_key_action"]
        rest = np.asarray(info["rest"])
        assert rest.shape == expected.shape and np.abs(rest - expected).max() < 1e-4, path
        for k, target in enumerate(TARGETS):
            moved = np.asarray(info["moved"][target]) - rest
            assert np.abs(moved - to_blender(rig["morphs"].deltas[k][ids])).max() < 1e-4, (path, target)
        eye_world = np.asarray(info["attached"]["eye"])
        assert np.abs(eye_world - to_blender(eye.verts.double().numpy()[split_vertex_ids(eye)])).max() < 1e-4, path
        assert by_name["eye"]["armature_modifiers"] == (path == str(skinned_glb_path))


def _with(rig: dict, **changes) -> dict:
    return {**rig, **changes}


def _bad_inputs(rig: dict) -> dict[str, tuple[dict, str]]:
    skeleton: Skeleton = rig["skeleton"]
    morphs: MorphTargets = rig["morphs"]
    nan_verts = rig["mesh"].verts.clone()
    nan_verts[3, 1] = float("nan")
    nan_local = skeleton.local.copy()
    nan_local[2, 0, 3] = np.nan
    sheared = skeleton.local.copy()
    sheared[1, 0, 1] += 0.5
    return {
        "deltas shape": (_with(rig, morphs=MorphTargets(morphs.names, morphs.deltas[:, :-1], morphs.default_weights)), "morphs.deltas"),
        "child before parent": (_with(rig, skeleton=Skeleton(skeleton.names, [-1, 2, 0, 1], skeleton.local, skeleton.armature)), "before its child"),
        "nan verts": (_with(rig, mesh=rig["mesh"].replace(verts=nan_verts)), "non-finite verts"),
        "nan local": (_with(rig, skeleton=Skeleton(skeleton.names, skeleton.parents, nan_local, skeleton.armature)), "non-finite"),
        "nan weights": (_with(rig, skin_weights=np.where(np.eye(*rig["skin_weights"].shape) > 0, np.nan, rig["skin_weights"])), "non-finite"),
        "negative weights": (_with(rig, skin_weights=-rig["skin_weights"]), "non-negative"),
        "weights shape": (_with(rig, skin_weights=rig["skin_weights"][:, :3]), "skin_weights has shape"),
        "duplicate joint": (_with(rig, skeleton=Skeleton(["a", "b", "a", "c"], skeleton.parents, skeleton.local, skeleton.armature)), "unique"),
        "duplicate target": (_with(rig, morphs=MorphTargets(["x", "x", "y"], morphs.deltas, morphs.default_weights)), "unique"),
        "sheared joint": (_with(rig, skeleton=Skeleton(skeleton.names, skeleton.parents, sheared, skeleton.armature)), "sheared"),
        "clip K": (_with(rig, clips=[MorphClip("c", np.array([0.0, 1.0]), np.zeros((2, 2)))]), "weights has shape"),
        "clip times": (_with(rig, clips=[MorphClip("c", np.array([0.0, 0.0]), np.zeros((2, 3)))]), "strictly increasing"),
        "clip without morphs": (_with(rig, morphs=None), "no morph targets"),
        "unknown joint": (_with(rig, attached=[AttachedMesh("eye", rig["attached"][0].mesh, "toe")]), "'toe'"),
        "untextured": (_with(rig, mesh=rig["mesh"].replace(texture=None)), "texture"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(make_rig())))
def test_bad_inputs_raise(rig, tmp_path, case):
    arguments, message = _bad_inputs(rig)[case]
    with pytest.raises(ValueError, match=message):
        save_rigged_glb(tmp_path / "bad.glb", **arguments)
    assert not (tmp_path / "bad.glb").exists()


def test_without_morphs_and_with_many_joints(rig, tmp_path):
    """No morph targets; 300 joints in two chains (UNSIGNED_SHORT joint indices, the armature node as
    skin.skeleton), 6 influences cut to the 4 largest; a valid file."""
    count = 300
    names = [f"j{i}" for i in range(count)]
    local = np.stack([translation(0.0, 0.01, 0.0)] * count)
    skeleton = Skeleton(names, [-1, -1, *range(1, count - 1)], local, np.eye(4))
    weights = np.zeros((rig["mesh"].num_verts, count))
    weights[:, [5, 299, 7, 100, 150, 3]] = [0.3, 0.25, 0.2, 0.15, 0.05, 0.05]
    path = tmp_path / "plain.glb"
    save_rigged_glb(path, rig["mesh"], weights, skeleton, None)
    doc, blob = read_glb(path)
    primitive = doc["meshes"][0]["primitives"][0]
    assert "targets" not in primitive and "animations" not in doc and "extras" not in doc["meshes"][0]
    assert doc["accessors"][primitive["attributes"]["JOINTS_0"]]["componentType"] == 5123
    joints = accessor(doc, blob, primitive["attributes"]["JOINTS_0"])
    stored = accessor(doc, blob, primitive["attributes"]["WEIGHTS_0"])
    assert (joints == [5, 299, 7, 100]).all() and np.allclose(stored, np.array([0.3, 0.25, 0.2, 0.15]) / 0.9, atol=1e-6)
    assert doc["skins"][0]["skeleton"] == 0 and doc["nodes"][0]["children"] == [1, 2]
    assert_valid(path)


def test_attachment_under_a_sheared_joint(rig, tmp_path):
    """A rotated non-uniform scale above a rotated joint gives an inverse bind transform no TRS node can
    hold: the attached mesh's vertices are then stored in the joint's frame, under an untransformed node."""
    local = np.stack([rotation("z", 30) @ np.diag([2.0, 1.0, 1.0, 1.0]), translation(0.0, 0.5, 0.0) @ rotation("z", 45)])
    skeleton = Skeleton(["stretch", "tip"], [-1, 0], local, np.eye(4))
    eye = rig["attached"][0].mesh
    path = tmp_path / "sheared.glb"
    save_rigged_glb(path, rig["mesh"], np.ones((rig["mesh"].num_verts, 2)), skeleton, None,
                    attached=[AttachedMesh("eye", eye, "tip")])
    doc, blob = read_glb(path)
    eye_node = next(i for i, n in enumerate(doc["nodes"]) if n["name"] == "eye")
    assert not {"matrix", "translation", "rotation", "scale"} & set(doc["nodes"][eye_node])
    stored = accessor(doc, blob, doc["meshes"][doc["nodes"][eye_node]["mesh"]]["primitives"][0]["attributes"]["POSITION"])
    world = world_matrices(doc)[eye_node]
    placed = stored.astype(np.float64) @ world[:3, :3].T + world[:3, 3]
    assert np.allclose(placed, eye.verts.double().numpy()[split_vertex_ids(eye)], atol=1e-5)
    assert_valid(path)
