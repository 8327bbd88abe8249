"""How many faces a mesh file holds, found without loading it (so a huge file can be refused first).

PLY and glTF/GLB declare their counts in a header; an OBJ is scanned for its face lines (about a
second per 200 MB, in chunks). Each count is of faces as stored: a polygon counts once, so the
number of triangles may be higher; a glTF node that instances a mesh twice counts once.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

PLY_HEADER_LIMIT = 1 << 16
"""Bytes of a PLY file searched for ``end_header``."""
GLTF_JSON_LIMIT = 64 << 20
"""Largest glTF JSON part read to count faces; a bigger one gives no count."""
OBJ_CHUNK = 16 << 20
GLB_MAGIC = b"glTF"
GLTF_TRIANGLES = 4


def count_faces(path: str | Path) -> int | None:
    """Faces the file at ``path`` declares (see the module docstring); None when its format or
    header does not say (the full reader then reports what is wrong)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".ply":
            return _ply_faces(path)
        if suffix == ".obj":
            return _obj_faces(path)
        if suffix == ".glb":
            return _gltf_faces(_glb_json(path))
        if suffix == ".gltf":
            return _gltf_faces(_read_limited(path, GLTF_JSON_LIMIT))
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error, RecursionError):
        return None
    return None


def _read_limited(path: Path, limit: int) -> bytes:
    with open(path, "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError("too large to inspect")
    return data


def _ply_faces(path: Path) -> int | None:
    with open(path, "rb") as stream:
        head = stream.read(PLY_HEADER_LIMIT)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return None
    match = re.search(rb"^element\s+face\s+(\d+)\s*$", head[:end], re.MULTILINE)
    return int(match.group(1)) if match else 0


def _obj_faces(path: Path) -> int:
    """Lines that start with ``f`` and a blank (a face statement)."""
    count, previous = 0, b"\n"
    with open(path, "rb") as stream:
        while chunk := stream.read(OBJ_CHUNK):
            text = previous + chunk
            count += text.count(b"\nf ") + text.count(b"\nf\t")
            previous = text[-2:]  # a statement cut between chunks is counted in the next one
    return count


def _glb_json(path: Path) -> bytes:
    with open(path, "rb") as stream:
        magic, _version, _length = struct.unpack("<4sII", stream.read(12))
        chunk_length, chunk_type = struct.unpack("<II", stream.read(8))
        if magic != GLB_MAGIC or chunk_type != 0x4E4F534A or chunk_length > GLTF_JSON_LIMIT:
            raise ValueError("not a GLB with a JSON chunk")
        return stream.read(chunk_length)


def _gltf_faces(document: bytes) -> int | None:
    tree = json.loads(document)
    accessors = tree.get("accessors", [])
    total = 0
    for mesh in tree.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            if primitive.get("mode", GLTF_TRIANGLES) != GLTF_TRIANGLES:
                continue
            index = primitive.get("indices", primitive.get("attributes", {}).get("POSITION"))
            if index is None:
                continue
            total += int(accessors[index]["count"]) // 3
    return total
