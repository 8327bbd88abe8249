"""Derive the fixed map from MediaPipe's 478 refined FaceMesh landmarks to the anny head's surface.

Writes representations/parametric/anny_landmarks.json: per landmark a triangle of `HeadModel.faces` and
barycentric weights (read by `representations.parametric.landmarks.load_landmark_map`), plus the settings used
and the reprojection error of every render it was derived from.

Method: the intake's own landmarker on renders of the head, triangulated onto the surface.

1. Head parts. Besides the skin (4200 vertices, open only at the neck) the head mesh has three separate pieces:
   two eye surfaces (caps of eyeball-like spheres, radius about 16 mm, that close the eye openings; they follow
   the eyeLook* actions, not blinks) and the mouth's inside (teeth and tongue). The iris centre of each eye is
   put on its sphere's front pole (gaze straight ahead along anny's -y).
2. Frame. Vertices go to the project's world frame (`anny_to_world`: (x, z, -y) * 0.5/0.063 world units per
   metre, shifted so the template's iris mid-point is where the canonical landmark layout has it).
3. Renders. Our rasterizer (torch backend) at 512² framed like the intake's aligned crop (PanoHead's focal,
   eyes 128 px apart), with a procedural photo look that sticks to the surface like a texture (`HeadLook`):
   skin albedo, Lambert + ambient light from above-left, ambient occlusion of the template (96 directions),
   irises (11.8 mm) with pupils on the eye surfaces, a dark mouth inside, and painted lips and brows. Where to
   paint those comes from a first pass on the bare template: its lip contours (outer minus inner) and brow
   contours, projected into the frontal view, are the paint's polygons.
4. Observations. `SHAPES` (the template and four other phenotypes) at each of `VIEWS` (camera azimuth 0, ±10,
   ±20 degrees and elevation ±10), each run through `fitter.stages.intake.detection.detect_faces`.
5. Surface points. For each landmark, the surface point (fixed triangle and barycentrics, so it moves with
   the shape) whose projections best match the detections, summed over all observations of pass 2: a
   triangulation constrained to the surface. Search: the best vertex, then twice the best point of a
   barycentric grid (step 1/16) on the triangles around the best so far. The face mesh's 468 landmarks may
   only sit on the skin (so eyelid and lip landmarks move with blinks and the jaw, never on the eye surfaces or
   teeth); the 5 landmarks of each iris only on that eye's surface.

Detections of a fixed surface point move by 1-2 px between views (MediaPipe places smooth-skin points partly
by its own prior and the face-oval points near the silhouette), which no fixed map can follow; the JSON's
"reprojection" lists the mean/median/max per render (over the 468 face landmarks at 512²) and
"landmark_rms_px" each landmark's RMS error over all renders (largest on the face oval; a fit may weight by it).

Run: python tools/derive_anny_landmarks.py [--debug DIR] [--out PATH]  (about a minute on one CPU thread;
--debug writes every render with its detections drawn, and with the map's projections in blue).
tests/representations/test_parametric_landmarks.py checks the committed map on fresh renders.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.atomic import write_bytes  # noqa: E402
from fitter.stages.intake import meshpoints as mpi  # noqa: E402
from fitter.stages.intake.detection import detect_faces  # noqa: E402
from fitter.stages.intake.pose import canonical_landmarks  # noqa: E402
from representations.cameras import PANOHEAD_FOCAL, Camera, look_at, orbit_position  # noqa: E402
from representations.parametric import HeadModel, head_model  # noqa: E402
from representations.parametric.landmarks import FORMAT, LANDMARK_MAP_PATH  # noqa: E402
from representations.render.fragments import interpolate_packed, scatter_image  # noqa: E402
from representations.render.rasterizer import default_rasterizer, vertex_normals  # noqa: E402

SIZE = 512
SCALE = 0.5 / 0.063
"""World units per metre: the canonical layout's pupil distance (0.5 units) is 6.3 cm."""
EYE_DISTANCE_PX = 128.0
"""The intake's aligned crop is four eye distances wide."""
VIEWS = ((0.0, 0.0), (10.0, 0.0), (-10.0, 0.0), (20.0, 0.0), (-20.0, 0.0), (0.0, 10.0), (0.0, -10.0))
"""(camera azimuth, elevation) in degrees; azimuth +20 sees more of the subject's left cheek."""
SHAPES: dict[str, dict[str, float]] = {
    "template": {},
    "female": {"gender": 1.0},
    "old": {"age": 1.0, "weight": 0.7},
    "young thin": {"age": 0.45, "weight": 0.15, "muscle": 0.7},
    "child": {"age": 0.25, "proportions": 0.8},
}
"""Phenotypes rendered (anny's, 0.5 = average; the rest at their defaults): one map that fits them all."""
IRIS_RADIUS = 0.0059  # metres (a human iris is about 11.8 mm across)
PUPIL_RADIUS = 0.0022
SKIN = (0.80, 0.60, 0.50)
LIPS = (0.62, 0.33, 0.32)
SCLERA = (0.93, 0.91, 0.88)
IRIS = (0.30, 0.20, 0.12)
PUPIL = (0.03, 0.03, 0.03)
MOUTH = (0.12, 0.05, 0.05)
BROWS = (0.22, 0.15, 0.10)
BACKGROUND = 0.5
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)  # upper contour outwards-in, then the lower one back
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)


