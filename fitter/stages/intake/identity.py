"""Identity embeddings: dlib's 128-D face descriptor (always) and ArcFace 512-D (with a model)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from common.errors import MissingModelError
from fitter.stages.intake import meshpoints as mpi
from fitter.stages.intake.detection import detect_boxes

Box = tuple[float, float, float, float]


@functools.lru_cache(maxsize=1)
def _dlib_models():
    import dlib
    import face_recognition_models as frm

    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    return predictor, encoder


@functools.lru_cache(maxsize=1)
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


def find_face_box(rgb: np.ndarray) -> Box | None:
    """The largest face box: dlib's HOG detector, then MediaPipe's detectors as a fallback."""
    rects = _hog_detector()(rgb, 1)
    if len(rects):
        r = max(rects, key=lambda r: r.area())
        return float(r.left()), float(r.top()), float(r.right()), float(r.bottom())

    boxes = detect_boxes(rgb, 0.5)
    return boxes[0] if boxes else None


def dlib_embedding(rgb_uint8: np.ndarray, face_box: Box | None = None) -> np.ndarray | None:
    """(128,) float32 dlib descriptor of the face in `face_box` (x0, y0, x1, y1 pixels), or of the
    largest face found when no box is given; None when there is no face. Compare with L2 distance
    (0.6 is dlib's usual same-person threshold)."""
    import dlib

    rgb = np.ascontiguousarray(rgb_uint8[:, :, :3], dtype=np.uint8)
    box = face_box if face_box is not None else find_face_box(rgb)
    if box is None:
        return None
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    predictor, encoder = _dlib_models()
    return np.asarray(encoder.compute_face_descriptor(rgb, predictor(rgb, rect)), dtype=np.float32)


def landmark_face_box(points: np.ndarray) -> Box:
    """A dlib-style face box from FaceMesh landmarks (their bounding box over the mesh points)."""
    (x0, y0), (x1, y1) = points[: mpi.NUM_MESH, :2].min(0), points[: mpi.NUM_MESH, :2].max(0)
    return float(x0), float(y0), float(x1), float(y1)


def five_points(points: np.ndarray) -> np.ndarray:
    """insightface's 5-point order: image-left eye, image-right eye, nose tip, image-left and
    image-right mouth corners (eye centres are the iris centres)."""
    idx = [mpi.RIGHT_IRIS_CENTRE, mpi.LEFT_IRIS_CENTRE, mpi.NOSE_TIP, mpi.MOUTH_RIGHT_CORNER, mpi.MOUTH_LEFT_CORNER]
    return points[idx, :2].astype(np.float32)


@functools.lru_cache(maxsize=2)
def load_arcface(path: str):
    if not Path(path).is_file():
        raise MissingModelError(f"ArcFace model not found: {path} (models.arcface must be an ONNX file)")
    try:
        from insightface.model_zoo import get_model

        model = get_model(path, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise MissingModelError(f"cannot load the ArcFace model {path}: {' '.join(str(exc).split())[:200]}") from None
    if model is None or not hasattr(model, "get_feat"):
        raise MissingModelError(f"{path} is not an ArcFace recognition model (models.arcface)")
    model.prepare(ctx_id=-1)
    return model


def arcface_embedding(rgb: np.ndarray, points: np.ndarray, model_path: str) -> np.ndarray:
    """(512,) float32 L2-normalised ArcFace embedding, aligned from five FaceMesh landmarks."""
    from insightface.utils.face_align import norm_crop

    model = load_arcface(model_path)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    with warnings.catch_warnings():  # insightface calls a scikit-image API deprecated in 0.26
        warnings.simplefilter("ignore", FutureWarning)
        aligned = norm_crop(bgr, landmark=five_points(points), image_size=model.input_size[0])
    feat = np.asarray(model.get_feat(aligned), dtype=np.float32).ravel()
    return feat / max(float(np.linalg.norm(feat)), 1e-12)
