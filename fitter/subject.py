"""`Subject`: the intake's `subject/` folder as every stage reads it. This module owns its file names.

`Subject.load(folder)` reads nothing yet: each file is read on first use and kept, so a stage that
only needs the camera reads only camera.json. Every accessor gives the crop's pixels at any side S:

  image(S)         (S, S, 3) float in [0, 1]: the crop area-averaged to S (cubic when enlarging);
                   at the side of image_512.png that file is used, which the intake made the same way
  mask(S)          (S, S) float in [0, 1]: mask.png, PIL bilinear
  landmarks_px(S)  (N, 2) the crop-pixel landmarks scaled by S / crop_size
  camera(S)        the reference camera with its intrinsics scaled to S

ArcFace fallback (`arcface_embedding`), the one place it is decided: identity.npz's `arcface` when
the intake made one; else it is computed once from the crop and its landmarks with the effective
`models.arcface` when one is set; else None, with one warning, and callers go without identity tokens.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from PIL import Image

from fitter.stages.intake.identity import arcface_embedding
from guidance.models import effective_models_config
from representations.cameras import Camera

if TYPE_CHECKING:
    from guidance.models.config import ModelsConfig

log = logging.getLogger("headfit")
SUBJECT_JSON = "subject.json"
"""The record, written last by the intake: it marks the folder complete."""
SUBJECT_FILES = ("image.png", "image_512.png", "mask.png", "landmarks.json", "camera.json", "identity.npz")
IMAGE, IMAGE_SMALL, MASK, LANDMARKS, CAMERA, IDENTITY = SUBJECT_FILES


@dataclass
class Subject:
    """The subject in `folder` (see the module docstring); build it with `Subject.load`."""

    folder: Path
    _arcface: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    _warned_arcface: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, folder: Path) -> "Subject":
        return cls(Path(folder))

    def path(self, name: str) -> Path:
        return self.folder / name

    # --- the record (subject.json) ------------------------------------------------------------
    @cached_property
    def record(self) -> dict[str, Any]:
        return json.loads(self.path(SUBJECT_JSON).read_text(encoding="utf-8"))

    @property
    def input_sha256(self) -> str:
        return str(self.record["input_sha256"])

    @property
    def files(self) -> dict[str, str]:
        """{file name: sha256} of the files in SUBJECT_FILES."""
        return dict(self.record["files"])

    @property
    def settings(self) -> dict[str, Any]:
        """The intake settings the subject was made with (`settings_fingerprint`)."""
        return dict(self.record["settings"])

    @property
    def prompt(self) -> Optional[str]:
        return self.record.get("prompt")

    @property
    def timings_s(self) -> dict[str, float]:
        return dict(self.record.get("timings_s", {}))

    # --- pixels ----------------------------------------------------------------------------------
    @cached_property
    def _crop(self) -> np.ndarray:
        return _read_rgb(self.path(IMAGE))

    @cached_property
    def _crop_small(self) -> Optional[np.ndarray]:
        return _read_rgb(self.path(IMAGE_SMALL)) if self.path(IMAGE_SMALL).is_file() else None

    @property
    def small_size(self) -> int:
        """Side of image_512.png (`intake.small_size`)."""
        assert self._crop_small is not None, f"{self.path(IMAGE_SMALL)} is missing"
        return int(self._crop_small.shape[0])

    def image_uint8(self, size: Optional[int] = None, resample: Optional[int] = None) -> np.ndarray:
        """(S, S, 3) uint8 RGB crop at side ``size`` (None: the crop's own side).

        Resized as the intake made `image_512.png` (area when shrinking, cubic when enlarging), or with
        the PIL filter ``resample`` (e.g. `Image.LANCZOS`, what the GAN inversion was tuned with)."""
        crop = self._crop
        if size is None or size == crop.shape[0]:
            return crop.copy()
        if resample is not None:
            return np.asarray(Image.fromarray(crop).resize((size, size), resample))
        if self._crop_small is not None and size == self._crop_small.shape[0]:
            return self._crop_small.copy()
        import cv2

        return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC)

    def image(self, size: Optional[int] = None) -> torch.Tensor:
        """(S, S, 3) float32 RGB crop in [0, 1] at side ``size`` (None: the crop's own side)."""
        return torch.from_numpy(self.image_uint8(size).astype(np.float32) / 255.0)

    @cached_property
    def _mask(self) -> Image.Image:
        with Image.open(self.path(MASK)) as image:
            return image.convert("L")

    def mask(self, size: Optional[int] = None, smooth: bool = False) -> torch.Tensor:
        """(S, S) float32 foreground in [0, 1] at side ``size`` (None: mask.png's own side).

        ``smooth``: resample in float rather than in 8 bits, so a resized edge keeps its fractional
        coverage (the geometry stage's mask loss wants it; the 8-bit resample is what the others use)."""
        image = self._mask
        if size is None or (size, size) == image.size:
            return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        if smooth:
            grey = Image.fromarray(np.asarray(image, dtype=np.float32) / 255.0, mode="F")
            return torch.from_numpy(np.array(grey.resize((size, size), Image.BILINEAR), dtype=np.float32))
        return torch.from_numpy(np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0)

    # --- landmarks (landmarks.json) ---------------------------------------------------------------
    @cached_property
    def _landmarks(self) -> dict[str, Any]:
        return json.loads(self.path(LANDMARKS).read_text(encoding="utf-8"))

    @property
    def crop_size(self) -> int:
        """Side of the crop the landmarks' pixel coordinates refer to."""
        return int(self._landmarks["crop_size"])

    @property
    def crop_from_input(self) -> np.ndarray:
        """(3, 3) map from the input photo's pixels to the crop's."""
        return np.asarray(self._landmarks["crop_from_input"], dtype=np.float64)

    def landmarks_px(self, size: Optional[int] = None) -> np.ndarray:
        """(N, 2) float64 landmark x, y in the pixels of a side-``size`` crop (None: the crop's own)."""
        points = np.asarray(self._landmarks["landmarks"], dtype=np.float64)[:, :2]
        return points if size is None else points * size / self.crop_size

    @property
    def landmarks_world(self) -> np.ndarray:
        """(N, 3) float64 landmarks in world units (on the reference camera's rays)."""
        return np.asarray(self._landmarks["world"], dtype=np.float64)

    # --- camera (camera.json) -------------------------------------------------------------------
    @cached_property
    def _camera(self) -> Camera:
        return Camera.from_dict(json.loads(self.path(CAMERA).read_text(encoding="utf-8")))

    def camera(self, size: Optional[int] = None) -> Camera:
        """The reference camera for a side-``size`` crop (None: the crop's own side)."""
        camera = self._camera
        return dataclasses.replace(camera, w2c=camera.w2c.copy()) if size is None else camera.resized(size)

    # --- identity (identity.npz) ------------------------------------------------------------------
    @cached_property
    def _identity(self) -> dict[str, np.ndarray]:
        with np.load(self.path(IDENTITY)) as data:
            return {name: np.asarray(data[name], dtype=np.float32) for name in data.files}

    @property
    def dlib_embedding(self) -> Optional[np.ndarray]:
        """(128,) float32 dlib descriptor of the photo's face (None: dlib found no face)."""
        stored = self._identity.get("dlib")
        return None if stored is None else stored.copy()

    def arcface_embedding(self, models: Optional[ModelsConfig] = None) -> Optional[np.ndarray]:
        """(512,) float32 L2-normalised ArcFace embedding, or None: the fallback in the module docstring.

        ``models``: the run's `cfg.models` (its effective `arcface` is used when the intake stored none)."""
        stored = self._identity.get("arcface")
        if stored is not None:
            return stored.copy()
        model = _arcface_model(models)
        if model is None:
            if not self._warned_arcface:
                log.warning("no ArcFace embedding: subject/%s has none and models.arcface is not set; "
                            "identity tokens are off", IDENTITY)
                self._warned_arcface = True
            return None
        if model not in self._arcface:
            log.info("computing the ArcFace embedding with %s (the intake ran without models.arcface)", model)
            self._arcface[model] = arcface_embedding(self._crop, self.landmarks_px(), model)
        return self._arcface[model].copy()


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _arcface_model(models: Optional[ModelsConfig]) -> Optional[str]:
    if models is None:
        return None

    return effective_models_config(models).arcface or None
