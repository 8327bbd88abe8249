"""Low-order lighting from the face, and the albedo texture with it divided out.

The photo's face skin is taken to have one albedo a (per RGB channel), lit by distant light whose
irradiance is smooth over normals: colour_c(n) ≈ a_c · E_c(n) = Σ_k L_ck Y_k(n), with Y the nine real
spherical harmonics of order ≤ 2 (Ramamoorthi & Hanrahan 2001: they give a Lambertian surface's irradiance
under any distant light to within a few percent). L (3, 9) is fitted by least squares on face skin pixels of the reference photo with
their normals from the fitted mesh; eyes, brows and lips are left out, and what still does not fit
(nostrils, stubble, specular highlights, hair over the forehead) is rejected as outliers.
The albedo texture is the lit texture divided by the shading normalised to mean 1 over the face: it keeps
the photo's overall skin colour and loses only the directional light (for relighting). The light is divided
out only at normals near those the face showed, fading out beyond them (the top and back of the head, whose
colours come from fills and synthesised hair), and never by more than the face's own range of shading.
Normals are world-space unit vectors throughout (the frame of `TexelSurface.normal` and `render`'s
"normal" pass).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from fitter.stages.intake.masking import convex_hull_mask
from fitter.stages.intake.meshpoints import LEFT_EYE_CONTOUR, NUM_MESH, RIGHT_EYE_CONTOUR
from fitter.stages.texture.layers import SubjectPhoto
from fitter.stages.texture.projection import smoothed_normals
from representations.cameras import Camera
from representations.mesh import Mesh
from representations.render import render
from representations.render.texel import dilate_into_gutters, texel_surface

log = logging.getLogger("headfit")
SH_C0, SH_C1, SH_C2, SH_C3, SH_C4 = 0.282095, 0.488603, 1.092548, 0.315392, 0.546274
"""Normalisation constants of the real SH basis (bands 0, 1 and the three kinds of band-2 function)."""
ORDER2 = slice(4, 9)
"""The band-2 coefficients (the ridge term applies to these only)."""

# MediaPipe FaceMesh landmark groups that are not skin (sides named from the subject's point of view).
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
NOT_SKIN = (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR, RIGHT_BROW, LEFT_BROW, LIPS_OUTER)

MAX_SAMPLES = 20_000
MIN_SAMPLES = 200
"""Fewer face skin pixels than this: no lighting is estimated (the stage writes no albedo)."""
TRUST_FULL_DEG, TRUST_ZERO_DEG = 10.0, 40.0
"""The light divided out in full within this angle of some face normal, not at all beyond the second (`reference_trust`)."""
TRUST_POINTS = 4000
"""At most this many face normals define the trusted directions."""
MIN_FACING = 0.3
"""Face pixels whose normal faces the camera less than this (cosine) are left out (grazing: mixed colours)."""


@dataclass
class FaceSamples:
    """Face skin pixels of the photo: normals (N, 3) world-space unit, colours (N, 3) in [0, 1], pixels (N, 2) x, y."""

    normals: Tensor
    colours: Tensor
    pixels: np.ndarray

    def __len__(self) -> int:
        return int(self.normals.shape[0])


@dataclass
class LightingFit:
    """Fitted SH lighting sh (3, 9) (albedo included), the weighted RMS residual of the inliers, and inliers (N,) bool."""

    sh: Tensor
    rmse: float
    inliers: Tensor


def sh_basis(normals: Tensor) -> Tensor:
    """The nine real SH basis functions of order ≤ 2 at unit normals (..., 3): (..., 9), orthonormal on the sphere."""
    x, y, z = normals.unbind(-1)
    return torch.stack([
        torch.full_like(x, SH_C0),
        SH_C1 * y, SH_C1 * z, SH_C1 * x,
        SH_C2 * x * y, SH_C2 * y * z, SH_C3 * (3.0 * z * z - 1.0), SH_C2 * x * z, SH_C4 * (x * x - y * y),
    ], dim=-1)


def shading(normals: Tensor, lighting: Tensor) -> Tensor:
    """Colour (..., 3) that lighting (3, 9) gives unit normals (..., 3) (albedo times irradiance)."""
    return sh_basis(normals.to(lighting.dtype)) @ lighting.T


def _solve(basis: Tensor, colours: Tensor, weights: Tensor, ridge: float) -> Tensor:
    """Weighted ridge least squares: (3, 9) from basis (N, 9), colours (N, 3), weights (N,)."""
    gram = basis.T @ (basis * weights[:, None]) / weights.sum()
    rhs = basis.T @ (colours * weights[:, None]) / weights.sum()
    penalty = torch.zeros(9, dtype=basis.dtype)
    penalty[ORDER2] = ridge
    return torch.linalg.solve(gram + torch.diag(penalty), rhs).T


def _outliers(residual: Tensor, usable: Tensor, threshold: float, floor: float) -> Tensor:
    """(N,) samples whose residual (N, 3) exceeds ``threshold`` robust sigmas in any channel. The sigma is 1.4826 times
    the median absolute deviation over the ``usable`` (N,) samples (unbiased by up to half of them being outliers),
    at least ``floor``."""
    r = residual[usable]
    sigma = (1.4826 * (r - r.median(dim=0).values).abs().median(dim=0).values).clamp_min(floor)
    return (residual.abs() > threshold * sigma).any(dim=-1)


def fit_lighting(normals: Tensor, colours: Tensor, weights: Tensor | None = None, *, ridge: float = 1e-3,
                 rounds: int = 2, threshold: float = 2.5, sigma_floor: float = 0.005) -> LightingFit:
    """Fit colour_c ≈ Σ_k L_ck Y_k(n) to samples: normals (N, 3) unit, colours (N, 3), weights (N,) (None: equal).

    ``ridge`` (added to the band-2 diagonal of the Gram matrix normalised by the total weight, whose diagonal
    is the weighted mean of Y_k², ~1/(4π) ≈ 0.08) damps the band-2 coefficients, which few or narrowly spread
    normals leave poorly determined; ``rounds`` of outlier rejection drop samples off by more than
    ``threshold`` robust sigmas (eyes, brows, lips, highlights) and refit. At least half the samples are kept.
    """
    basis = sh_basis(normals.double())
    colours = colours.double()
    weights = torch.ones(len(basis), dtype=torch.float64) if weights is None else weights.double().clamp_min(0.0)
    usable = inliers = weights > 0
    sh = _solve(basis[inliers], colours[inliers], weights[inliers], ridge)
    for _ in range(rounds):
        keep = usable & ~_outliers(colours - basis @ sh.T, usable, threshold, sigma_floor)
        if keep.sum() < max(9, int(usable.sum()) // 2) or torch.equal(keep, inliers):
            break
        inliers = keep
        sh = _solve(basis[inliers], colours[inliers], weights[inliers], ridge)
    residual = (colours - basis @ sh.T)[inliers]
    w = weights[inliers]
    rmse = float(((residual**2).mean(dim=-1) * w).sum() / w.sum()) ** 0.5
    return LightingFit(sh.float(), rmse, inliers)


def estimate_lighting(normals: Tensor, colours: Tensor, weights: Tensor | None = None) -> Tensor:
    """SH lighting (3, 9) from samples: normals (N, 3) unit, colours (N, 3), weights (N,) or None (`fit_lighting`)."""
    return fit_lighting(normals, colours, weights).sh


def luminance(rgb: Tensor) -> Tensor:
    """(...,) Rec. 601 luma of (..., 3)."""
    return rgb @ rgb.new_tensor([0.299, 0.587, 0.114])


def relative_shading(normals: Tensor, lighting: Tensor, reference: Tensor, floor: float = 0.5, ceiling: float = 1.6) -> Tensor:
    """Shading (..., 3) of unit normals (..., 3): the luminance of the SH shading, divided by its mean over the
    reference normals (M, 3) (the face) and the same for all three channels (a per-channel divisor turns small
    errors of the fit into colour casts: blue cheeks), clamped to the face's own range (its 1st to 99th percentile)
    and to [``floor``, ``ceiling``]: the light is never extrapolated beyond what the face showed, and no texel is
    brightened more than 1 / floor or darkened more than 1 / ceiling."""
    face = luminance(shading(reference, lighting))
    mean = face.mean().clamp_min(1e-6)
    face = face / mean
    low = float(torch.quantile(face, 0.01).clamp(floor, ceiling))
    high = float(torch.quantile(face, 0.99).clamp(low, ceiling))
    ratio = (luminance(shading(normals, lighting)) / mean).clamp(low, high)
    return ratio[..., None].expand(*ratio.shape, 3)


def reference_trust(normals: Tensor, reference: Tensor, full_deg: float = TRUST_FULL_DEG, zero_deg: float = TRUST_ZERO_DEG) -> Tensor:
    """(...,) how far the fitted light holds at unit normals (..., 3): 1 within ``full_deg`` of some reference (face)
    normal (M, 3), fading smoothly to 0 at ``zero_deg`` (the top and back of the head, under the chin)."""
    tree = cKDTree(reference.detach().double().cpu().numpy()[:: max(1, len(reference) // TRUST_POINTS)])
    chord, _ = tree.query(normals.detach().reshape(-1, 3).double().cpu().numpy())
    angle = np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)))
    x = np.clip((zero_deg - angle) / (zero_deg - full_deg), 0.0, 1.0)
    return torch.from_numpy(x * x * (3.0 - 2.0 * x)).reshape(normals.shape[:-1]).to(normals)


def albedo_texture(texture: Tensor, normals: Tensor, valid: Tensor, lighting: Tensor, reference: Tensor | None = None,
                   floor: float = 0.5) -> Tensor:
    """The texture (T, T, 3) with the lighting (3, 9) divided out: texture / `relative_shading` at the texel normals
    (T, T, 3), clipped to [0, 1]. ``reference`` (M, 3): the face's normals, which define shading 1; away from them
    (`reference_trust`) the divisor fades to 1: colour there came from elsewhere (fills, synthesised hair) or saw a
    light the fit cannot tell. None: every valid texel's normal, trusted everywhere. Texels outside ``valid`` (T, T)
    or without a usable normal keep their colour, then the UV gutters take the nearest valid texel's albedo."""
    normals = normals.to(texture.dtype)
    usable = valid & (normals.norm(dim=-1) > 0.5) & torch.isfinite(normals).all(dim=-1)
    if not usable.any():
        return texture.clone()
    n = normals[usable]
    ratio = relative_shading(n, lighting.to(texture.dtype), n if reference is None else reference.to(texture.dtype), floor)
    if reference is not None:
        ratio = 1.0 + (ratio - 1.0) * reference_trust(n, reference)[:, None]
    albedo = texture.clone()
    albedo[usable] = (texture[usable] / ratio).clamp(0.0, 1.0)
    return dilate_into_gutters(albedo, valid)


