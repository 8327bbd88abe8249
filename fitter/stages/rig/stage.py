"""Stage `rig`: a head a studio can animate, on the parametric head's topology.

Reads `prior/fit.json` (shape, pose, the photo's facial-action weights, the anny -> world similarity),
`geometry/mesh.ply` (the sculpt, closed: the wrap's target and the hair's outside), `texture/head.obj` (the sculpt
decimated and textured: the colours baked) and `subject/` (landmarks, reference camera); writes

* `rig/head_rigged.glb`: the skin mesh (anny's 4538 vertices, faces and UV layout, in every subject's fit the same)
  wrapped onto the sculpt, at rest in the neutral expression, bound to anny's 64-bone head skeleton (jaw, eyes,
  neck, head ...) with its skin weights, the 52 ARKit facial actions as morph targets named as ARKit names them,
  the texture baked into the shared UV layout; the hair (the sculpt off the skin) as its own closed mesh following
  the head bone; animations `photo_expression` (the photo's facial-action weights), `neutral` and `expression_demo`
  (neutral, smile, jaw open, blink, neutral);
* `rig/head_rigged.png`: the shared-layout texture, `rig/hair.png` the hair's;
* `rig/rig.json`: the wrap error (mean, 95th percentile and max distance of the wrapped skin to the sculpt, in % of
  the head's height), how many vertices took the data term and were pinned, the hair mesh's size, each step's time.

The wrap starts from the prior's head *with* the photo's expression (the sculpt was fitted to the photo's
landmarks, so its face carries that expression whatever `prior.neutralize` says); the rest shape is the wrap minus
the expression's offsets, and the texture is baked from the wrap as it lies on the sculpt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch
import trimesh

from common import atomic
from common.errors import UserError
from fitter.config import RigConfig
from fitter.context import RunContext
from fitter.stages.init.hair import anny_regions
from fitter.stages.init.parametric import close_boundaries, closed_parts
from fitter.stages.prior.stage import read_fit
from fitter.stages.rig import frame
from fitter.stages.rig.clips import expression_clips
from fitter.stages.rig.fbx import glb_to_fbx
from fitter.stages.rig.skin import as_trimesh, data_weights, landmark_pins, to_tensor
from representations.dmtet import mesh_signed_distance
from representations.mesh import AttachedMesh, Mesh, MorphTargets, Skeleton, read_mesh, save_rigged_glb
from representations.mesh.bake import bake_texture
from representations.mesh.shell import ShellSettings, outer_shell, shell_uv
from representations.mesh.texture import texture_to_image
from representations.parametric import head_model
from representations.parametric.landmarks import load_landmark_map
from representations.parametric.rig import HeadRig, head_rig, local_transforms, pose_deltas
from representations.parametric.wrap import WrapSettings, wrap_error, wrap_surface

log = logging.getLogger("headfit")
RIG_GLB, RIG_FBX, RIG_JSON, RIG_TEXTURE, HAIR_TEXTURE = "head_rigged.glb", "head_rigged.fbx", "rig.json", "head_rigged.png", "hair.png"
HAIR_JOINT = "head"
CHIN = 152
"""MediaPipe's chin landmark: the head's height runs from it to the crown."""
NECK_MARGIN = 0.03
"""Skin closer than this (fraction of the head's height) to the sculpt's lowest point takes no data term: the sculpt's
neck ends in a flat cut (init/parametric.py) where anny's runs on."""
SEAT_CLEARANCE = 1e-3
SEAT_ROUNDS = 3
"""World units an inner part ends behind the sculpt's surface (`seat_inner_parts`)."""
T = TypeVar("T")


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.rig
    out = ctx.stage_dir("rig")
    if not cfg.enabled:
        atomic.write_json(out / RIG_JSON, {"enabled": False})
        log.info("rig: off (rig.enabled=false), no head_rigged.glb")
        return
    clock = Clock()
    fit = read_fit(ctx.out / "prior")
    sculpt = read_mesh(ctx.out / "geometry" / "mesh.ply")
    textured = read_mesh(ctx.out / "texture" / "head.obj")
    head = clock("rig", lambda: fitted_head(fit))
    wrap = clock("wrap", lambda: wrap_head(head, sculpt, ctx, cfg))
    check_wrap(wrap, cfg)
    model = head_model()
    wrapped = Mesh(to_tensor(wrap.vertices), head.faces, uv=model.uvs.float(), uv_faces=model.face_uvs.long())
    bake = clock("bake", lambda: bake_texture(wrapped, textured, cfg.texture_size))
    hair = clock("hair", lambda: hair_mesh(sculpt, textured, wrapped, head, cfg)) if cfg.hair else None
    rest = wrap.vertices - frame.apply_linear(head.to_world, head.rig.expression_offset(head.photo))
    skin = Mesh(to_tensor(rest), head.faces, uv=wrapped.uv, uv_faces=wrapped.uv_faces, texture=bake.texture)
    clock("write", lambda: write_rigged(out, skin, hair, head, cfg))
    if cfg.fbx:
        clock("fbx", lambda: glb_to_fbx(out / RIG_GLB, out / RIG_FBX))
    far = bake.covered & (bake.distance > cfg.wrap_max_distance * head.height)
    record = rig_record(head, wrap, hair, cfg) | {"seconds": clock.times,
                                                  "texels_off_sculpt": round(float(far.sum() / bake.covered.sum()), 4)}
    atomic.write_json(out / RIG_JSON, record)
    log.info("rig: wrap error %.2f%% mean, %.2f%% p95 of head height; %d bones, %d blendshapes, hair %s (%.1f s)",
             wrap.error["mean_pct"], wrap.error["p95_pct"], len(head.rig.bone_names), len(head.rig.action_names),
             "none" if hair is None else f"{hair.num_faces} faces", sum(clock.times.values()))


class Clock:
    """Runs steps and keeps each one's wall time (seconds) by name."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str, step: Callable[[], T]) -> T:
        start = time.perf_counter()
        value = step()
        self.times[name] = round(time.perf_counter() - start, 3)
        return value


@dataclass
class FittedHead:
    """The prior's head in the world frame, posed as photographed, with its rig in anny's frame."""

    rig: HeadRig
    to_world: np.ndarray
    """(4, 4) anny -> world."""
    photo: dict[str, float]
    """The photo's facial-action weights."""
    vertices: np.ndarray
    """(V, 3) world, with the photo's expression."""
    faces: torch.Tensor
    up: np.ndarray
    forward: np.ndarray
    """The head's own up and forward (face) directions in the world, unit (3,)."""
    height: float
    """Crown to chin along `up` (world units): what the wrap error is a percentage of."""


def fitted_head(fit: dict) -> FittedHead:
    model = head_model()
    rig = head_rig(model, fit["phenotype"], fit["local_changes"], pose_deltas(model, fit["pose"]))
    to_world = frame.anny_to_world(fit)
    photo = {k: float(v) for k, v in fit["facial_actions"].items()}
    vertices = frame.apply(to_world, rig.neutral + rig.expression_offset(photo))
    up, forward = (unit(frame.apply_linear(to_world, np.array(axis))) for axis in ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)))
    faces = model.faces.long()
    chin = load_landmark_map().points(torch.as_tensor(vertices), faces)[CHIN].numpy()
    height = float((vertices @ up).max() - chin @ up)
    return FittedHead(rig, to_world, photo, vertices, faces, up, forward, height)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@dataclass
