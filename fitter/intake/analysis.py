"""Everything the intake computes, in memory, before anything is written."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from fitter.config import Config
from fitter.errors import BadImageError
from fitter.intake.align import crop_transform, landmarks_in_crop
from fitter.intake.detection import Face, detect_faces
from fitter.intake.identity import arcface_embedding, dlib_embedding, landmark_face_box
from fitter.intake.loading import LoadedImage
from fitter.intake.masking import foreground_mask
from fitter.intake.pose import HeadPose, solve_head_pose, world_landmarks
from fitter.intake.warp import scale_of, warp_image

log = logging.getLogger("headfit")
UPSCALE_WARNING = 2.0
"""Warn when the crop enlarges the input by more than this (the result will look soft)."""


class Warnings(list):
    """Messages for subject.json that are also logged as they happen."""

    def add(self, message: str) -> None:
        log.warning(message)
        self.append(message)


@dataclass
class Analysis:
    face: Face
    face_index: int
    face_count: int
    crop_matrix: np.ndarray
    crop: np.ndarray
    crop_small: np.ndarray
    landmarks: np.ndarray
    world: np.ndarray
    pose: HeadPose
    mask: np.ndarray
    identity: dict[str, np.ndarray]
    warnings: Warnings
    timings: dict[str, float] = field(default_factory=dict)


def choose_face(faces: list[Face], cfg: Config, warnings: Warnings) -> int:
    ic = cfg.intake
    if not faces:
        raise BadImageError("no face found in the image (a clear, near-frontal portrait is needed)")
    if ic.face_index is not None:
        if ic.face_index >= len(faces):
            raise BadImageError(f"intake.face_index={ic.face_index} but only {len(faces)} face(s) were found (0 = largest)")
        return ic.face_index
    if len(faces) > 1:
        warnings.add(f"{len(faces)} faces found; using the largest (intake.face_index=N picks another, in size order)")
    return 0


def _check_size(face: Face, cfg: Config) -> None:
    if face.size < cfg.intake.min_face_px:
        raise BadImageError(f"the face is only {face.size:.0f} px across, smaller than intake.min_face_px={cfg.intake.min_face_px}; use a larger photo")


def _check_yaw(pose: HeadPose, cfg: Config) -> None:
    yaw = pose.angles()["yaw_deg"]
    if abs(yaw) > cfg.intake.max_yaw:
        raise BadImageError(f"the face is turned {abs(yaw):.0f} degrees from the camera (more than intake.max_yaw={cfg.intake.max_yaw:g}); use a more frontal photo")


def _identity(crop: np.ndarray, landmarks: np.ndarray, cfg: Config) -> dict[str, np.ndarray]:
    out = {"dlib": dlib_embedding(crop, landmark_face_box(landmarks))}
    if cfg.models.arcface:
        out["arcface"] = arcface_embedding(crop, landmarks, cfg.models.arcface)
    return out


def analyse(image: LoadedImage, cfg: Config, warnings: Warnings) -> Analysis:
    ic, t = cfg.intake, {}
    start = time.perf_counter()
    faces = detect_faces(image.rgb, ic.detection_confidence, ic.background)
    index = choose_face(faces, cfg, warnings)
    face = faces[index]
    _check_size(face, cfg)
    t["detect"] = time.perf_counter() - start

    start = time.perf_counter()
    matrix = crop_transform(face.points, ic.crop_size, ic.crop_scale)
    landmarks = landmarks_in_crop(face.points, matrix)
    pose = solve_head_pose(landmarks[:, :2], ic.crop_size)
    _check_yaw(pose, cfg)
    if scale_of(matrix) > UPSCALE_WARNING:
        warnings.add(f"low resolution: the face is {face.size:.0f} px across and is enlarged {scale_of(matrix):.1f}x for the {ic.crop_size} px crop")
    crop = warp_image(image.rgb, matrix, ic.crop_size, ic.background)
    crop_small = cv2.resize(crop, (ic.small_size, ic.small_size), interpolation=cv2.INTER_AREA)
    alpha = None if image.alpha is None else warp_image(image.alpha, matrix, ic.crop_size, 0.0)
    world = world_landmarks(landmarks, pose.camera)
    t["crop_pose"] = time.perf_counter() - start

    start = time.perf_counter()
    mask = foreground_mask(crop, landmarks, alpha, cfg)
    t["mask"] = time.perf_counter() - start
    start = time.perf_counter()
    identity = _identity(crop, landmarks, cfg)
    t["identity"] = time.perf_counter() - start
    return Analysis(face, index, len(faces), matrix, crop, crop_small, landmarks, world, pose, mask, identity, warnings, t)
