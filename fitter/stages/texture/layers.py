"""The projection texture's layers: the photo projected into the UV layout, mirrored, with hair and
skin filled where the photo says nothing (used by both texture modes)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from fitter.config import TextureConfig
from fitter.stages.init.multiview.texture import colours_near
from fitter.stages.init.template_head import FOREHEAD
from fitter.stages.texture.projection import (
    harmonic_fill,
    project_photo,
    smoothed_normals,
    texels_from_vertices,
    vertex_colours_from_texels,
)
from fitter.subject import Subject
from representations.cameras import Camera
from representations.mesh import Mesh
from representations.render.texel import TexelSurface, dilate_into_gutters, texel_surface

log = logging.getLogger("headfit")


@dataclass
class SubjectPhoto:
    """The subject as the texture reads it, all at the crop's side S: the photo (S, S, 3) and mask (S, S)
    in [0, 1], the reference camera, landmarks in its pixels (N, 2) and in the world (N, 3), and the
    textured init mesh of init.kind=multiview (None otherwise)."""

    image: torch.Tensor
    mask: torch.Tensor
    camera: Camera
    landmarks_px: np.ndarray
    landmarks_world: np.ndarray
    init_textured: Optional[Mesh] = None

    @classmethod
    def of(cls, subject: Subject, init_textured: Optional[Mesh] = None) -> "SubjectPhoto":
        image = subject.image()
        size = int(image.shape[0])
        return cls(image, subject.mask(size), subject.camera(size), subject.landmarks_px(size), subject.landmarks_world,
                   init_textured)


@dataclass
class ProjectionLayers:
    """The projection texture (T, T, 3) and what it was made of: the texel surface and each photo
    source's confidence (T, T) (`project_photo`)."""

    texture: torch.Tensor
    surface: TexelSurface
    confidences: dict[str, torch.Tensor]
    stats: dict


def projection_layers(mesh: Mesh, subject: SubjectPhoto, cfg: TextureConfig) -> ProjectionLayers:
    surface = texel_surface(mesh.verts.float(), mesh.faces, mesh.uv.float(), mesh.uv_faces, cfg.resolution,
                            normals=smoothed_normals(mesh))
    colour, confidences = project_photo(
        subject.image, subject.mask, subject.camera, surface, min_cosine=cfg.min_cosine, feather=cfg.feather,
        depth_tolerance=cfg.depth_tolerance, mirror=cfg.mirror, hair_mask=hair_mask(subject) if cfg.hair_from_photo else None,
    )
    known = sum(confidences.values()).clamp(0.0, 1.0)
    vertex_colours, known_v = vertex_colours_from_texels(mesh, colour, known > 0.5)
    anchor, weights = hair_anchor(mesh, subject, cfg.hair_anchor_weight)
    filled_v = harmonic_fill(mesh, vertex_colours, known_v, anchor, weights)
    fill = texels_from_vertices(surface, mesh, filled_v)
    if subject.init_textured is not None:  # init.kind=multiview: the views' colours instead of the smooth fill
        fill = colours_near(subject.init_textured, surface.position.reshape(-1, 3)).reshape(fill.shape).to(fill)
    texture = colour * known[..., None] + fill * (1.0 - known[..., None])
    texture = dilate_into_gutters(texture.clamp(0.0, 1.0), surface.valid)
    valid = surface.valid.float()
    stats = {"resolution": cfg.resolution, "faces": mesh.num_faces, "hair_colour": None if anchor is None else [float(c) for c in anchor]}
    for name, confidence in confidences.items():
        stats[f"{name}_fraction"] = float((confidence > 0.5).float().mul(valid).sum() / valid.sum())
    return ProjectionLayers(texture.float(), surface, confidences, stats)


def hair_mask(subject: SubjectPhoto) -> torch.Tensor:
    """(S, S) photo pixels that show hair (or scalp): inside the mask, outside the face's landmark hull grown by 5 %."""
    mask = (subject.mask.numpy() > 0.5).astype(np.uint8)
    hull = cv2.convexHull(subject.landmarks_px.astype(np.float32)).astype(np.int32)
    face = np.zeros_like(mask)
    cv2.fillConvexPoly(face, hull, 1)
    grow = max(1, int(0.05 * mask.shape[0]))
    face = cv2.dilate(face, np.ones((grow, grow), np.uint8))
    return torch.from_numpy((mask & (1 - face)).astype(np.float32))


def hair_anchor(mesh: Mesh, subject: SubjectPhoto, weight: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The colour seen above the forehead (hair, or skin when bald) and per-vertex pull weights that
    grow over the top and the back of the head, where the photo says nothing."""
    if weight <= 0:
        return None, None
    image, mask = subject.image.numpy(), subject.mask.numpy()
    top = subject.landmarks_px[:, 1].min()
    rows = np.arange(image.shape[0])[:, None] < top - 0.02 * image.shape[0]
    region = (mask > 0.5) & rows
    if region.sum() < 50:
        return None, None
    anchor = np.median(image[region], axis=0)
    verts = mesh.verts.detach().cpu().numpy()
    brow_y = subject.landmarks_world[FOREHEAD, 1]
    above = np.clip((verts[:, 1] - brow_y) / 0.3, 0.0, 1.0)
    behind = np.clip((-0.1 - verts[:, 2]) / 0.4, 0.0, 1.0)
    return anchor, weight * np.maximum(above, behind)