class Wrap:
    vertices: np.ndarray
    """(V, 3) the wrapped head, world, with the photo's expression."""
    weights: np.ndarray
    """(V,) each vertex's data weight (skin.py)."""
    used: np.ndarray
    """(V,) bool: took the data term in the last round."""
    pins: int
    error: dict[str, float]
    """`wrap_error` over the vertices with a data weight, in % of the head's height."""


def wrap_head(head: FittedHead, sculpt: Mesh, ctx: RunContext, cfg: RigConfig) -> Wrap:
    """The fitted head wrapped onto the sculpt (module docstring), its inner parts seated behind the sculpt."""
    target = as_trimesh(sculpt)
    mesh = Mesh(to_tensor(head.vertices), head.faces)
    floor = float((target.vertices @ head.up).min()) + NECK_MARGIN * head.height
    weights = data_weights(mesh, target, head.height, cfg.hair_min_thickness, head.up, floor)
    pins = landmark_pins(mesh, load_landmark_map(), target, ctx.subject.camera(512), ctx.subject.landmarks_px(512),
                         cfg.wrap_max_distance * head.height, weights)
    result = wrap_surface(head.vertices, head.faces.numpy(), target.vertices, target.faces, weights, pins,
                          WrapSettings(max_distance=cfg.wrap_max_distance), scale=head.height)
    vertices = seat_inner_parts(result.vertices, head.faces, target, head.forward)
    error = wrap_error(vertices, target.vertices, target.faces, weights > 0, head.height)
    return Wrap(vertices, weights, result.used, len(pins[0]), error)


def check_wrap(wrap: Wrap, cfg: RigConfig) -> None:
    """A UserError when too little of the skin found the sculpt; a warning when the wrap error is large."""
    skin = wrap.weights > 0
    used = float(wrap.used[skin].mean()) if skin.any() else 0.0
    if used < cfg.min_wrapped_fraction:
        raise UserError(f"rig: only {used:.0%} of the parametric skin found the sculpt within "
                        f"{cfg.wrap_max_distance:g} of the head's height (rig.min_wrapped_fraction={cfg.min_wrapped_fraction:g}): "
                        "nothing usable to wrap; rerun with rig.enabled=false to skip the rigged export")
    if wrap.error["mean_pct"] > cfg.wrap_warn_pct:
        log.warning("rig: the wrapped skin lies %.2f%% of the head's height from the sculpt on average (95th percentile "
                    "%.2f%%), above rig.wrap_warn_pct=%g: the sculpt has holes or is far from the prior; exported anyway",
                    wrap.error["mean_pct"], wrap.error["p95_pct"], cfg.wrap_warn_pct)


