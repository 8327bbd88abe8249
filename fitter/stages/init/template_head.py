"""An analytic head-shaped SDF (negative inside) in the project's world frame.

Smooth union of ellipsoids (cranium, face/jaw, nose) and a capsule (neck), sized for a head whose
pupils are 0.5 world units apart with the head centre near the origin (representations/cameras.py).
`fit_to_landmarks` scales it per axis to a subject's 3D landmarks and slides it so the face surface
passes through them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

# MediaPipe FaceMesh indices used to measure a face.
CHEEK_RIGHT, CHEEK_LEFT, FOREHEAD, CHIN, NOSE_TIP = 234, 454, 10, 152, 1
FACE_FRONT = (1, 4, 5, 195, 197, 6, 168, 8, 9, 151, 10, 152, 175, 199, 200, 18, 17, 0, 13, 14, 33, 263, 133, 362, 61, 291)


@dataclass
class Ellipsoid:
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]


@dataclass
class TemplateHead:
    cranium: Ellipsoid = field(default_factory=lambda: Ellipsoid((0.0, 0.2, -0.08), (0.6, 0.68, 0.75)))
    face: Ellipsoid = field(default_factory=lambda: Ellipsoid((0.0, -0.4, 0.2), (0.46, 0.58, 0.5)))
    nose: Ellipsoid = field(default_factory=lambda: Ellipsoid((0.0, -0.28, 0.66), (0.07, 0.17, 0.1)))
    neck_top: tuple[float, float, float] = (0.0, -0.5, -0.15)
    neck_bottom: tuple[float, float, float] = (0.0, -1.6, -0.15)
    neck_radius: float = 0.36
    neck_cut_y: float = -1.15
    """The neck ends in a flat cut here, so the head is closed inside the fitting box."""
    blend: float = 0.12
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TemplateHead":
        d = dict(d)
        for key in ("cranium", "face", "nose"):
            d[key] = Ellipsoid(tuple(d[key]["centre"]), tuple(d[key]["radii"]))
        for key in ("neck_top", "neck_bottom", "scale", "offset"):
            d[key] = tuple(d[key])
        return cls(**d)

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance (approximate away from the surface) at world points (..., 3)."""
        scale = points.new_tensor(self.scale)
        local = (points - points.new_tensor(self.offset)) / scale
        d = _ellipsoid(local, self.cranium)
        d = smooth_min(d, _ellipsoid(local, self.face), self.blend)
        d = smooth_min(d, _ellipsoid(local, self.nose), 0.5 * self.blend)
        d = smooth_min(d, _capsule(local, self.neck_top, self.neck_bottom, self.neck_radius), self.blend)
        d = torch.maximum(d, self.neck_cut_y - local[..., 1])
        return d * min(self.scale)


def _ellipsoid(p: torch.Tensor, e: Ellipsoid) -> torch.Tensor:
    """Distance bound for an ellipsoid (exact on the surface, scaled by the smallest radius)."""
    q = (p - p.new_tensor(e.centre)) / p.new_tensor(e.radii)
    return (q.norm(dim=-1) - 1.0) * min(e.radii)


def _capsule(p: torch.Tensor, a: tuple, b: tuple, radius: float) -> torch.Tensor:
    a_t, b_t = p.new_tensor(a), p.new_tensor(b)
    ab = b_t - a_t
    t = ((p - a_t) @ ab / (ab @ ab)).clamp(0.0, 1.0)
    return (p - (a_t + t[..., None] * ab)).norm(dim=-1) - radius


def smooth_min(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return torch.lerp(b, a, h) - k * h * (1.0 - h)


def fit_to_landmarks(world_landmarks: np.ndarray, template: TemplateHead | None = None) -> TemplateHead:
    """Scale the template per axis to a face's 3D landmarks (478, 3) and move it onto them."""
    t = template or TemplateHead()
    ref = _canonical_face_size()
    lm = world_landmarks
    width = np.linalg.norm(lm[CHEEK_LEFT] - lm[CHEEK_RIGHT])
    height = np.linalg.norm(lm[FOREHEAD] - lm[CHIN])
    sx = float(np.clip(width / ref[0], 0.75, 1.35))
    sy = float(np.clip(height / ref[1], 0.75, 1.35))
    sz = float(np.sqrt(sx * sy))
    fitted = TemplateHead.from_dict({**t.to_dict(), "scale": (sx, sy, sz), "offset": (0.0, 0.0, 0.0)})
    fitted.offset = tuple(float(v) for v in _offset_onto(fitted, lm))
    return fitted


def _canonical_face_size() -> tuple[float, float]:
    """Cheek-to-cheek width and forehead-to-chin height the template was sized for."""
    return 1.12, 1.35


def _offset_onto(t: TemplateHead, lm: np.ndarray) -> np.ndarray:
    """Translation that puts the face-front landmarks on the template surface (least squares, x kept 0)."""
    pts = torch.as_tensor(lm[list(FACE_FRONT)], dtype=torch.float64)
    offset = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([offset], lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        shifted = TemplateHead.from_dict({**t.to_dict(), "offset": (0.0, 0.0, 0.0)})
        d = shifted.sdf(pts - offset * offset.new_tensor([0.0, 1.0, 1.0]))
        loss = (d**2).mean()
        loss.backward()
        opt.step()
    out = offset.detach().numpy() * np.array([0.0, 1.0, 1.0])
    return out
