"""Find faces and their 478 refined FaceMesh landmarks, in input-image pixels.

Two passes make detection independent of image size and face size: MediaPipe's face detectors
(short- and full-range) propose face boxes on the whole image (and, when it shows none, on ever
smaller overlapping tiles, for small faces in large photos); then FaceMesh runs on a square region
around each box, resampled to a fixed working size (this upscales small faces and shrinks huge ones).
MediaPipe's native log lines go to run.log, not the terminal (native_quiet.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fitter.stages.intake.native_quiet import native_stderr_to_log
from fitter.stages.intake.warp import similarity, warp_image

MIN_TILE = 256
"""Smallest tile the detectors are run on when the whole image shows no face (small faces in
large photos shrink to a few pixels at the detectors' 128/192 px input)."""
MAX_TILES = 100
"""Tile levels with more tiles than this are skipped (bounds the time spent on a face-less photo)."""
REGION_SIZE = 512
REGION_FACE_RATIO = 2.2
"""A FaceMesh region's side is this many face-box sides (FaceMesh's own detector needs context)."""
MAX_FACES = 5


@dataclass
class Face:
    """One face: (478, 3) landmarks; x, y in input pixels (0 = left/top edge), z MediaPipe's relative
    depth in the same pixel units (more negative = nearer the camera)."""

    points: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.points[:, :2].min(0), self.points[:, :2].max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def size(self) -> float:
        """Side of the landmark box (its larger extent), in input pixels."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)


@functools.lru_cache(maxsize=4)
def face_detector(model_selection: int, confidence: float):
    import mediapipe as mp

    return mp.solutions.face_detection.FaceDetection(model_selection=model_selection, min_detection_confidence=confidence)


@functools.lru_cache(maxsize=2)
def face_mesh(confidence: float):
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=True, max_num_faces=MAX_FACES, min_detection_confidence=confidence
    )


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _dedupe(boxes: list[tuple], threshold: float) -> list[tuple]:
    kept: list[tuple] = []
    for box in sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True):
        if all(_iou(box, k) < threshold for k in kept):
            kept.append(box)
    return kept


@native_stderr_to_log()
def detect_boxes(rgb: np.ndarray, confidence: float) -> list[tuple[float, float, float, float]]:
    """Face boxes (x0, y0, x1, y1) in pixels: the whole image first, then ever smaller overlapping
    square tiles until some face is found."""
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)  # MediaPipe needs contiguous RGB
    boxes = _boxes_in(rgb, confidence)
    h, w = rgb.shape[:2]
    side = min(h, w) // 2 if max(h, w) <= 2 * min(h, w) else min(h, w)
    while not boxes and side >= MIN_TILE:
        origins = [(x, y) for y in _starts(h, side) for x in _starts(w, side)]
        if len(origins) > MAX_TILES:
            break
        for x, y in origins:
            tile = np.ascontiguousarray(rgb[y : y + side, x : x + side])
            boxes += [(b[0] + x, b[1] + y, b[2] + x, b[3] + y) for b in _boxes_in(tile, confidence)]
        boxes = _dedupe(boxes, 0.3)
        side //= 2
    return boxes


def _starts(length: int, side: int) -> list[int]:
    """Tile origins with half-tile overlap covering [0, length)."""
    last = max(0, length - side)
    return sorted({*range(0, last + 1, max(1, side // 2)), last})


def _boxes_in(rgb: np.ndarray, confidence: float) -> list[tuple[float, float, float, float]]:
    h, w = rgb.shape[:2]
    boxes = []
    for model in (0, 1):
        result = face_detector(model, confidence).process(rgb)
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
    return _dedupe([b for b in boxes if b[2] > b[0] and b[3] > b[1]], 0.3)


def _mesh_in_region(rgb: np.ndarray, centre: np.ndarray, side: float, confidence: float, background: float) -> Face | None:
    """FaceMesh on a square region; the face nearest the region centre, mapped back to input pixels."""
    m = similarity(centre, side, 0.0, REGION_SIZE)
    region = warp_image(rgb, m, REGION_SIZE, background)
    result = face_mesh(confidence).process(region)
    if not result.multi_face_landmarks:
        return None
    faces = [np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float64) * REGION_SIZE for f in result.multi_face_landmarks]
    best = min(faces, key=lambda f: np.linalg.norm(f[:, :2].mean(0) - REGION_SIZE / 2))
    inv = np.linalg.inv(m)
    xy = best[:, :2] @ inv[:2, :2].T + inv[:2, 2]
    scale = np.sqrt(abs(np.linalg.det(m[:2, :2])))
    return Face(np.column_stack([xy, best[:, 2] / scale]))


@native_stderr_to_log()
def detect_faces(rgb: np.ndarray, confidence: float = 0.5, background: float = 0.5) -> list[Face]:
    """All faces found, largest first (by landmark box)."""
    rgb = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    boxes = detect_boxes(rgb, confidence)
    regions = [(np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]), REGION_FACE_RATIO * max(b[2] - b[0], b[3] - b[1])) for b in boxes]
    if not regions:  # close-ups the detectors miss: let FaceMesh look at the whole image
        regions = [(np.array([w / 2, h / 2]), float(max(w, h)))]
    faces = [f for c, s in regions if (f := _mesh_in_region(rgb, c, s, confidence, background)) is not None]
    faces.sort(key=lambda f: f.size, reverse=True)
    kept: list[Face] = []
    for face in faces:
        if all(_iou(face.box, k.box) < 0.5 for k in kept):
            kept.append(face)
    return kept