@dataclass
class HeadParts:
    """Which triangles are what: `part` (F,) 0 skin, 1 right eye surface, 2 left eye surface, 3 mouth inside
    (sides are the subject's); `iris_centres` (2, 3) right, left (anny's frame, metres)."""

    part: np.ndarray
    iris_centres: np.ndarray


def landmark_candidates(parts: HeadParts) -> list[np.ndarray]:
    """The triangles each landmark may sit on: the skin for the face mesh's 468 (so eyelid and lip landmarks
    move with blinks and the jaw), its eye surface for each iris's 5."""
    skin, right, left = (np.nonzero(parts.part == k)[0] for k in (0, 1, 2))
    return [skin] * mpi.NUM_MESH + [right] * 5 + [left] * 5


def head_parts(model: HeadModel, vertices: np.ndarray) -> HeadParts:
    """The separate pieces of the head mesh: the main surface, two eye patches and the mouth's inside.
    Eye patches are spheres' caps: the iris centre is the cap's point furthest along the gaze (-y)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    faces = model.faces.numpy()
    n = len(vertices)
    graph = coo_matrix((np.ones(faces.size), (faces.ravel(), np.roll(faces, 1, 1).ravel())), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    if len(sizes) != 4:
        raise SystemExit(f"expected the head mesh in 4 pieces (skin, two eyes, mouth inside), found {len(sizes)}")
    main = int(sizes.argmax())
    part = np.zeros(len(faces), dtype=np.int64)
    centres = np.zeros((2, 3))
    for comp in range(len(sizes)):
        if comp == main:
            continue
        ids = np.nonzero(label == comp)[0]
        centre = vertices[ids].mean(0)
        if abs(centre[0]) < 0.01:  # on the midline: the mouth's inside (teeth, tongue)
            part[label[faces[:, 0]] == comp] = 3
            continue
        side = 0 if centre[0] < 0 else 1  # subject's right is anny's -x
        part[label[faces[:, 0]] == comp] = 1 + side
        sphere_centre, radius = fit_sphere(vertices[ids])
        centres[side] = sphere_centre + radius * np.array([0.0, -1.0, 0.0])
    return HeadParts(part, centres)


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    a = np.column_stack([2 * points, np.ones(len(points))])
    b = (points**2).sum(1)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    centre = sol[:3]
    return centre, float(np.sqrt(sol[3] + centre @ centre))


def anny_to_world(vertices: torch.Tensor, iris_centres: np.ndarray) -> torch.Tensor:
    """(..., V, 3) anny (metres, z up, face -y) -> world (y up, face +z), the irises' mid-point placed where
    the canonical layout has its iris mid-point."""
    canonical = canonical_landmarks()
    target = 0.5 * (canonical[mpi.RIGHT_IRIS_CENTRE] + canonical[mpi.LEFT_IRIS_CENTRE])
    mid = iris_centres.mean(0)
    offset = torch.as_tensor(target - SCALE * np.array([mid[0], mid[2], -mid[1]]), dtype=vertices.dtype)
    return SCALE * torch.stack([vertices[..., 0], vertices[..., 2], -vertices[..., 1]], -1) + offset


def view_camera(azimuth: float, elevation: float, size: int = SIZE) -> Camera:
    """A PanoHead-focal camera looking at the mid-eye point from the distance that puts the eyes (0.5 world
    units apart) EYE_DISTANCE_PX * size / SIZE pixels apart."""
    canonical = canonical_landmarks()
    target = 0.5 * (canonical[mpi.RIGHT_IRIS_CENTRE] + canonical[mpi.LEFT_IRIS_CENTRE])
    distance = 0.5 * PANOHEAD_FOCAL * SIZE / EYE_DISTANCE_PX
    eye = target + orbit_position(azimuth, elevation, distance)
    return Camera.from_normalized_focal(np.linalg.inv(look_at(eye, target)), size)


def ambient_occlusion(world: torch.Tensor, faces: torch.Tensor, directions: int = 96, size: int = 256) -> np.ndarray:
    """(V,) cosine-weighted share of directions each vertex sees the sky in (its normal's hemisphere), from
    depth renders of the head along `directions` directions (a Fibonacci sphere)."""
    rasterizer = default_rasterizer("torch")
    world_f = world.float()
    normals = vertex_normals(world_f, faces).numpy()
    points = world.numpy()
    centre = points.mean(0)
    radius = float(np.linalg.norm(points - centre, axis=1).max()) * 1.05
    k = np.arange(directions) + 0.5
    z = 1 - 2 * k / directions
    phi = np.pi * (1 + 5**0.5) * k
    dirs = np.column_stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z])
    seen = np.zeros(len(points))
    total = np.zeros(len(points))
    distance = 40.0 * radius
    fov = float(np.degrees(2 * np.arctan(radius / distance)))
    tolerance = 3.0 * 2 * radius / size
    for d in dirs:
        up = (0.0, 1.0, 0.0) if abs(d[1]) < 0.9 else (1.0, 0.0, 0.0)
        camera = Camera.from_fov(np.linalg.inv(look_at(centre + distance * d, centre, up)), fov, size)
        depth_map = rasterizer.rasterize(world_f, faces, camera).depth.numpy()
        uv, depth = camera.project(points)
        col = np.clip(uv[:, 0].astype(int), 0, size - 1)
        row = np.clip(uv[:, 1].astype(int), 0, size - 1)
        visible = depth <= depth_map[row, col] + tolerance
        weight = np.clip(normals @ d, 0.0, None)
        seen += weight * visible
        total += weight
    return seen / np.maximum(total, 1e-9)


@dataclass
class Paint:
    """Lips and brows painted onto the skin: MediaPipe's lip and brow contours (from a first pass of the map)
    in the pixels of `camera` (the frontal view of the template); a template point is painted where it
    projects inside them."""

    camera: Camera
    lips: np.ndarray  # (20, 2) outer lip contour
    mouth: np.ndarray  # (20, 2) inner lip contour
    brows: tuple[np.ndarray, np.ndarray]

    @classmethod
    def from_points(cls, camera: Camera, points: np.ndarray) -> "Paint":
        uv = camera.project(points)[0]
        return cls(camera, uv[list(LIPS_OUTER)], uv[list(LIPS_INNER)], (uv[list(RIGHT_BROW)], uv[list(LEFT_BROW)]))

    def albedo(self, template_world: np.ndarray, albedo: np.ndarray) -> np.ndarray:
        from matplotlib.path import Path as Polygon

        uv = self.camera.project(template_world)[0]
        albedo = albedo.copy()
        albedo[Polygon(self.lips).contains_points(uv) & ~Polygon(self.mouth).contains_points(uv)] = LIPS
        for brow in self.brows:
            albedo[Polygon(brow).contains_points(uv)] = BROWS
        return albedo


class HeadLook:
    """A procedural "photo" look attached to the head's surface like a texture: every pixel is coloured from
    the template position of its surface point (interpolated over whatever shape is rendered), so it follows
    phenotypes, local changes and facial actions. Skin albedo, irises with pupils on the eye surfaces, a dark
    mouth inside, optional painted lips and brows; Lambert + ambient light from above-left of the camera,
    darkened by the template's ambient occlusion."""

    def __init__(self, model: HeadModel, paint: Paint | None = None):
        with torch.no_grad():
            self.template_anny = model()[0].double()
        self.faces = model.faces
        self.parts = head_parts(model, self.template_anny.numpy())
        self.template_world = self.to_world(self.template_anny)
        self.occlusion = torch.as_tensor(ambient_occlusion(self.template_world, self.faces), dtype=torch.float32)[:, None]
        self.paint = paint

    def to_world(self, anny: torch.Tensor) -> torch.Tensor:
        """(..., V, 3) anny vertices -> world, with the template's offset (`anny_to_world`)."""
        return anny_to_world(anny, self.parts.iris_centres)

    def render(self, world: torch.Tensor, camera: Camera) -> np.ndarray:
        """(H, W, 3) uint8 image of the head with world vertices (V, 3) (same topology as the template)."""
        world = world.detach().float()
        frags = default_rasterizer("torch").rasterize(world, self.faces, camera)
        face = frags.face.numpy()
        attributes = torch.cat([self.template_anny.float(), self.template_world.float(), self.occlusion], 1)
        at = interpolate_packed(attributes, frags).numpy().astype(np.float64)
        anny, template_world, occlusion = at[:, :3], at[:, 3:6], at[:, 6:]
        normal = torch.nn.functional.normalize(interpolate_packed(vertex_normals(world, self.faces), frags), dim=1)
        part = self.parts.part[face]
        albedo = np.tile(np.array(SKIN), (len(face), 1))
        if self.paint is not None:
            skin = np.nonzero(part == 0)[0]
            albedo[skin] = self.paint.albedo(template_world[skin], albedo[skin])
        albedo[part == 3] = MOUTH
        for side in (0, 1):
            on = part == 1 + side
            d = np.linalg.norm((anny[on] - self.parts.iris_centres[side])[:, [0, 2]], axis=1)[:, None]
            albedo[on] = np.where(d < PUPIL_RADIUS, PUPIL, np.where(d < IRIS_RADIUS, IRIS, SCLERA))
        key = camera.c2w[:3, :3] @ np.array([-0.3, 0.5, 1.0])
        light = torch.nn.functional.normalize(torch.as_tensor(key, dtype=torch.float32), dim=0)
        lambert = (normal @ light).clamp(min=0).numpy()[:, None]
        colour = albedo * (0.35 + 0.65 * lambert) * (0.4 + 0.6 * occlusion)
        image = scatter_image(torch.as_tensor(colour, dtype=torch.float32), frags, BACKGROUND).clamp(0, 1)
        return (image.numpy() * 255 + 0.5).astype(np.uint8)


def detect(image: np.ndarray) -> np.ndarray | None:
    faces = detect_faces(image)
    return faces[0].points if faces else None


def draw(image: np.ndarray, points: np.ndarray, path: Path, others: np.ndarray | None = None) -> None:
    from PIL import Image, ImageDraw

    im = Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2))
    pen = ImageDraw.Draw(im)
    for pts, colour in ((others, (0, 90, 255)), (points, (0, 255, 0))):
        if pts is None:
            continue
        for k, (x, y) in enumerate(pts[:, :2] * 2):
            fill = (255, 0, 0) if k in (mpi.MOUTH_LEFT_CORNER, mpi.MOUTH_RIGHT_CORNER, mpi.NOSE_TIP, mpi.CHIN) else colour
            pen.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=fill)
    im.save(path)


