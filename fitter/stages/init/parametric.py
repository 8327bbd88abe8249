"""Init kind `parametric`: the prior stage's fitted anny head, closed, with a hair layer from the silhouette.

1. The head: `prior/neutral.ply` when the prior's `fit.json` says `"neutralize": true` (the default),
   else `prior/posed.ply` (the photo's expression); anny's topology, in the world frame.
2. Closing: anny's head is four parts (the skin, open at the base of the neck; two eyeballs, one with a
   small hole; the teeth and tongue). Every boundary loop is filled with a fan around its centroid, so each
   part is a closed, outward-facing surface (`close_boundaries`, `check_closed`).
3. Its signed distance (`head_sdf_grid`), after one step of Loop subdivision (anny's triangles would show as
   facets at the grid's spacing): the union (minimum) of the parts' exact signed distances
   (`representations.dmtet.mesh_signed_distance`), on a coarse grid everywhere and exactly on the fine grid
   only near the surface; cavities the grid cannot hold open (the closed mouth, the eye sockets) are filled;
   the neck ends in a flat cut `NECK_CUT_MARGIN` inside the fitting box, as the template's does.
4. Hair (`fitter/stages/init/hair.py`): a layer over the scalp whose thickness comes from how far the photo's
   silhouette reaches beyond the head's own, so the hair rests on the skull instead of replacing it; none on
   the face, the ears or below the ears. The init's SDF is the head's minus that thickness.
5. `init/prior_surface.npz` (for `fit.geometry.lambda_prior_surface`): points on the skin that the hair does
   not cover and that lie on the init's outer surface, with their normals and a weight for how little the
   reference view sees them, 1 − max(0, n·v)^`VIEW_POWER` (v: from the head towards the reference camera).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from common import atomic
from common.errors import UserError
from fitter.context import RunContext
from fitter.stages.init.hair import SILHOUETTE_SIZE, HairLayer, anny_regions, hair_layer_from
from fitter.stages.init.sdf_grid import GridSDF
from representations.cameras import Camera
from representations.dmtet import mesh_signed_distance
from representations.mesh import Mesh, mesh_to_trimesh, read_mesh, vertex_normals

PRIOR_FIT, NEUTRAL_HEAD, POSED_HEAD = "fit.json", "neutral.ply", "posed.ply"
PRIOR_SURFACE = "prior_surface.npz"
NECK_CUT_MARGIN = 0.12
"""The neck ends in a flat cut this far (world units) above the fitting box's floor."""
SURFACE_SAMPLES = 20_000
"""Points drawn on the skin for `init/prior_surface.npz` (area-uniform) before those under hair are dropped."""
VIEW_POWER = 2.0
"""k in the prior-surface weight 1 − max(0, n·v)^k: the face the photo sees head-on gets ~0, the sides 1."""
SURFACE_OFFSET_SPACINGS = 2.0
"""A skin point counts as on the init's outer surface when the init's SDF is positive this many grid
spacings out along its normal (not so in a filled cavity, nor under hair)."""


def prior_head_file(prior_dir: Path) -> Path:
    """The head the later stages fit: neutral.ply when the prior neutralized the expression, else posed.ply."""
    fit_path = prior_dir / PRIOR_FIT
    if not fit_path.is_file():
        raise UserError(f"init.kind=parametric needs the prior stage's {fit_path} (rerun without --stop-after before "
                        "the prior stage, or choose another init.kind)")
    fit = json.loads(fit_path.read_text())
    path = prior_dir / (NEUTRAL_HEAD if fit.get("neutralize", True) else POSED_HEAD)
    if not path.is_file():
        raise UserError(f"init.kind=parametric: the prior stage's {path} is missing (rerun the prior stage)")
    return path


