"""A synthetic photo for the prior fit: an anny head with known parameters, seen by a known reference camera.

Its targets are what the intake would measure on a perfect photo: the landmark map's points projected through the
camera (x, y at 512², z as MediaPipe's relative depth in pixels), world landmarks made from them the way the
intake makes them (`world_landmarks`: on the camera rays, at the canonical layout's mean depth), and the mask of
the head rendered through our rasterizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fitter.stages.intake.pose import canonical_landmarks, world_landmarks
from fitter.stages.prior.head import FitHead, HeadParams, axis_angle_matrix
from fitter.stages.prior.targets import LANDMARK_SIZE, NUM_MESH, Targets, outside_distance
from representations.cameras import Camera, look_at
from representations.parametric import HeadModel
from representations.parametric.landmarks import LandmarkMap
from representations.render import Rasterizer

PHENOTYPE = {"gender": 0.3, "age": 0.55, "muscle": 0.6, "weight": 0.4, "height": 0.5, "proportions": 0.6}
LOCAL = {"nose-scale-horiz-incr": 0.4, "chin-height-incr": -0.3, "cheek-volume-incr": 0.3, "head-scale-horiz-incr": 0.2,
         "mouth-scale-horiz-incr": -0.25, "eye-scale-incr": 0.3}
"""Tied left/right pairs by their side-less name (the fit ties them by default)."""
FACIAL = {"jawOpen": 0.4, "mouthSmileLeft": 0.6, "mouthSmileRight": 0.6, "eyeBlinkLeft": 0.5}
SCALE = 0.5 / 0.063
"""World units per metre: the canonical pupil distance (0.5 units) is 6.3 cm."""


@dataclass
class Planted:
    head: FitHead
    params: HeadParams
    targets: Targets
    vertices: torch.Tensor
    """(V, 3) the planted head in the world frame."""


def planted_params(head: FitHead) -> HeadParams:
    p = head.initial_params()
    names = head.model.phenotype_names
    p.phenotype[0] = torch.tensor([PHENOTYPE[n] for n in names])
    for name, value in LOCAL.items():
        p.local[0, head.free_names.index(name)] = value
    for name, value in FACIAL.items():
        p.facial[0, head.model.facial_action_names.index(name)] = value
    p.neck[0] = torch.tensor([0.04, 0.0, 0.02])
    p.head[0] = torch.tensor([-0.05, 0.02, 0.04])
    return p


def reference_camera(size: int, azimuth: float = 8.0, elevation: float = 6.0, radius: float = 9.1) -> Camera:
    """A PanoHead-framed camera (focal 4.2647) looking at the origin, like the intake's."""
    a, e = math.radians(azimuth), math.radians(elevation)
    eye = radius * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    return Camera.from_normalized_focal(np.linalg.inv(look_at(eye)), size)


def make_planted(model: HeadModel, landmark_map: LandmarkMap) -> Planted:
    head = FitHead(model)
    p = planted_params(head)
    # the similarity: turned 10° to the subject's left and tilted, the landmarks' centre where the canonical
    # layout's is (the intake puts the photo's landmarks at its mean depth: that fixes the world's scale)
    head.set_start(axis_angle_matrix(torch.tensor([0.05, math.radians(10.0), -0.03])).numpy(), SCALE, np.zeros(3))
    with torch.no_grad():
        anny = head.anny_vertices(p)
        centre = landmark_map.points(anny, model.faces)[0, :NUM_MESH].mean(0)
        target = torch.tensor(canonical_landmarks()[:NUM_MESH].mean(0), dtype=torch.float32)
        head.set_start(head.r0.numpy(), SCALE, (target - SCALE * head.r0 @ head.axes @ centre).numpy())
        vertices = head.world_vertices(p)[0]
        points = landmark_map.points(vertices, model.faces)
    camera = reference_camera(LANDMARK_SIZE)
    px, depth = camera.project(points.double().numpy())
    z = (depth - depth.mean()) * camera.fy / depth.mean()  # MediaPipe's relative depth: pixels, negative = nearer
    crop = np.concatenate([px, z[:, None]], axis=1)
    mask = Rasterizer("torch").render(vertices, model.faces, camera, ("mask",))["mask"][..., 0].numpy() > 0.5
    targets = Targets(
        landmarks=torch.tensor(px, dtype=torch.float32),
        depth=torch.tensor(z, dtype=torch.float32),
        world=torch.tensor(world_landmarks(crop, camera), dtype=torch.float32),
        camera=camera,
        outside=torch.tensor(outside_distance(mask, px)),
    )
    return Planted(head, p, targets, vertices)
