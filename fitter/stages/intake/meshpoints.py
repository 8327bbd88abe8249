"""Indices into MediaPipe FaceMesh's 478 refined landmarks that the intake relies on.

MediaPipe names sides from the subject's point of view: its "left eye" is the subject's left eye,
which is on the image's right in a frontal photo (world +x in representations/cameras.py).
The eye and lip sets are the vertices of MediaPipe's own FACEMESH_*_EYE / FACEMESH_LIPS contours.
"""

from __future__ import annotations

NUM_LANDMARKS = 478
NUM_MESH = 468
"""Landmarks 0..467 are the face mesh; 468..477 are the two irises (refine_landmarks=True)."""

RIGHT_IRIS_CENTRE = 468
LEFT_IRIS_CENTRE = 473
RIGHT_EYE_CONTOUR = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_EYE_CONTOUR = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
MOUTH_RIGHT_CORNER = 61
MOUTH_LEFT_CORNER = 291
NOSE_TIP = 1
FOREHEAD_TOP = 10
CHIN = 152