def closed_parts(mesh: Mesh) -> tuple[list[Mesh], list[np.ndarray]]:
    """The mesh's connected parts, each with its boundary loops filled, largest first, each checked closed; and
    for each part its vertices' indices in ``mesh`` (−1 for the loops' added centres)."""
    faces = mesh.faces.cpu().numpy()
    n = mesh.num_verts
    graph = coo_matrix((np.ones(2 * len(faces), dtype=np.int8), (np.r_[faces[:, 0], faces[:, 1]], np.r_[faces[:, 1], faces[:, 2]])),
                       shape=(n, n))
    _, vertex_label = connected_components(graph, directed=False)
    face_label = vertex_label[faces[:, 0]]
    parts, ids = [], []
    for label in np.argsort(-np.bincount(face_label)):
        part_faces = faces[face_label == label]
        if len(part_faces) == 0:
            continue
        used, local = np.unique(part_faces, return_inverse=True)
        part = close_boundaries(Mesh(mesh.verts[torch.as_tensor(used)].float().cpu(), torch.as_tensor(local.reshape(-1, 3))))
        check_closed(part)
        parts.append(part)
        ids.append(np.r_[used, np.full(part.num_verts - len(used), -1)])
    return parts, ids


def close_boundaries(mesh: Mesh) -> Mesh:
    """The mesh with every boundary loop filled by a fan of triangles around the loop's centroid."""
    faces = mesh.faces.cpu().numpy().astype(np.int64)
    verts = mesh.verts.cpu().double().numpy()
    loops = boundary_loops(faces, len(verts))
    new_verts, new_faces = [verts], [faces]
    next_index = len(verts)
    for loop in loops:
        new_verts.append(verts[loop].mean(0, keepdims=True))
        # the loop's half-edges a -> b belong to existing faces; the fan runs them the other way, b -> a
        a, b = loop, np.roll(loop, -1)
        new_faces.append(np.stack([b, a, np.full_like(a, next_index)], axis=1))
        next_index += 1
    return Mesh(torch.as_tensor(np.concatenate(new_verts), dtype=torch.float32), torch.as_tensor(np.concatenate(new_faces)))


def boundary_loops(faces: np.ndarray, num_verts: int) -> list[np.ndarray]:
    """Each boundary loop as its vertices in the order of its half-edges (the faces' own direction)."""
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)
    code, reverse = half[:, 0] * num_verts + half[:, 1], half[:, 1] * num_verts + half[:, 0]
    border = half[~np.isin(reverse, code)]
    following = {}
    for a, b in border.tolist():
        if a in following:
            raise UserError("init.kind=parametric: the prior head's boundary is not a set of simple loops")
        following[a] = b
    loops = []
    while following:
        start, loop = next(iter(following)), []
        vertex = start
        while True:
            loop.append(vertex)
            vertex = following.pop(vertex, -1)
            if vertex == start:
                break
            if vertex < 0:
                raise UserError("init.kind=parametric: the prior head's boundary is not a set of simple loops")
        loops.append(np.array(loop))
    return loops


def check_closed(mesh: Mesh) -> None:
    """Watertight (every edge in exactly two faces, once each way) and facing outwards (positive volume)."""
    faces = mesh.faces.cpu().numpy().astype(np.int64)
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    code = half[:, 0] * mesh.num_verts + half[:, 1]
    reverse = half[:, 1] * mesh.num_verts + half[:, 0]
    if len(np.unique(code)) != len(code) or not np.isin(reverse, code).all():
        raise UserError("init.kind=parametric: the prior head is not closed after filling its boundary loops")
    if not mesh_to_trimesh(mesh).volume > 0:
        raise UserError("init.kind=parametric: the prior head's faces do not face outwards")


def subdivided(mesh: Mesh) -> tuple[Mesh, np.ndarray]:
    """One step of Loop subdivision (anny's 4.5k vertices are facets at the init grid's spacing) and each new
    face's parent face (trimesh keeps a face's four children together, in order)."""
    verts, faces = trimesh.remesh.subdivide_loop(mesh.verts.double().numpy(), mesh.faces.numpy(), iterations=1)
    return (Mesh(torch.as_tensor(verts, dtype=torch.float32), torch.as_tensor(faces, dtype=torch.long)),
            np.repeat(np.arange(mesh.num_faces), 4))