def face_skin_mask(mask: Tensor, landmarks_px: np.ndarray) -> np.ndarray:
    """(S, S) bool: inside the photo's mask (S, S) and the face mesh landmarks' (N, 2) convex hull shrunk by 3 % of
    the face's size, outside the eyes, brows and lips (their landmark hulls grown by 2 %)."""
    side = mask.shape[0]
    points = landmarks_px[:NUM_MESH].astype(np.float32)
    face_size = float(np.ptp(points, axis=0).max())
    face = cv2.erode(convex_hull_mask(points, (side, side)), _disc(0.03 * face_size))
    parts = np.max([convex_hull_mask(points[list(group)], (side, side)) for group in NOT_SKIN], axis=0)
    parts = cv2.dilate(parts, _disc(0.02 * face_size))
    return (mask.cpu().numpy() > 0.5) & (face > 0) & (parts == 0)


def _disc(radius: float) -> np.ndarray:
    size = 2 * max(1, int(round(radius))) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def face_samples(image: Tensor, mask: Tensor, camera: Camera, landmarks_px: np.ndarray, mesh: Mesh, normals: Tensor,
                 max_samples: int = MAX_SAMPLES, seed: int = 0) -> FaceSamples:
    """Face skin pixels of the photo image (S, S, 3) with mask (S, S) at the reference camera, with the world normals
    of the mesh rendered there (vertex normals (V, 3), the ones the texels use), at most ``max_samples`` of them."""
    with torch.no_grad():
        passes = render(mesh.verts.float(), mesh.faces, camera, ("normal", "normal_cam", "triangle_id"),
                        normals=normals.float(), backend="torch")
    facing = (passes["triangle_id"] >= 0) & (passes["normal_cam"][..., 2] > MIN_FACING)
    rows, cols = np.nonzero(face_skin_mask(mask, landmarks_px) & facing.cpu().numpy())
    if len(rows) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_samples, replace=False))
        rows, cols = rows[pick], cols[pick]
    index_r, index_c = torch.from_numpy(rows), torch.from_numpy(cols)
    return FaceSamples(passes["normal"][index_r, index_c].float(), image[index_r, index_c].float(),
                       np.stack([cols, rows], axis=1).astype(np.float64))


