"""MediaPipe's 478 refined FaceMesh landmarks as fixed points on the anny head's surface.

Each landmark is a triangle of `HeadModel.faces` and barycentric weights in it, so it follows every phenotype,
local change, facial action and pose of the head: `load_landmark_map().points(vertices, model.faces)`.
The map lives in `anny_landmarks.json` next to this file, written by `tools/derive_anny_landmarks.py` (see its
docstring for how it was derived and how to re-run it); tests/representations/test_parametric_landmarks.py
checks that the map's points, projected, land on the landmarks MediaPipe finds on renders of the head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

LANDMARK_MAP_PATH = Path(__file__).with_name("anny_landmarks.json")
FORMAT = "headfit-anny-landmarks-v1"
NUM_LANDMARKS = 478
NUM_HEAD_FACES = 9014
"""Triangles of the compact anny head (`HeadModel.faces`) the map indexes into."""


@dataclass(frozen=True)
class LandmarkMap:
    """`faces` (478,) long: triangle index into `HeadModel.faces`; `barycentrics` (478, 3) float32, rows
    non-negative and summing to 1 (weights of that triangle's three corners, in `HeadModel.faces` order)."""

    faces: torch.Tensor
    barycentrics: torch.Tensor

    def points(self, vertices: torch.Tensor, mesh_faces: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) (or (V, 3)) vertices -> (B, 478, 3) (or (478, 3)) landmark points; differentiable."""
        corners = mesh_faces.to(vertices.device).long()[self.faces.to(vertices.device)]  # (478, 3)
        weights = self.barycentrics.to(device=vertices.device, dtype=vertices.dtype)
        return (vertices[..., corners, :] * weights[:, :, None]).sum(-2)


def load_landmark_map(path: Path = LANDMARK_MAP_PATH) -> LandmarkMap:
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: landmark map format {data.get('format')!r}, expected {FORMAT!r}")
    faces = torch.tensor(data["faces"], dtype=torch.long)
    bary = torch.tensor(data["barycentrics"], dtype=torch.float32)
    if faces.shape != (NUM_LANDMARKS,) or bary.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"{path}: expected {NUM_LANDMARKS} landmarks, got faces {tuple(faces.shape)}, "
                         f"barycentrics {tuple(bary.shape)}")
    if faces.min() < 0 or faces.max() >= data.get("num_faces", NUM_HEAD_FACES):
        raise ValueError(f"{path}: triangle index out of range")
    bary = bary.clamp(min=0)
    return LandmarkMap(faces, bary / bary.sum(1, keepdim=True))
