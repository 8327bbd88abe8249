"""Colour where the photo is silent, made from what it shows.

* `hairness`: per vertex of the sculpt, how much it is hair (or scalp): the fitted parametric head's scalp
  weight (`fitter/stages/init/hair.py`: 0 on the face, the ears and below the ear lobes) or the sculpt standing
  off that head's skin (hair volume, long hair hanging past the ears);
* `skin_sample`: the subject's own visible skin, from cheek and forehead patches of the photo: its median colour
  and its fine texture (the patches minus their blur);
* `hair_detail`: the hair's fine texture (strands) synthesised by image quilting from the window of the photo
  most filled with hair, laid out in a panorama of the head seen from its centre (columns: azimuth, rows: polar
  angle from the crown, so strands run down from the crown), at the photo's scale; texels read it back at their
  direction and add it to the smooth fill, which carries the colour (continuous with the hair the photo shows);
* `skin_detail`: the skin sample's fine texture laid on the surface by triplanar mapping at the photo's scale,
  continuous across UV seams (it depends on the 3D position only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from common.errors import UserError
from fitter.stages.init.hair import anny_regions, head_centre, scalp_weight, smoothstep

CHEEK_LANDMARKS = (50, 280, 151)
"""MediaPipe face-mesh points at the middle of the left cheek, the right cheek and the forehead."""
FACE_WIDTH_LANDMARKS = (234, 454)
"""MediaPipe points at the left and right edge of the face."""
HAIR_OFF_SKIN = (0.03, 0.08)
"""A vertex this far off the parametric skin (world units) starts to count as hair, and fully at the second."""
POLAR_MAX_DEG = 150.0
"""The hair panorama's rows run from the crown to this polar angle."""
EXEMPLAR_SIDE = 0.12
"""Side of the hair exemplar window, as a fraction of the photo's side."""
MIN_EXEMPLAR_FILL = 0.85
"""The exemplar window must be at least this much hair; else no hair synthesis (bald, or hair barely shown)."""


@dataclass
class SkinSample:
    colour: np.ndarray
    """(3,) median colour of the visible skin patches."""
    detail: np.ndarray
    """(P, P, 3) a patch's fine texture (patch minus its blur), zero mean."""
    world_per_pixel: float
    """World units one photo pixel covers at the face."""


