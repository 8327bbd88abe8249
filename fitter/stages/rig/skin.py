"""Which parametric-head vertices take the wrap's data term, and the landmark pins.

* Data weight (V,) in [0, 1]: the skin part only (anny's largest connected part; the eyeballs, teeth and tongue
  follow it, see `representations/parametric/wrap.py`); the face and the ears fully; the scalp only where the
  sculpt there is skin, not hair: a skin vertex lying deeper inside the sculpt than `hair_min_thickness` of the
  head's height is under hair and takes no data term (a smooth ramp from half that depth).
* Pins: MediaPipe's 468 face landmarks as points on the head (the landmark map), each held at the point where the
  reference camera's ray through the photo's landmark meets the sculpt, applied to the corner of its triangle with
  the largest barycentric weight as an offset; only where the ray hits the sculpt near the head's own point and the
  head there faces the camera.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from fitter.stages.init.hair import anny_regions, scalp_weight, smoothstep
from fitter.stages.init.parametric import closed_parts
from representations.cameras import Camera
from representations.dmtet import mesh_signed_distance
from representations.mesh import Mesh, mesh_to_trimesh, vertex_normals
from representations.parametric.landmarks import LandmarkMap
from representations.render import render

FACE_LANDMARKS = 468
"""MediaPipe's mesh landmarks (the 10 iris points after them sit on anny's eyeballs, which the wrap leaves be)."""
MIN_FACING = 0.3
"""A landmark is pinned only where the head's normal · direction to the camera is at least this."""


def skin_part(mesh: Mesh) -> np.ndarray:
    """(V,) bool: the vertices of the mesh's largest connected part (anny's skin)."""
    _, ids = closed_parts(mesh)
    skin = np.zeros(mesh.num_verts, dtype=bool)
    skin[ids[0][ids[0] >= 0]] = True
    return skin


def data_weights(head: Mesh, sculpt: trimesh.Trimesh, height: float, hair_min_thickness: float, up: np.ndarray,
                 floor: float) -> np.ndarray:
    """(V,) the data weight of each head vertex (module docstring); `head` in the world frame; vertices lower than
    `floor` along `up` take none (where the sculpt ends)."""
    verts = head.verts.double().numpy()
    skin = skin_part(head)
    regions = anny_regions()
    depth = -mesh_signed_distance(sculpt, verts)  # > 0: inside the sculpt
    limit = hair_min_thickness * height
    under_hair = smoothstep((depth - 0.5 * limit) / (0.5 * limit))
    scalp = scalp_weight(verts, regions["ear"], regions["brow"])
    weight = np.maximum(1.0 - scalp * under_hair, regions["ear"])
    return np.where(skin & (verts @ up > floor), np.clip(weight, 0.0, 1.0), 0.0)


def landmark_pins(head: Mesh, faces_map: LandmarkMap, sculpt: trimesh.Trimesh, camera: Camera, landmarks_px: np.ndarray,
                  max_distance: float, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices (P,), positions (P, 3)) pinned vertices and where they go; `landmarks_px` (478, ≥2) in the pixels of
    `camera`."""
    verts = head.verts.double()
    points = faces_map.points(verts, head.faces)[:FACE_LANDMARKS].numpy()
    corners = head.faces.long()[faces_map.faces[:FACE_LANDMARKS]].numpy()
    vertex = corners[np.arange(FACE_LANDMARKS), faces_map.barycentrics[:FACE_LANDMARKS].argmax(1).numpy()]
    origin = np.asarray(camera.position, dtype=np.float64)  # rays from the camera through the landmarks
    far = camera.unproject(np.asarray(landmarks_px[:FACE_LANDMARKS, :2], dtype=np.float64), np.ones(FACE_LANDMARKS))
    directions = far - origin
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    normals = vertex_normals(verts, head.faces.long()).numpy()[vertex]
    facing = np.einsum("ij,ij->i", normals, -directions) >= MIN_FACING
    hits = first_hits(sculpt, camera, np.asarray(landmarks_px[:FACE_LANDMARKS, :2], dtype=np.float64))
    offset = hits - points
    ok = facing & np.isfinite(hits).all(1) & (np.linalg.norm(offset, axis=1) < max_distance) & (weights[vertex] > 0)
    if not ok.any():
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    index, inverse = np.unique(vertex[ok], return_inverse=True)
    mean_offset = np.zeros((len(index), 3))
    np.add.at(mean_offset, inverse, offset[ok])
    mean_offset /= np.bincount(inverse)[:, None]
    return index, verts.numpy()[index] + mean_offset


def first_hits(mesh: trimesh.Trimesh, camera: Camera, pixels: np.ndarray) -> np.ndarray:
    """(N, 3) the surface point each pixel (N, 2) of `camera` shows (the rasterizer's depth; NaN on the
    background or outside the image)."""
    depth = render(torch.as_tensor(mesh.vertices, dtype=torch.float32), torch.as_tensor(mesh.faces), camera,
                   ("depth",))["depth"][..., 0].numpy()
    col = np.clip(np.floor(pixels[:, 0]).astype(int), 0, camera.width - 1)
    row = np.clip(np.floor(pixels[:, 1]).astype(int), 0, camera.height - 1)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < camera.width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < camera.height)
    d = np.where(inside, depth[row, col], 0.0)
    hits = camera.unproject(pixels, d)
    hits[~(inside & (d > 0))] = np.nan
    return hits


def as_trimesh(mesh: Mesh) -> trimesh.Trimesh:
    return mesh_to_trimesh(Mesh(mesh.verts.detach().double().cpu(), mesh.faces.cpu()))


def to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)
