"""Check the compact head model (representations/parametric) against anny itself. Not a CI test: anny's first
construction of its head takes ~15 minutes and 734 MB (in $ANNY_CACHE_DIR, default ~/.cache/anny).

    python tools/anny_head_reference.py make [--out /tmp/anny_ref.npz]      # anny's outputs (float64)
    python tools/anny_head_reference.py compare [--ref /tmp/anny_ref.npz] [--fixture tests/representations/data/anny_head_fixture.json]

`make` builds `anny.Anny(rig="makehuman-head", topology="head", local_changes="all", facial_actions="all")` and
saves its mesh, rig and the vertices of five settings (defaults; dense random shape + expression; sparse with
out-of-range phenotypes; jawOpen; the sparse one posed). `compare` builds the compact file afresh (timed),
loads it (timed), and prints one JSON line of errors relative to the head's height, in float64 and float32;
with --fixture it also writes the small test fixture (a few vertices of two settings).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from representations.parametric import build_head_model, load_head_model  # noqa: E402

SPARSE_LOCAL = ["nose-trans-up", "nose-scale-horiz-incr", "chin-prominent-incr", "head-age-incr", "l-ear-scale-incr",
                "mouth-scale-horiz-incr", "r-eye-scale-incr", "forehead-trans-forward", "neck-scale-horiz-incr",
                "head-fat-incr", "r-cheek-bones-incr", "eyebrows-trans-up"]
SPARSE_FACIAL = ["jawOpen", "eyeBlinkLeft", "mouthSmileRight", "browInnerUp", "cheekPuff", "tongueOut", "noseSneerLeft",
                 "mouthPucker"]
POSED_BONES = ["root", "jaw", "head", "neck02", "eye.L", "tongue02"]


def rotation(axis_angle: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(axis_angle)
    k = axis_angle / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def settings(local_names: list[str], facial_names: list[str], bones: list[str]) -> dict[str, np.ndarray]:
    """Five settings' parameters, seeded (name lists in anny's order)."""
    rng = np.random.default_rng(17)
    B, L, F, J = 5, len(local_names), len(facial_names), len(bones)
    phen = np.full((B, 6), 0.5)
    local, facial = np.zeros((B, L)), np.zeros((B, F))
    phen[1] = rng.uniform(0, 1, 6)
    phen[1, 1] = rng.uniform(-1 / 3, 1)
    local[1] = rng.uniform(-1, 1, L)
    facial[1] = rng.uniform(0, 1, F)
    phen[2] = [1.3, -0.5, 0.2, 0.9, 1.0, 0.0]  # gender and age out of range: clamped
    for name in SPARSE_LOCAL:
        local[2, local_names.index(name)] = rng.uniform(-1, 1)
    for name in SPARSE_FACIAL:
        facial[2, facial_names.index(name)] = rng.uniform(0.2, 1)
    facial[3, facial_names.index("jawOpen")] = 1.0
    phen[4], local[4], facial[4] = phen[2], local[2], facial[2]
    pose = np.tile(np.eye(4), (B, J, 1, 1))
    for name in POSED_BONES:
        pose[4, bones.index(name), :3, :3] = rotation(rng.normal(0, 0.3, 3))
    pose[4, 0, :3, 3] = [0.01, -0.02, 0.03]
    return {"phenotype": phen, "local_changes": local, "facial_actions": facial, "pose": pose}


def make(out: Path) -> None:
    import anny

    start = time.perf_counter()
    model = anny.Anny(rig="makehuman-head", topology="head", local_changes="all", facial_actions="all")
    built = time.perf_counter() - start
    print(f"anny head built in {built:.1f} s", flush=True)
    p = settings(model.local_change_labels, model.facial_action_labels, model.bone_labels)
    t = {k: torch.as_tensor(v, dtype=model.dtype) for k, v in p.items()}
    start = time.perf_counter()
    with torch.no_grad():
        result = model(pose_parameters=t["pose"], phenotype_kwargs=t["phenotype"], local_changes_kwargs=t["local_changes"],
                       facial_actions=t["facial_actions"])
    forward = time.perf_counter() - start
    dense = torch.zeros(len(model.template_vertices), model.bone_count, dtype=model.dtype)
    dense.scatter_add_(1, model.vertex_bone_indices, model.vertex_bone_weights)
    np.savez(out, **p, **{k: v.numpy() for k, v in result.items()}, template_vertices=model.template_vertices.numpy(),
             faces=model.faces.numpy(), face_uvs=model.texture_coordinates[model.face_texture_coordinate_indices].numpy(),
             base_vertex_ids=model.base_mesh_vertex_indices.numpy(), skin_weights=dense.numpy(),
             bone_parents=np.asarray(model.bone_parents), bone_names=np.asarray(model.bone_labels),
             phenotype_names=np.asarray(model.phenotype_labels), local_change_names=np.asarray(model.local_change_labels),
             facial_action_names=np.asarray(model.facial_action_labels), dtype=str(model.dtype),
             anny_version=anny.__version__, build_seconds=built, forward_seconds=forward)
    print(f"wrote {out}")


def fixture_vertices(template: np.ndarray) -> list[int]:
    """A handful of telling vertices: chin (lowest in front), nose tip, crown, ears, and a few fixed ones."""
    front = template[:, 1] < np.median(template[:, 1])
    chin = int(np.flatnonzero(front)[np.argmin(template[front, 2])])
    return sorted({chin, int(np.argmin(template[:, 1])), int(np.argmax(template[:, 2])), int(np.argmax(template[:, 0])),
                   int(np.argmin(template[:, 0])), 0, 1111, 2222, 3333, 4444})


def compare(ref_path: Path, fixture: Path | None) -> None:
    ref = np.load(ref_path, allow_pickle=False)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = build_head_model(Path(tmp) / "head.safetensors")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        model = load_head_model(path)
        warm = time.perf_counter() - start
        size = path.stat().st_size
    assert model.phenotype_names == ref["phenotype_names"].tolist()
    assert model.local_change_names == ref["local_change_names"].tolist()
    assert model.facial_action_names == ref["facial_action_names"].tolist()
    assert model.bone_names == ref["bone_names"].tolist() and model.bone_parents == ref["bone_parents"].tolist()
    height = float(np.ptp(ref["template_vertices"][:, 2]))
    report: dict = {"anny_build_s": round(float(ref["build_seconds"]), 1), "compact_build_s": round(cold, 2),
                    "compact_load_s": round(warm, 3), "file_mb": round(size / 2**20, 1), "head_height_m": round(height, 4),
                    "faces_equal": bool(np.array_equal(model.faces.numpy(), ref["faces"])),
                    "base_vertex_ids_equal": bool(np.array_equal(model.base_vertex_ids.numpy(), ref["base_vertex_ids"])),
                    "uv_max_err": float(np.abs(model.uvs[model.face_uvs].numpy() - ref["face_uvs"]).max()),
                    "skin_weights_max_err": float(np.abs(model.skin_weights.numpy() - ref["skin_weights"]).max())}
    inputs = {k: torch.as_tensor(ref[k]) for k in ("phenotype", "local_changes", "facial_actions", "pose")}
    for dtype in (torch.float64, torch.float32):
        m = model.to(dtype)
        with torch.no_grad():
            rest, heads, tails = m.rest(inputs["phenotype"], inputs["local_changes"], inputs["facial_actions"])
            verts = m(inputs["phenotype"], inputs["local_changes"], inputs["facial_actions"], pose=inputs["pose"])
            unposed = m(inputs["phenotype"], inputs["local_changes"], inputs["facial_actions"])
            poses = m.bone_orientations(heads, tails)
        name = str(dtype).split(".")[-1]

        def err(a: torch.Tensor, key: str, i: int | None = None) -> float:
            b = ref[key] if i is None else ref[key][i]
            return float((a.double() - torch.as_tensor(b)).abs().max() / height)

        ref_rot = torch.as_tensor(ref["rest_bone_poses"][..., :3, :3])
        report[name] = {"template": float(np.abs(m.template_vertices.double().numpy() - ref["template_vertices"]).max() / height),
                        "rest_vertices": err(rest, "rest_vertices"), "bone_heads": err(heads, "rest_bone_heads"),
                        "bone_tails": err(tails, "rest_bone_tails"),
                        "bone_rotations_abs": float((poses.double() - ref_rot).abs().max()),
                        "vertices_per_setting": [err(verts[i], "vertices", i) for i in range(len(verts))],
                        "unposed_vs_identity_pose": max(err(unposed[i], "vertices", i) for i in range(4))}
    print(json.dumps(report))
    if fixture is not None:
        ids = fixture_vertices(ref["template_vertices"])
        cases = []
        for i in (2, 4):
            local = {n: float(v) for n, v in zip(model.local_change_names, ref["local_changes"][i]) if v}
            facial = {n: float(v) for n, v in zip(model.facial_action_names, ref["facial_actions"][i]) if v}
            pose = {n: ref["pose"][i, j].tolist() for j, n in enumerate(model.bone_names)
                    if not np.array_equal(ref["pose"][i, j], np.eye(4))}
            cases.append({"phenotype": dict(zip(model.phenotype_names, ref["phenotype"][i].tolist())), "local_changes": local,
                          "facial_actions": facial, "pose": pose, "vertices": ref["vertices"][i][ids].tolist()})
        data = {"source": f"anny {ref['anny_version']} (tools/anny_head_reference.py)", "vertex_ids": ids, "cases": cases}
        fixture.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {fixture}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("make").add_argument("--out", type=Path, default=Path("/tmp/anny_ref.npz"))
    c = sub.add_parser("compare")
    c.add_argument("--ref", type=Path, default=Path("/tmp/anny_ref.npz"))
    c.add_argument("--fixture", type=Path, default=None)
    args = parser.parse_args()
    make(args.out) if args.command == "make" else compare(args.ref, args.fixture)


if __name__ == "__main__":
    main()