def parametric_scalp(head_verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scalp weight (V,) of a head with anny's vertex order and its centre (3,) (`fitter/stages/init/hair.py`)."""
    regions = anny_regions()
    if len(head_verts) != len(regions["ear"]):
        raise UserError("texture: the prior head does not have anny's topology")
    return scalp_weight(head_verts, regions["ear"], regions["brow"]), head_centre(head_verts, regions["ear"])


def hairness(verts: np.ndarray, head_verts: np.ndarray, head_normals: np.ndarray, head_scalp: np.ndarray) -> np.ndarray:
    """(V,) in [0, 1] for the sculpt's vertices (V, 3): the nearest head vertices' scalp weight, or 1 where the
    sculpt stands off the head's skin (height over the nearest head vertex's tangent plane; head vertices and
    unit normals (H, 3)) by more than `HAIR_OFF_SKIN`."""
    distance, index = cKDTree(head_verts).query(verts, k=4)
    weight = 1.0 / np.maximum(distance, 1e-6)
    scalp = (head_scalp[index] * weight).sum(1) / weight.sum(1)
    nearest = index[:, 0]
    height = np.einsum("ij,ij->i", verts - head_verts[nearest], head_normals[nearest])
    low, high = HAIR_OFF_SKIN
    return np.maximum(scalp, smoothstep((height - low) / (high - low)))


def skin_sample(image: np.ndarray, landmarks_px: np.ndarray, depth: float, focal: float) -> SkinSample:
    """The visible skin of a photo (S, S, 3) in [0, 1]: patches of side 12 % of the face width around
    `CHEEK_LANDMARKS`; ``depth`` / ``focal`` give the world size of a pixel at the face."""
    width = float(np.linalg.norm(landmarks_px[FACE_WIDTH_LANDMARKS[0]] - landmarks_px[FACE_WIDTH_LANDMARKS[1]]))
    half = max(3, int(0.06 * width))
    patches = []
    for index in CHEEK_LANDMARKS:
        x, y = np.round(landmarks_px[index]).astype(int)
        patch = image[max(y - half, 0):y + half, max(x - half, 0):x + half]
        if patch.shape[0] == patch.shape[1] == 2 * half:
            patches.append(patch)
    if not patches:
        return SkinSample(np.median(image.reshape(-1, 3), axis=0), np.zeros((2, 2, 3)), depth / focal)
    colour = np.median(np.concatenate([p.reshape(-1, 3) for p in patches]), axis=0)
    flattest = min(patches, key=lambda p: float(p.std()))  # no eyebrow, glasses or shadow edge in it
    detail = flattest - ndimage.gaussian_filter(flattest, (half / 4, half / 4, 0), mode="reflect")
    detail = detail - detail.mean((0, 1))
    limit = 2.5 * float(np.abs(detail).mean()) + 1e-6  # pores and freckles, not an edge
    return SkinSample(colour, np.clip(detail, -limit, limit), depth / focal)


def skin_detail(points: np.ndarray, normals: np.ndarray, sample: SkinSample) -> np.ndarray:
    """(N, 3) the sample's fine texture at world points (N, 3) with normals (N, 3), triplanar, mirrored tiling."""
    size = sample.detail.shape[0]
    period = 2 * size
    weights = np.abs(normals) ** 4
    weights /= np.maximum(weights.sum(1, keepdims=True), 1e-12)
    out = np.zeros_like(points)
    for axis, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
        u = np.mod(points[:, a] / sample.world_per_pixel, period).astype(int)
        v = np.mod(points[:, b] / sample.world_per_pixel, period).astype(int)
        u, v = np.where(u < size, u, period - 1 - u), np.where(v < size, v, period - 1 - v)
        out += weights[:, axis:axis + 1] * sample.detail[v, u]
    return out


def panorama_coordinates(points: np.ndarray, centre: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 2) (row, column) in a (rows, cols) panorama of world points (N, 3) seen from ``centre`` (+y up,
    face +z): rows run over the polar angle from the crown to `POLAR_MAX_DEG`, columns over the azimuth."""
    d = points - centre
    azimuth = np.mod(np.arctan2(d[:, 0], d[:, 2]), 2 * np.pi)
    polar = np.arccos(np.clip(d[:, 1] / np.maximum(np.linalg.norm(d, axis=1), 1e-12), -1.0, 1.0))
    rows, cols = shape
    return np.stack([np.clip(polar / np.radians(POLAR_MAX_DEG), 0.0, 1.0) * (rows - 1), azimuth / (2 * np.pi) * cols], 1)


def hair_exemplar(image: np.ndarray, hair_pixels: np.ndarray, side: int) -> np.ndarray | None:
    """(side, side, 3) the window of the photo (S, S, 3) most filled with hair pixels (S, S) bool, None when no
    window is at least `MIN_EXEMPLAR_FILL` hair."""
    if min(hair_pixels.shape) <= side:
        return None
    fill = ndimage.uniform_filter(hair_pixels.astype(np.float64), side, mode="constant")
    half = side // 2
    fill[:half], fill[-half:], fill[:, :half], fill[:, -half:] = 0, 0, 0, 0
    row, col = np.unravel_index(int(np.argmax(fill)), fill.shape)
    if fill[row, col] < MIN_EXEMPLAR_FILL:
        return None
    return image[row - half:row - half + side, col - half:col - half + side]


def quilt(exemplar: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, patch: int) -> np.ndarray:
    """(rows, cols, 3) texture made of random ``patch``² windows of the exemplar (P, P, 3), overlapping by
    half and cross-faded with raised-cosine weights; it wraps around in columns (the azimuth)."""
    rows, cols = shape
    step = max(1, patch // 2)
    window = np.hanning(patch + 2)[1:-1]
    weight2d = np.outer(window, window)[..., None] + 1e-6
    total = np.zeros((rows + 2 * patch, cols + 2 * patch, 3))
    weight = np.zeros((rows + 2 * patch, cols + 2 * patch, 1))
    span = exemplar.shape[0] - patch
    for top in range(0, rows + patch, step):
        for left in range(0, cols + patch, step):
            y, x = rng.integers(0, span + 1, size=2)
            total[top:top + patch, left:left + patch] += weight2d * exemplar[y:y + patch, x:x + patch]
            weight[top:top + patch, left:left + patch] += weight2d
    out = (total / np.maximum(weight, 1e-12))[patch // 2:patch // 2 + rows, patch // 2:patch // 2 + cols + patch // 2]
    blend = np.linspace(0.0, 1.0, patch // 2)[None, :, None]  # the last columns fade into the first: no seam at the wrap
    out[:, :patch // 2] = out[:, :patch // 2] * blend + out[:, cols:cols + patch // 2] * (1.0 - blend)
    return out[:, :cols]


def hair_detail(exemplar: np.ndarray, world_per_pixel: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """(rows, cols, 3) zero-mean fine texture for the hair panorama at the photo's scale on a head of ``radius``:
    the exemplar quilted, minus its blur (the colour comes from the smooth fill), drawn
    out along the rows into strands."""
    cols = int(np.clip(2 * np.pi * radius / world_per_pixel, 64, 2048))
    rows = int(np.clip(np.radians(POLAR_MAX_DEG) * radius / world_per_pixel, 32, 1024))
    patch = max(8, exemplar.shape[0] // 2)
    texture = quilt(exemplar, (rows, cols), rng, patch)
    sigma = patch / 8
    detail = texture - ndimage.gaussian_filter(texture, (sigma, sigma, 0), mode="wrap")
    return ndimage.gaussian_filter(detail, (2 * sigma, 0, 0), mode="nearest")  # streaks along the strands, down the rows


def sample_panorama(panorama: np.ndarray, points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(N, 3) bilinear panorama colours at world points (N, 3), wrapping in azimuth."""
    coords = panorama_coordinates(points, centre, (panorama.shape[0], panorama.shape[1]))
    wrapped = np.concatenate([panorama, panorama[:, :1]], 1)
    return np.stack([ndimage.map_coordinates(wrapped[..., k], coords.T, order=1, mode="nearest") for k in range(3)], 1)
