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
from fitter.stages.intake.masking import convex_hull_mask
from fitter.stages.texture.projection import (
    VertexToTexel,
    harmonic_fill,
    project_photo,
    smoothed_normals,
    vertex_colours_from_texels,
)
from fitter.stages.texture.synthesis import (
    EXEMPLAR_SIDE,
    hair_detail,
    hair_exemplar,
    hairness,
    parametric_scalp,
    sample_panorama,
    skin_detail,
    skin_sample,
)
from fitter.subject import Subject
from representations.cameras import Camera
from representations.mesh import Mesh, vertex_normals
from representations.render.texel import TexelSurface, back_project, dilate_into_gutters, texel_surface

log = logging.getLogger("headfit")


@dataclass
class SubjectPhoto:
    """The subject as the texture reads it, all at the crop's side S: the photo (S, S, 3) and mask (S, S)
    in [0, 1], the reference camera, landmarks in its pixels (N, 2) and in the world (N, 3), the textured
    init mesh of init.kind=multiview (None otherwise) and the prior stage's fitted parametric head
    (anny's vertex order; None when there is none)."""

    image: torch.Tensor
    mask: torch.Tensor
    camera: Camera
    landmarks_px: np.ndarray
    landmarks_world: np.ndarray
    init_textured: Optional[Mesh] = None
    head: Optional[Mesh] = None

    @classmethod
    def of(cls, subject: Subject, init_textured: Optional[Mesh] = None, head: Optional[Mesh] = None) -> "SubjectPhoto":
        image = subject.image()
        size = int(image.shape[0])
        return cls(image, subject.mask(size), subject.camera(size), subject.landmarks_px(size), subject.landmarks_world,
                   init_textured, head)


@dataclass
class ProjectionLayers:
    """The projection texture (T, T, 3) and what it was made of: the texel surface, each photo
    source's confidence (T, T) (`project_photo`), each texel's hairness (T, T) and the angle (degrees,
    (T, T)) beyond which it takes no photo colour (`max_angle_deg` on the face, `off_face_max_angle_deg` off it)."""

    texture: torch.Tensor
    surface: TexelSurface
    confidences: dict[str, torch.Tensor]
    hairness: torch.Tensor
    max_angle_deg: torch.Tensor
    stats: dict


def projection_layers(mesh: Mesh, subject: SubjectPhoto, cfg: TextureConfig) -> ProjectionLayers:
    """The photo where it faces the camera squarely enough, the fills (`silent_fill`) elsewhere, gutters dilated."""
    surface = texel_surface(mesh.verts.float(), mesh.faces, mesh.uv.float(), mesh.uv_faces, cfg.resolution,
                            normals=smoothed_normals(mesh))
    hair_v, centre = vertex_hairness(mesh.verts.detach().double().cpu().numpy(), subject)
    to_texels = VertexToTexel(surface, mesh)
    hair = to_texels(hair_v[:, None])[..., 0].clamp(0.0, 1.0)
    limit = cfg.max_angle_deg + (cfg.off_face_max_angle_deg - cfg.max_angle_deg) * off_face(surface, hair, subject, cfg)
    colour, confidences = project_photo(subject.image, subject.mask, subject.camera, surface, max_angle_deg=limit,
                                        feather_deg=cfg.feather_deg, depth_tolerance=cfg.depth_tolerance, mirror=cfg.mirror,
                                        mirror_weight=1.0 - hair)  # the hidden half of the face; hair is synthesised
    known = sum(confidences.values()).clamp(0.0, 1.0)
    fill, stats = silent_fill(mesh, surface, to_texels, colour, known, hair_v, hair, centre, subject, cfg)
    texture = colour * known[..., None] + fill * (1.0 - known[..., None])
    texture = dilate_into_gutters(texture.clamp(0.0, 1.0), surface.valid)
    valid = surface.valid.float()
    stats = {"resolution": cfg.resolution, "faces": mesh.num_faces, **stats}
    for name, confidence in confidences.items():
        stats[f"{name}_fraction"] = float((confidence > 0.5).float().mul(valid).sum() / valid.sum())
    stats["unfilled_texels"] = int((~torch.isfinite(texture).all(-1)).sum())
    return ProjectionLayers(texture.float(), surface, confidences, hair, limit, stats)


