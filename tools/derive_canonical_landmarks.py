"""Derive the canonical 3D layout of MediaPipe's 478 refined FaceMesh landmarks.

MediaPipe 0.10.21 ships no canonical face model inside its wheel, so the layout the intake's head
pose (PnP) is solved against is derived here from a near-frontal photo, `skimage.data.astronaut()`:

1. FaceMesh (through the intake's own detector) gives 478 points: x, y in pixels and MediaPipe's
   relative depth z in the same pixel units. They become a right-handed, y-up frame (x, -y, -z), so
   +z points towards the camera.
2. Mirror correspondence: reflect the points through the current symmetry plane and match each
   reflected point to an original one with the Hungarian algorithm; then refit the plane to the
   pairs (normal = main direction of the pair differences, offset = mean of the pair midpoints).
   Repeat until the pairing stops changing. The first plane is the one that bisects the irises.
3. Symmetrise: average each point with the mirror image of its partner (midline points get x = 0).
4. Orient: x is the plane normal (towards the subject's left, image right); y ("up", which fixes the
   pitch) is the direction from the mouth centre (mean of corners 61, 291) to the mid-point of the eye
   centres (means of MediaPipe's eye contours), within the symmetry plane; z = x × y faces forwards.
   So a face with eye-to-mouth vertical in the image has pitch 0, matching the crop's alignment.
5. Scale so the pupil distance (iris centres 468 and 473) is 0.5 world units (6.3 cm).
6. Origin (the head centre): 1.3 pupil distances (0.65 units) behind the mid-eye point and 0.1 pupil
   distance (0.05 units) above it. The eyes are near the middle of the chin-to-crown height and
   about 8 cm in front of the middle of the head's front-to-back length.

Run: /work/venv/bin/python tools/derive_canonical_landmarks.py  (writes
fitter/stages/intake/canonical_landmarks.npy, 478x3 float32, and prints a summary).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.atomic import write_bytes  # noqa: E402
from fitter.stages.intake import meshpoints as mpi  # noqa: E402
from fitter.stages.intake.detection import detect_faces  # noqa: E402
from fitter.stages.intake.pose import CANONICAL_PATH  # noqa: E402

PUPIL_DISTANCE = 0.5
CENTRE_BEHIND_EYES = 1.3  # in pupil distances
CENTRE_ABOVE_EYES = 0.1  # in pupil distances


def astronaut_points() -> np.ndarray:
    import skimage.data

    faces = detect_faces(skimage.data.astronaut())
    if len(faces) != 1:
        raise SystemExit(f"expected one face in the astronaut image, found {len(faces)}")
    p = faces[0].points
    return np.column_stack([p[:, 0], -p[:, 1], -p[:, 2]])


def reflect(points: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    return points - 2.0 * (points @ normal - offset)[:, None] * normal


def mirror_pairs(points: np.ndarray, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray, float]:
    """Permutation `pair` (pair[i] = mirror partner of i) and the symmetry plane (normal, offset)."""
    normal = points[mpi.LEFT_IRIS_CENTRE] - points[mpi.RIGHT_IRIS_CENTRE]
    normal /= np.linalg.norm(normal)
    offset = float(0.5 * (points[mpi.LEFT_IRIS_CENTRE] + points[mpi.RIGHT_IRIS_CENTRE]) @ normal)
    pair = np.arange(len(points))
    for it in range(max_iter):
        mirrored = reflect(points, normal, offset)
        cost = np.sum((points[:, None, :] - mirrored[None, :, :]) ** 2, axis=2)
        _, new_pair = linear_sum_assignment(cost)
        diffs = points - points[new_pair]
        _, _, vt = np.linalg.svd(diffs, full_matrices=False)
        normal = vt[0] if vt[0] @ normal > 0 else -vt[0]
        offset = float(np.mean(0.5 * (points + points[new_pair]) @ normal))
        if it > 0 and np.array_equal(new_pair, pair):
            break
        pair = new_pair
    return pair, normal, offset


def eye_mouth(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    eyes = 0.5 * (points[list(mpi.RIGHT_EYE_CONTOUR)].mean(0) + points[list(mpi.LEFT_EYE_CONTOUR)].mean(0))
    mouth = 0.5 * (points[mpi.MOUTH_RIGHT_CORNER] + points[mpi.MOUTH_LEFT_CORNER])
    return eyes, mouth


def canonical_layout(points: np.ndarray) -> tuple[np.ndarray, dict]:
    pair, normal, offset = mirror_pairs(points)
    involution = bool(np.array_equal(pair[pair], np.arange(len(pair))))
    if not involution or pair[mpi.RIGHT_IRIS_CENTRE] != mpi.LEFT_IRIS_CENTRE:
        raise SystemExit("mirror matching failed: the pairing is not a clean left/right involution")
    asym = np.linalg.norm(points - reflect(points[pair], normal, offset), axis=1)
    # Frame with x = plane normal, then symmetrise.
    eyes, mouth = eye_mouth(points)
    up = eyes - mouth
    up -= (up @ normal) * normal
    up /= np.linalg.norm(up)
    fwd = np.cross(normal, up)
    basis = np.stack([normal, up, fwd])
    local = (points - offset * normal) @ basis.T
    local = 0.5 * (local + local[pair] * np.array([-1.0, 1.0, 1.0]))
    pd = np.linalg.norm(local[mpi.LEFT_IRIS_CENTRE] - local[mpi.RIGHT_IRIS_CENTRE])
    local *= PUPIL_DISTANCE / pd
    eyes, _ = eye_mouth(local)
    centre = eyes + PUPIL_DISTANCE * np.array([0.0, CENTRE_ABOVE_EYES, -CENTRE_BEHIND_EYES])
    local -= centre
    info = {
        "self_paired (midline)": int(np.sum(pair == np.arange(len(pair)))),
        "asymmetry rms (pupil distances)": float(np.sqrt(np.mean(asym**2)) / pd),
        "faces +z (nose tip z > eye z)": bool(local[mpi.NOSE_TIP, 2] > eyes[2] - centre[2]),
    }
    return local.astype(np.float32), info


def main() -> None:
    layout, info = canonical_layout(astronaut_points())
    buf = io.BytesIO()
    np.save(buf, layout)
    write_bytes(CANONICAL_PATH, buf.getvalue())
    for key, value in info.items():
        print(f"{key}: {value}")
    for name, idx in (("nose tip", mpi.NOSE_TIP), ("chin", mpi.CHIN), ("forehead top", mpi.FOREHEAD_TOP), ("right iris", mpi.RIGHT_IRIS_CENTRE), ("left iris", mpi.LEFT_IRIS_CENTRE)):
        print(f"{name:>13}: {np.round(layout[idx], 3).tolist()}")
    print(f"extent min {np.round(layout.min(0), 3).tolist()} max {np.round(layout.max(0), 3).tolist()}")
    print(f"wrote {CANONICAL_PATH}")


if __name__ == "__main__":
    main()