def parts_sdf(parts: list[Mesh]):  # type: ignore[no-untyped-def]
    """Signed distance (negative inside) of the union of closed parts (largest first): a function of (N, 3)
    points. A smaller part is evaluated only where its bounding box is nearer than the union so far."""
    meshes = [mesh_to_trimesh(part) for part in parts]
    boxes = [(part.verts.min(0).values.double().numpy(), part.verts.max(0).values.double().numpy()) for part in parts]

    def sdf(points: torch.Tensor) -> torch.Tensor:
        p = points.double().cpu().numpy()
        out = mesh_signed_distance(meshes[0], p)
        for mesh, (low, high) in zip(meshes[1:], boxes[1:]):
            to_box = np.linalg.norm(np.maximum(np.maximum(low - p, p - high), 0.0), axis=1)
            near = to_box < out
            if near.any():
                out[near] = np.minimum(out[near], mesh_signed_distance(mesh, p[near]))
        return torch.as_tensor(out, dtype=torch.float32)

    return sdf


def grid_points(resolution: int, bound: float) -> torch.Tensor:
    axis = torch.linspace(-bound, bound, resolution, dtype=torch.float32)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def head_sdf_grid(parts: list[Mesh], resolution: int, bound: float, hair: HairLayer | None = None,
                  band_spacings: float = 2.0) -> tuple[GridSDF, GridSDF]:
    """(head SDF, head SDF − hair thickness) on a resolution³ grid.

    Exact distances on a grid of half the resolution, then exactly again on the fine grid only where either
    field is within `band_spacings` coarse spacings of zero; elsewhere the coarse field, interpolated."""
    exact = parts_sdf(parts)
    coarse_res = resolution // 2 + 1
    coarse = GridSDF(exact(grid_points(coarse_res, bound)).reshape((coarse_res,) * 3), bound)
    thickness_coarse = GridSDF.from_function(hair.thickness, coarse_res, bound) if hair is not None else None
    points = grid_points(resolution, bound)
    band = band_spacings * 2 * bound / (coarse_res - 1)
    values = torch.cat([coarse(chunk) for chunk in points.split(1 << 18)])
    thickness = torch.zeros(len(points))
    near = values.abs() < band
    if thickness_coarse is not None:
        thickness = torch.cat([thickness_coarse(chunk) for chunk in points.split(1 << 18)]).clamp_min(0.0)
        near |= (values - thickness).abs() < band
    values[near] = exact(points[near])  # one call: each part's search structures are built once
    head_grid = fill_cavities(cut_neck(GridSDF(values.reshape((resolution,) * 3), bound)))
    with_hair = fill_cavities(cut_neck(GridSDF((values - thickness).reshape((resolution,) * 3), bound)))
    return head_grid, with_hair


def cut_neck(sdf: GridSDF) -> GridSDF:
    """The field with everything below `NECK_CUT_MARGIN` above the box's floor outside (a flat cut)."""
    axis = torch.linspace(-sdf.bound, sdf.bound, sdf.resolution)
    floor = (-sdf.bound + NECK_CUT_MARGIN) - axis  # positive below the cut
    return GridSDF(torch.maximum(sdf.values, floor[None, :, None]), sdf.bound)


def fill_cavities(sdf: GridSDF) -> GridSDF:
    """Outside regions not connected to the box's border (a closed mouth's cavity, deep eye sockets) become
    inside, one grid spacing deep, so the field has one outer surface and no voids."""
    outside = sdf.values.numpy() > 0
    labels, count = ndimage.label(outside)
    border = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(), labels[:, :, [0, -1]].ravel()]))
    void = outside & ~np.isin(labels, border)
    if not void.any():
        return sdf
    values = sdf.values.clone()
    values[torch.from_numpy(void)] = -2 * sdf.bound / (sdf.resolution - 1)
    return GridSDF(values, sdf.bound)