def silent_fill(mesh: Mesh, surface: TexelSurface, to_texels: VertexToTexel, colour: torch.Tensor, known: torch.Tensor, hair_v: np.ndarray,
                hair: torch.Tensor, centre: np.ndarray, subject: SubjectPhoto, cfg: TextureConfig) -> tuple[torch.Tensor, dict]:
    """Colour (T, T, 3) for where the photo is silent and stats: a smooth fill from the seen colours pulled
    towards the skin's and the hair's colour, the skin's fine texture on the skin, hair strands synthesised from
    the photo's hair on the hair (`fitter/stages/texture/synthesis.py`). ``to_texels`` interpolates vertex values
    over the texels; ``hair_v`` (V,) and ``hair`` (T, T):
    the vertices' and texels' hairness; ``centre`` (3,) the head's."""
    verts = mesh.verts.detach().double().cpu().numpy()
    skin = skin_sample(subject.image.numpy(), subject.landmarks_px, camera_depth(subject), subject.camera.fy)
    hair_colour = hair_anchor(subject)
    hair_colour = skin.colour if hair_colour is None else hair_colour
    vertex_colours, known_v = vertex_colours_from_texels(mesh, colour, known > 0.5)
    anchors = hair_v[:, None] * hair_colour[None] + (1.0 - hair_v[:, None]) * skin.colour[None]
    filled_v = harmonic_fill(mesh, vertex_colours, known_v, anchors, np.full(len(verts), cfg.hair_anchor_weight))
    fill = to_texels(filled_v)
    inside = surface.valid
    points, normals = surface.position[inside].double().numpy(), surface.normal[inside].double().numpy()
    detail = torch.zeros_like(fill)
    detail[inside] = torch.from_numpy(cfg.skin_detail * skin_detail(points, normals, skin)).to(fill)
    fill = fill + detail * (1.0 - hair[..., None])
    stats: dict = {"hair_colour": [round(float(c), 4) for c in hair_colour], "skin_colour": [round(float(c), 4) for c in skin.colour],
                   "hair_synthesised": False}
    if cfg.hair_synthesis:
        hair_pixels = hair_mask(subject, hair_colour, skin.colour).numpy() > 0.5
        image = subject.image.numpy().astype(np.float64)
        exemplar = hair_exemplar(image, hair_pixels, max(8, int(EXEMPLAR_SIDE * image.shape[0])))
        if exemplar is not None:
            radius = float(np.median(np.linalg.norm(points - centre, axis=1)))
            panorama = hair_detail(exemplar, skin.world_per_pixel, radius, np.random.default_rng(0))
            strands = torch.zeros_like(fill)
            strands[inside] = torch.from_numpy(sample_panorama(panorama, points, centre)).to(fill)
            fill = fill + strands * hair[..., None]
            stats["hair_synthesised"] = True
    if subject.init_textured is not None:  # init.kind=multiview: the views' colours instead of the fills
        fill = colours_near(subject.init_textured, surface.position.reshape(-1, 3)).reshape(fill.shape).to(fill)
    stats["hair_fraction"] = float((hair > 0.5)[inside].float().mean())
    return fill.clamp(0.0, 1.0), stats


def off_face(surface: TexelSurface, hair: torch.Tensor, subject: SubjectPhoto, cfg: TextureConfig) -> torch.Tensor:
    """(T, T) in [0, 1]: how far a texel is off the face, where a stretched photo shows no smeared face: its
    hairness, or 1 where the photo shows it outside `face_region` (ears, hair, neck and clothes)."""
    outside = torch.from_numpy((1 - face_region(subject)).astype(np.float32))[..., None]
    seen_outside = back_project(outside, subject.camera, surface, depth_tolerance=cfg.depth_tolerance)[0][..., 0]
    return torch.maximum(hair, seen_outside)


