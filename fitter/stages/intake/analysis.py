"""Everything the intake computes, in memory, before anything is written."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from common.errors import BadImageError
from fitter.config import Config
from fitter.stages.intake.align import crop_transform, landmarks_in_crop
from fitter.stages.intake.detection import Face, detect_faces
from fitter.stages.intake.face_check import FaceEvidence, check_human_face, occlusion_note
from fitter.stages.intake.identity import arcface_embedding, dlib_embedding, landmark_face_box
from fitter.stages.intake.loading import LoadedImage
from fitter.stages.intake.masking import foreground_mask
from fitter.stages.intake.pose import HeadPose, solve_head_pose, world_landmarks
from fitter.stages.intake.warp import scale_of, warp_image

log = logging.getLogger("headfit")
UPSCALE_WARNING = 2.0
"""Warn when the crop enlarges the input by more than this (the result will look soft)."""
PNP_WARNING_PX = 22.0
"""Warn when the RMS PnP error of the landmarks against the canonical head exceeds this, in pixels
of a 1024 px crop at crop_scale 1 (scaled with the face's size in the crop). The canonical layout is derived from the astronaut
photo, so her error (3.8 px) is a self-fit; other real people measured 9-20.6 px (Tom Hanks' smirk
at 23 degrees yaw 20.6), the cat 24-29 px, a colour wheel 21 px (see face_check.py)."""


class Warnings(list):
    """Messages for subject.json that are also logged as they happen."""

    def add(self, message: str) -> None:
        log.warning(message)
        self.append(message)


@dataclass
class Analysis:
    face: Face
    evidence: FaceEvidence
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


def _pnp_note(pose: HeadPose, crop_size: int, crop_scale: float) -> str | None:
    limit = PNP_WARNING_PX * crop_size / 1024 / crop_scale  # the face's size in the crop
    if pose.rms_px <= limit:
        return None
    return (
        f"the face landmarks fit a human head poorly: PnP reprojection error {pose.rms_px:.1f} px in the {crop_size} px crop "
        f"(warning above {limit:.0f} px; real portraits measure 4-21 px): a strong expression, a covered face, a drawing "
        "or a face-like object; the head pose and the fitted shape may be off"
    )


def _quality_notes(face: Face, evidence: FaceEvidence, pose: HeadPose, matrix: np.ndarray, cfg: Config) -> list[str]:
    """Warnings about a face that is used but may give a poor fit."""
    ic = cfg.intake
    notes = [occlusion_note(evidence), _pnp_note(pose, ic.crop_size, ic.crop_scale)]
    if scale_of(matrix) > UPSCALE_WARNING:
        notes.append(f"low resolution: the face is {face.size:.0f} px across and is enlarged {scale_of(matrix):.1f}x for the {ic.crop_size} px crop")
    return [note for note in notes if note]


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
    evidence = check_human_face(image.rgb, face, ic.background)
    t["face_check"] = time.perf_counter() - start

    start = time.perf_counter()
    matrix = crop_transform(face.points, ic.crop_size, ic.crop_scale)
    landmarks = landmarks_in_crop(face.points, matrix)
    pose = solve_head_pose(landmarks[:, :2], ic.crop_size)
    _check_yaw(pose, cfg)
    for note in _quality_notes(face, evidence, pose, matrix, cfg):
        warnings.add(note)
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
    return Analysis(face, evidence, index, len(faces), matrix, crop, crop_small, landmarks, world, pose, mask, identity, warnings, t)
