"""Simple meshes for tests, defaults and debugging."""

from __future__ import annotations

import torch
import trimesh

from .core import Mesh


def icosphere(subdivisions: int = 3, radius: float = 1.0, device: torch.device | str = "cpu") -> Mesh:
    """A closed sphere with outward (CCW) faces; 20·4^subdivisions faces."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(
        verts=torch.tensor(sphere.vertices, dtype=torch.float32, device=device),
        faces=torch.tensor(sphere.faces, dtype=torch.long, device=device),
    )


def grid(n: int = 8, size: float = 2.0, device: torch.device | str = "cpu") -> Mesh:
    """A flat (n+1)×(n+1)-vertex square in the z = 0 plane, centred at the origin, normals +z,
    each cell split along the same diagonal; uv = the square's own (x, y) mapped to [0, 1]²."""
    steps = torch.linspace(0.0, 1.0, n + 1)
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    uv = torch.stack([u.reshape(-1), v.reshape(-1)], dim=1)
    verts = torch.cat([(uv - 0.5) * size, torch.zeros(uv.shape[0], 1)], dim=1)
    corner = (torch.arange(n).unsqueeze(1) * (n + 1) + torch.arange(n).unsqueeze(0)).reshape(-1)
    a, b, c, d = corner, corner + 1, corner + n + 2, corner + n + 1
    faces = torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])
    return Mesh(verts=verts.to(device), faces=faces.to(device), uv=uv.to(device), uv_faces=faces.clone().to(device))