def vertex_hairness(verts: np.ndarray, subject: SubjectPhoto) -> tuple[np.ndarray, np.ndarray]:
    """Hairness (V,) of the sculpt's vertices and the head's centre (3,): from the parametric head when there is
    one, else from the height over the brows and the depth behind the ears."""
    if subject.head is not None:
        head_verts = subject.head.verts.double().numpy()
        scalp, centre = parametric_scalp(head_verts)
        return hairness(verts, head_verts, vertex_normals(subject.head.verts.double(), subject.head.faces).numpy(), scalp), centre
    brow_y = float(subject.landmarks_world[FOREHEAD, 1])
    above = np.clip((verts[:, 1] - brow_y) / 0.3, 0.0, 1.0)
    behind = np.clip((-0.1 - verts[:, 2]) / 0.4, 0.0, 1.0)
    return np.maximum(above, behind), np.array([0.0, brow_y, 0.5 * (verts[:, 2].min() + verts[:, 2].max())])


def camera_depth(subject: SubjectPhoto) -> float:
    """Distance from the reference camera to the face's landmarks (world units)."""
    position = np.asarray(subject.camera.position, dtype=float)
    return float(np.linalg.norm(subject.landmarks_world.mean(0) - position)) if len(subject.landmarks_world) else 1.0


def face_region(subject: SubjectPhoto) -> np.ndarray:
    """(S, S) uint8: the face in the photo, the convex hull of its landmarks grown by 5 % of S."""
    size = subject.mask.shape[0]
    face = convex_hull_mask(subject.landmarks_px, (size, size))
    grow = max(1, int(0.05 * size))
    return cv2.dilate(face, np.ones((grow, grow), np.uint8))


def hair_mask(subject: SubjectPhoto, hair_colour: np.ndarray | None = None, skin_colour: np.ndarray | None = None) -> torch.Tensor:
    """(S, S) photo pixels that show hair (or scalp): inside the mask shrunk by 2 % of S (no background at
    the outline), outside `face_region`, and, given both colours (3,), nearer the hair's colour than the
    skin's (CIELAB, blurred by 1 % of S), so a bare forehead above the landmarks is not taken for hair."""
    size = subject.mask.shape[0]
    mask = (subject.mask.numpy() > 0.5).astype(np.uint8)
    shrink = max(1, int(0.02 * size))
    mask = cv2.erode(mask, np.ones((2 * shrink + 1, 2 * shrink + 1), np.uint8))
    hair = mask & (1 - face_region(subject))
    if hair_colour is not None and skin_colour is not None:
        sigma = 0.01 * size  # strands and highlights are hair too: judge the neighbourhood's colour
        lab = cv2.cvtColor(cv2.GaussianBlur(subject.image.numpy().astype(np.float32), (0, 0), sigma), cv2.COLOR_RGB2LAB)
        hair_lab, skin_lab = (cv2.cvtColor(np.asarray(c, np.float32)[None, None], cv2.COLOR_RGB2LAB)[0, 0] for c in (hair_colour, skin_colour))
        hair &= (np.linalg.norm(lab - hair_lab, axis=-1) < np.linalg.norm(lab - skin_lab, axis=-1)).astype(np.uint8)
    return torch.from_numpy(hair.astype(np.float32))


def hair_anchor(subject: SubjectPhoto) -> np.ndarray | None:
    """(3,) the median colour the photo shows above the forehead (hair, or the scalp's skin when bald); None when
    the mask shows too little there."""
    image, mask = subject.image.numpy(), subject.mask.numpy()
    top = subject.landmarks_px[:, 1].min()
    rows = np.arange(image.shape[0])[:, None] < top - 0.02 * image.shape[0]
    region = (mask > 0.5) & rows
    if region.sum() < 50:
        return None
    return np.median(image[region], axis=0)