def albedo_from_photo(mesh: Mesh, subject: SubjectPhoto, texture: Tensor, seed: int = 0) -> tuple[Tensor | None, dict]:
    """The albedo texture (T, T, 3) of the UV-mapped mesh's lit texture (T, T, 3), and texture.json's lighting
    entries; (None, entries) when the photo shows too little face skin to fit the lighting."""
    normals = smoothed_normals(mesh)
    samples = face_samples(subject.image, subject.mask, subject.camera, subject.landmarks_px, mesh, normals, seed=seed)
    stats: dict = {"lighting_sh": None, "lighting_face_samples": len(samples), "lighting_fit_rmse": None}
    if len(samples) < MIN_SAMPLES:
        log.warning("texture: too little face skin in the photo (%d pixels) to estimate its lighting; no albedo.png", len(samples))
        return None, stats
    fit = fit_lighting(samples.normals, samples.colours)
    assert mesh.uv is not None, "the albedo needs the UV-unwrapped mesh"
    surface = texel_surface(mesh.verts.float(), mesh.faces, mesh.uv.float(), mesh.uv_faces, int(texture.shape[0]), normals=normals)
    albedo = albedo_texture(texture.float(), surface.normal, surface.valid, fit.sh, reference=samples.normals[fit.inliers])
    stats.update(lighting_sh=[[round(float(v), 6) for v in row] for row in fit.sh], lighting_fit_rmse=round(fit.rmse, 6),
                 lighting_inlier_share=round(float(fit.inliers.float().mean()), 4))
    return albedo, stats
