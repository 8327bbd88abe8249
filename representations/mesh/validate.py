"""Checks that a mesh read from a user's file can stand for a solid: every problem is one
`MeshGeometryError` line that starts with the name the caller gives (a file name, or "it").

Sizes are judged relative to the mesh's own extent (a head in millimetres and one in metres are
both fine); only the shape counts: finite coordinates, face indices inside the vertex list, a spread
in all three directions, and triangles with area.
"""

from __future__ import annotations

import torch

from .core import Mesh
from .errors import MeshGeometryError

MIN_FACES = 4
"""Fewer triangles cannot close a volume (a tetrahedron has four)."""
FLAT_RATIO = 1e-3
"""A mesh whose thinnest principal spread is below this fraction of its widest lies in a plane (or on a line)."""
ZERO_AREA_RATIO = 1e-12
"""A triangle whose area is below this fraction of the squared extent counts as having none."""


def check_face_indices(faces: torch.Tensor, num_verts: int, name: str) -> None:
    """Every face index is a vertex of the mesh (0 <= index < num_verts)."""
    if faces.numel() == 0:
        return
    low, high = int(faces.min()), int(faces.max())
    if low < 0 or high >= num_verts:
        bad = low if low < 0 else high
        raise MeshGeometryError(f"{name} has a face that uses vertex index {bad}, but only {num_verts} vertices exist")


def check_solid(mesh: Mesh, name: str) -> None:
    """Raise `MeshGeometryError` unless ``mesh`` could enclose a volume (see the module docstring).

    Looks at the vertices the faces use; unreferenced ones do not matter."""
    if mesh.num_faces < MIN_FACES:
        raise MeshGeometryError(f"{name} has too few triangles ({mesh.num_faces}): a closed surface needs at least {MIN_FACES}")
    check_face_indices(mesh.faces, mesh.num_verts, name)
    verts = mesh.verts.detach().double()
    bad = int((~torch.isfinite(verts)).any(dim=1).sum())
    if bad:
        raise MeshGeometryError(f"{name} has non-finite coordinates (NaN or inf) at {bad} of its {mesh.num_verts} vertices")
    used = verts[_used_vertices(mesh.faces, mesh.num_verts)]
    extent = float((used.max(0).values - used.min(0).values).max())
    if extent == 0.0:
        raise MeshGeometryError(f"{name} has all its vertices at one point")
    if _thinnest_spread(used) < FLAT_RATIO:
        raise MeshGeometryError(f"{name} is flat (its vertices lie in a plane or on a line), so it cannot enclose a head")
    if not _any_face_with_area(verts, mesh.faces, ZERO_AREA_RATIO * extent**2):
        raise MeshGeometryError(f"{name} has only triangles of zero area ({mesh.num_faces} of them)")


def _used_vertices(faces: torch.Tensor, num_verts: int) -> torch.Tensor:
    used = torch.zeros(num_verts, dtype=torch.bool, device=faces.device)
    used[faces.reshape(-1)] = True
    return used


def _thinnest_spread(points: torch.Tensor) -> float:
    """Smallest over largest standard deviation along the principal axes of ``points`` (N, 3)."""
    centred = points - points.mean(0)
    variances = torch.linalg.eigvalsh(centred.T @ centred / len(points)).clamp_min(0.0)
    return float((variances[0] / variances[-1]).sqrt())


def _any_face_with_area(verts: torch.Tensor, faces: torch.Tensor, threshold: float, chunk: int = 1 << 16) -> bool:
    """Whether some face's area exceeds ``threshold`` (chunked: usually the first chunk answers)."""
    for part in faces.split(chunk):
        a, b, c = verts[part[:, 0]], verts[part[:, 1]], verts[part[:, 2]]
        if bool((0.5 * torch.linalg.cross(b - a, c - a, dim=-1).norm(dim=-1) > threshold).any()):
            return True
    return False