@dataclass
class Observation:
    """One render: the shape's world vertices (V, 3), the camera, the image and the landmarks found on it."""

    shape: str
    azimuth: float
    elevation: float
    world: np.ndarray
    camera: Camera
    image: np.ndarray
    points: np.ndarray


def shape_world(model: HeadModel, look: HeadLook, phenotype: dict[str, float]) -> np.ndarray:
    with torch.no_grad():
        return look.to_world(model(phenotype or None)[0].double()).numpy()


def observe(model: HeadModel, look: HeadLook, shapes: dict[str, dict[str, float]], debug: Path | None,
            tag: str) -> list[Observation]:
    """Each of `shapes` at each of `VIEWS`, rendered and run through the intake's landmarker."""
    observations = []
    for shape, phenotype in shapes.items():
        world = shape_world(model, look, phenotype)
        for azimuth, elevation in VIEWS:
            camera = view_camera(azimuth, elevation)
            image = look.render(torch.as_tensor(world), camera)
            points = detect(image)
            if points is None:
                raise SystemExit(f"no face found on the render of {shape} at azimuth {azimuth}, elevation {elevation}")
            observations.append(Observation(shape, azimuth, elevation, world, camera, image, points))
            if debug is not None:
                draw(image, points, debug / f"{tag}_{shape.replace(' ', '_')}_{azimuth:+.0f}_{elevation:+.0f}.png")
    return observations