def write_rigged(out: Path, skin: Mesh, hair: Mesh | None, head: FittedHead, cfg: RigConfig) -> None:
    rig = head.rig
    skeleton = Skeleton(names=rig.bone_names, parents=rig.bone_parents, local=local_transforms(rig.frames, rig.bone_parents),
                        armature=head.to_world)
    morphs = MorphTargets(names=rig.action_names, deltas=frame.apply_linear(head.to_world, rig.action_offsets),
                          default_weights=np.zeros(len(rig.action_names)))
    clips = expression_clips(rig.action_names, head.photo, cfg.clip_seconds)
    attached = [AttachedMesh("hair", hair, HAIR_JOINT)] if hair is not None else []
    # "skinned": Blender's importer misplaces a joint's child meshes under a scaled armature (gltf_rig.py)
    save_rigged_glb(out / RIG_GLB, skin, rig.skin_weights, skeleton, morphs, clips, attached, attach="skinned")
    assert skin.texture is not None
    atomic.write_png(out / RIG_TEXTURE, np.asarray(texture_to_image(skin.texture)))
    if hair is not None and hair.texture is not None:
        atomic.write_png(out / HAIR_TEXTURE, np.asarray(texture_to_image(hair.texture)))


def rig_record(head: FittedHead, wrap: Wrap, hair: Mesh | None, cfg: RigConfig) -> dict:
    skin = wrap.weights > 0
    return {
        "enabled": True, "wrap_error": {k: round(float(v), 4) for k, v in wrap.error.items()},
        "skin_vertices": int(skin.sum()), "wrapped_fraction": round(float(wrap.used[skin].mean()) if skin.any() else 0.0, 4),
        "pinned_vertices": wrap.pins, "head_height": round(head.height, 5),
        "vertices": len(head.vertices), "faces": len(head.faces), "bones": len(head.rig.bone_names),
        "morph_targets": len(head.rig.action_names), "texture_size": cfg.texture_size,
        "hair": None if hair is None else {"vertices": hair.num_verts, "faces": hair.num_faces},
        "photo_expression": {k: round(v, 4) for k, v in head.photo.items() if v >= 0.01},
    }


def hair_mesh(sculpt: Mesh, textured: Mesh, wrapped: Mesh, head: FittedHead, cfg: RigConfig) -> Mesh | None:
    """The sculpt's hair volume as its own closed mesh, textured from `textured` (None when the sculpt has none; a
    warning and None when the sculpt is not closed, so that the rest still exports). Nothing below the
    ear lobes starts a hair piece: the sculpt's neck ends in a flat cut where anny's runs on (init/parametric.py)."""
    parts, _ = closed_parts(Mesh(wrapped.verts, wrapped.faces))
    ears = torch.as_tensor(anny_regions()["ear"] > 0.5)
    settings = ShellSettings(min_thickness=cfg.hair_min_thickness * head.height, resolution=cfg.hair_resolution,
                             floor=float(wrapped.verts[ears][:, 1].min()), max_faces=cfg.hair_max_faces)
    try:
        shell = outer_shell(filled(sculpt), parts[0], settings)
    except ValueError as exc:  # a sculpt with holes left has no inside: no hair mesh, the rest still exports
        log.warning("rig: no hair mesh: %s", exc)
        return None
    if shell is None:
        return None
    shell = shell_uv(shell, cfg.hair_texture_size)
    return shell.replace(texture=bake_texture(shell, textured, cfg.hair_texture_size).texture)


def filled(mesh: Mesh) -> Mesh:
    """The mesh with its boundary loops closed by fans (the sculpt's surface can be cut open where it meets the fitting
    box, e.g. at the shoulders); as it is when a boundary is not a set of simple loops."""
    try:
        return close_boundaries(mesh)
    except UserError:
        return mesh


def seat_inner_parts(vertices: np.ndarray, faces: torch.Tensor, sculpt: trimesh.Trimesh, forward: np.ndarray) -> np.ndarray:
    """(V, 3) the wrap with each part but the skin (eyeballs, teeth and tongue) moved back along `forward` until no
    vertex of it lies outside the sculpt: the wrap carries them with the skin around them, but where the sculpt's
    eyes sit deeper than anny's, an eyeball would bulge through the lids."""
    _, ids = closed_parts(Mesh(to_tensor(vertices), faces))
    seated = vertices.copy()
    for part in ids[1:]:
        index = part[part >= 0]
        for _ in range(SEAT_ROUNDS):  # the surface in front is not square to `forward`: a step may fall short
            outside = float(mesh_signed_distance(sculpt, seated[index]).max())  # > 0: outside the sculpt
            if outside <= 0:
                break
            seated[index] -= (outside + SEAT_CLEARANCE) * forward
    return seated