def prior_surface(skin: Mesh, sampled_faces: np.ndarray, init_sdf: GridSDF, hair: HairLayer | None, view_dir: np.ndarray,
                  count: int = SURFACE_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    """Points on the skin's `sampled_faces` (a boolean per face; area-uniform) where no hair covers it and the
    init's outer surface passes, with their unit normals and weights 1 − max(0, n·view_dir)^VIEW_POWER."""
    rng = np.random.default_rng(seed)
    verts, faces = skin.verts.double().numpy(), skin.faces.numpy()[sampled_faces]
    tri = verts[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    chosen = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    points = (tri[chosen] * bary[:, :, None]).sum(1)
    vn = vertex_normals(skin.verts.double(), skin.faces).numpy()  # the fans' vertices are not sampled
    normals = (vn[faces[chosen]] * bary[:, :, None]).sum(1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
    spacing = 2 * init_sdf.bound / (init_sdf.resolution - 1)
    offset = SURFACE_OFFSET_SPACINGS * spacing
    outside = init_sdf(torch.as_tensor(points + offset * normals, dtype=torch.float32)).numpy() > 0.5 * offset
    on_surface = np.abs(init_sdf(torch.as_tensor(points, dtype=torch.float32)).numpy()) < 0.5 * spacing
    bare = hair.thickness(torch.as_tensor(points, dtype=torch.float32)).numpy() < 0.25 * spacing if hair is not None else True
    keep = outside & on_surface & bare
    view = np.asarray(view_dir, dtype=np.float64) / np.linalg.norm(view_dir)
    weights = 1.0 - np.clip(normals @ view, 0.0, 1.0) ** VIEW_POWER
    return {"points": points[keep].astype(np.float32), "normals": normals[keep].astype(np.float32),
            "weights": weights[keep].astype(np.float32), "view_dir": view.astype(np.float32)}


@dataclass
class ParametricHead:
    sdf: GridSDF
    """The init: the head with its hair layer."""
    head_sdf: GridSDF
    """The head alone."""
    hair: HairLayer
    surface: dict[str, np.ndarray]
    """What `prior_surface` returns."""
    parts: int


def parametric_head(mesh: Mesh, mask: np.ndarray, camera: Camera, resolution: int, bound: float, seed: int = 0) -> ParametricHead:
    """The init of a prior head ``mesh`` (anny's topology, world frame) whose photo has the foreground ``mask``
    (H, W) in [0, 1] seen by ``camera`` (at the mask's size)."""
    if mesh.num_verts != len(anny_regions()["ear"]):
        raise UserError(f"init.kind=parametric: the prior head has {mesh.num_verts} vertices, not anny's {len(anny_regions()['ear'])}")
    parts, ids = closed_parts(mesh)
    hair = hair_layer_from(parts[0], ids[0], parts, mask, camera)
    smooth = [subdivided(part) for part in parts]
    head_sdf, sdf = head_sdf_grid([part for part, _ in smooth], resolution, bound, hair)
    skin, parent = smooth[0]
    on_skin = (ids[0][parts[0].faces.numpy()] >= 0).all(1)[parent]  # not the fans that close the loops
    surface = prior_surface(skin, on_skin, sdf, hair, camera.position - hair.centre, seed=seed)
    return ParametricHead(sdf, head_sdf, hair, surface, len(parts))


def parametric_init(ctx: RunContext, out: Path, bound: float, resolution: int) -> tuple[GridSDF, dict]:
    """The init SDF of init.kind=parametric; writes `init/prior_surface.npz` on the way."""
    source = prior_head_file(ctx.out / "prior")
    subject = ctx.subject
    head = parametric_head(read_mesh(source), subject.mask(SILHOUETTE_SIZE).numpy(), subject.camera(SILHOUETTE_SIZE),
                           resolution, bound, seed=ctx.cfg.run.seed % (2**32))
    atomic.write_npz(out / PRIOR_SURFACE, **head.surface)
    info = {"kind": "parametric", "source": f"prior/{source.name}", "parts": head.parts,
            "hair": head.hair.summary(), "prior_surface_points": int(len(head.surface["points"]))}
    return head.sdf, info


def read_prior_surface(init_dir: Path) -> dict[str, np.ndarray] | None:
    """What `prior_surface` wrote (None when the init wrote none: another init.kind)."""
    path = init_dir / PRIOR_SURFACE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