def barycentric_grid(steps: int) -> np.ndarray:
    """(K, 3) barycentrics on a regular grid over a triangle, corners included."""
    i, j = np.meshgrid(np.arange(steps + 1), np.arange(steps + 1), indexing="ij")
    keep = i + j <= steps
    b1, b2 = i[keep] / steps, j[keep] / steps
    return np.column_stack([1 - b1 - b2, b1, b2])


def projections(observations: list[Observation], faces: np.ndarray, triangles: list[int] | np.ndarray,
                bary: np.ndarray) -> np.ndarray:
    """(observations, len(triangles) * len(bary), 2) pixels of the surface points (triangle, barycentrics)."""
    out = []
    for obs in observations:
        points = np.einsum("kc,tcd->tkd", bary, obs.world[faces[triangles]]).reshape(-1, 3)
        out.append(obs.camera.project(points)[0])
    return np.stack(out)


def fit_surface_points(observations: list[Observation], faces: np.ndarray,
                       candidates: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per landmark the surface point (of its candidate triangles) whose projections best match the detections,
    summed over all observations (a triangulation constrained to the surface, over shapes and views): the best
    vertex of the candidate triangles, then twice the best point of a fine barycentric grid on the triangles
    around the best so far. Triangles (N,) and barycentrics (N, 3)."""
    fine = barycentric_grid(16)
    tri_out = np.zeros(len(candidates), dtype=np.int64)
    bary_out = np.zeros((len(candidates), 3))
    vertex_faces: dict[int, list[int]] = {}
    for f, corners in enumerate(faces):
        for v in corners:
            vertex_faces.setdefault(int(v), []).append(f)
    found = np.stack([obs.points[:, :2] for obs in observations])  # (observations, 478, 2)
    vertex_px = np.stack([obs.camera.project(obs.world)[0] for obs in observations])  # (observations, V, 2)
    for k, allowed in enumerate(candidates):
        allowed_set = set(allowed.tolist())
        vertices = np.unique(faces[allowed])
        cost = np.linalg.norm(vertex_px[:, vertices] - found[:, k, None, :], axis=2).sum(0)
        ring = sorted(set(vertex_faces[int(vertices[cost.argmin()])]) & allowed_set)
        for _ in range(2):
            cost = np.linalg.norm(projections(observations, faces, ring, fine) - found[:, k, None, :], axis=2).sum(0)
            best = int(cost.argmin())
            tri, bary = ring[best // len(fine)], fine[best % len(fine)]
            ring = sorted({f for v in faces[tri] for f in vertex_faces[int(v)]} & allowed_set)
        tri_out[k], bary_out[k] = tri, bary
    return tri_out, bary_out


def reprojection(observations: list[Observation], faces: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> list[dict]:
    report = []
    for obs in observations:
        mapped = (bary[:, :, None] * obs.world[faces[tri]]).sum(1)
        err = np.linalg.norm(obs.camera.project(mapped)[0] - obs.points[:, :2], axis=1)
        face_err = err[: mpi.NUM_MESH]
        report.append({"shape": obs.shape, "azimuth": obs.azimuth, "elevation": obs.elevation,
                       "mean_px": round(float(face_err.mean()), 3), "median_px": round(float(np.median(face_err)), 3),
                       "max_px": round(float(face_err.max()), 3), "iris_mean_px": round(float(err[mpi.NUM_MESH:].mean()), 3)})
    return report


def landmark_rms(observations: list[Observation], faces: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """(478,) per landmark the RMS over all observations of its reprojection error (how steadily MediaPipe
    places it on the surface: a fit may weight landmarks by it)."""
    squared = []
    for obs in observations:
        mapped = (bary[:, :, None] * obs.world[faces[tri]]).sum(1)
        squared.append(((obs.camera.project(mapped)[0] - obs.points[:, :2]) ** 2).sum(1))
    return np.sqrt(np.mean(squared, axis=0))


def derive(debug: Path | None = None) -> dict:
    model = head_model()
    look = HeadLook(model)
    faces = model.faces.numpy()
    candidates = landmark_candidates(look.parts)
    # Pass 1 (the template, bare skin): its lip and brow landmarks say where to paint lips and brows.
    tri, bary = fit_surface_points(observe(model, look, {"template": {}}, debug, "pass1"), faces, candidates)
    look.paint = Paint.from_points(view_camera(0.0, 0.0), (bary[:, :, None] * look.template_world.numpy()[faces[tri]]).sum(1))
    observations = observe(model, look, SHAPES, debug, "pass2")
    tri, bary = fit_surface_points(observations, faces, candidates)
    if debug is not None:
        for obs in observations:
            mapped = (bary[:, :, None] * obs.world[faces[tri]]).sum(1)
            name = f"map_{obs.shape.replace(' ', '_')}_{obs.azimuth:+.0f}_{obs.elevation:+.0f}.png"
            draw(obs.image, obs.points, debug / name, obs.camera.project(mapped)[0])
    return {
        "format": FORMAT,
        "num_faces": int(len(faces)),
        "method": "MediaPipe FaceMesh (the intake's detector) on 512² renders of the anny head (several phenotypes "
                  "and views); per landmark the surface point whose projections best match the detections "
                  "(tools/derive_anny_landmarks.py)",
        "shapes": SHAPES,
        "views": [list(v) for v in VIEWS],
        "reprojection": reprojection(observations, faces, tri, bary),
        "landmark_rms_px": np.round(landmark_rms(observations, faces, tri, bary), 2).tolist(),
        "faces": tri.tolist(),
        "barycentrics": [[round(float(x), 6) for x in row] for row in bary],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debug", type=Path, help="write renders with the detected landmarks here")
    parser.add_argument("--out", type=Path, default=LANDMARK_MAP_PATH)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.debug:
        args.debug.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = derive(args.debug)
    write_bytes(args.out, (json.dumps(data, separators=(",", ":")) + "\n").encode())
    for row in data["reprojection"]:
        print(json.dumps(row))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
