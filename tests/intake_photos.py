"""Test photos for the intake, from packages the project installs (skimage, matplotlib, insightface):
real faces (and variants: mirrored, rotated, shrunk, occluded) and face-like non-faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import insightface
import numpy as np
from matplotlib import cbook
from PIL import Image
from skimage import data

INSIGHTFACE_IMAGES = Path(insightface.__file__).parent / "data" / "images"
T1_FACES = {"t1_face0": (90, 330), "t1_face1": (345, 190), "t1_face3": (800, 330)}
"""Centres of three of the six faces in insightface's t1.jpg (1280x886): yaw about 6, -37, -23 degrees."""


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def rotated(rgb: np.ndarray, degrees: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def scaled(rgb: np.ndarray, factor: float) -> np.ndarray:
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))


def grace_hopper() -> np.ndarray:
    return load_rgb(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def tom_hanks() -> np.ndarray:
    """insightface's 112x112 aligned face, enlarged 2x (the intake needs a 128 px short side)."""
    return scaled(load_rgb(INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png"), 2.0)


def t1_face(name: str) -> np.ndarray:
    x, y = T1_FACES[name]
    group = load_rgb(INSIGHTFACE_IMAGES / "t1.jpg")
    return np.ascontiguousarray(group[max(0, y - 150) : y + 180, max(0, x - 170) : x + 160])


def with_sunglasses() -> np.ndarray:
    out = data.astronaut().copy()
    for centre in ((203, 118), (247, 118)):
        cv2.ellipse(out, centre, (20, 12), 0, 0, 360, (10, 10, 10), -1)
    cv2.line(out, (223, 116), (227, 116), (10, 10, 10), 3)
    return out


def with_surgical_mask() -> np.ndarray:
    out = data.astronaut().copy()
    out[135:180, 180:270] = cv2.resize(load_rgb(INSIGHTFACE_IMAGES / "mask_blue.jpg"), (90, 45))
    return out


def line_drawing() -> np.ndarray:
    """The astronaut as black edges on white."""
    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    return np.repeat((255 - cv2.Canny(grey, 60, 150))[:, :, None], 3, axis=2)


REAL_FACES = {
    "astronaut": data.astronaut,
    "astronaut_mirrored": lambda: data.astronaut()[:, ::-1].copy(),
    "astronaut_rotated_20": lambda: rotated(data.astronaut(), 20),
    "astronaut_face_71px": lambda: scaled(data.astronaut(), 0.65),
    "grace_hopper": grace_hopper,
    "grace_hopper_face_71px": lambda: scaled(grace_hopper(), 0.35),
    "tom_hanks_yaw_23": tom_hanks,
    "t1_face0": lambda: t1_face("t1_face0"),
    "t1_face1_yaw_37": lambda: t1_face("t1_face1"),
    "t1_face1_mirrored_rotated": lambda: rotated(t1_face("t1_face1")[:, ::-1].copy(), 15),
    "t1_face3_face_68px": lambda: scaled(t1_face("t1_face3"), 0.6),
}
OCCLUDED_FACES = {"sunglasses": with_sunglasses, "surgical_mask": with_surgical_mask}
NOT_HUMAN = {
    "cat": data.chelsea,
    "cat_mirrored": lambda: data.chelsea()[:, ::-1].copy(),
    "colorwheel": data.colorwheel,
}


def save(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb).save(path)
    return path
