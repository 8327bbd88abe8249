"""`bake_texture`: closest-point texture transfer between two UV layouts of (nearly) the same surface.

The source is a latitude-longitude sphere whose texture encodes a smooth analytic colour field of the
direction p / |p|; destinations are other tessellations / UV layouts of a slightly larger sphere.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from representations.mesh import Mesh, grid, unwrap_uv
from representations.mesh.bake import BakeResult, bake_texture, closest_source_uv
from representations.render.texel import TexelSurface, texel_surface
from representations.render.texture import sample_bilinear

SOURCE_TEXTURE = 512
OFFSET = 1.003  # destination radius: 0.3 % outside the unit source sphere


def colour_field(points: np.ndarray) -> np.ndarray:
    """(..., 3) smooth colours in [0.1, 0.9] of the directions of points (..., 3)."""
    d = points / np.linalg.norm(points, axis=-1, keepdims=True)
    waves = np.stack([np.sin(2.0 * d[..., 0] + 0.3), np.cos(1.5 * d[..., 1]), np.sin(d[..., 0] + 2.0 * d[..., 2])], axis=-1)
    return 0.5 + 0.4 * waves


def rotation_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def latlong_sphere(n_u: int, n_v: int, radius: float = 1.0, rotation: np.ndarray | None = None) -> Mesh:
    """A UV sphere, outward faces, shared vertices; UV = (longitude, latitude) with a seam at longitude 0
    (the u = 0 and u = 1 corners of one vertex are separate UV indices); ``rotation`` (3, 3) turns it."""
    theta = np.linspace(0.0, math.pi, n_v + 1)
    phi = np.linspace(0.0, 2.0 * math.pi, n_u + 1)
    th, ph = np.meshgrid(theta, phi, indexing="ij")  # (n_v + 1, n_u + 1)
    xyz = np.stack([np.sin(th) * np.cos(ph), np.cos(th), -np.sin(th) * np.sin(ph)], axis=-1) * radius
    uv = np.stack([ph / (2.0 * math.pi), 1.0 - th / math.pi], axis=-1).reshape(-1, 2)
    corner = np.arange((n_v + 1) * (n_u + 1)).reshape(n_v + 1, n_u + 1)
    a, b, c, d = corner[:-1, :-1], corner[1:, :-1], corner[1:, 1:], corner[:-1, 1:]
    uv_faces = np.concatenate([np.stack([a, b, c], -1)[:-1].reshape(-1, 3), np.stack([a, c, d], -1)[1:].reshape(-1, 3)])  # no pole slivers
    # one 3D vertex per distinct position: the seam column and each pole's row collapse
    vertex = np.arange(corner.size).reshape(corner.shape)
    vertex[:, -1] = vertex[:, 0]
    vertex[0, :], vertex[-1, :] = vertex[0, 0], vertex[-1, 0]
    used, faces = np.unique(vertex.reshape(-1)[uv_faces], return_inverse=True)
    verts = xyz.reshape(-1, 3)[used] @ (np.eye(3) if rotation is None else rotation).T
    return Mesh(torch.tensor(verts, dtype=torch.float32), torch.tensor(faces.reshape(-1, 3)),
                torch.tensor(uv, dtype=torch.float32), torch.tensor(uv_faces))


def texture_of_sphere_uv(size: int, rotation: np.ndarray | None = None) -> torch.Tensor:
    """The field painted into a latlong sphere's UV space: texel (i, j) shows longitude (j + 0.5) / size."""
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    u, v = (j + 0.5) / size, 1.0 - (i + 0.5) / size
    th, ph = (1.0 - v) * math.pi, u * 2.0 * math.pi
    points = np.stack([np.sin(th) * np.cos(ph), np.cos(th), -np.sin(th) * np.sin(ph)], axis=-1)
    if rotation is not None:
        points = points @ rotation.T
    return torch.tensor(colour_field(points), dtype=torch.float32)


@pytest.fixture(scope="module")
def source() -> Mesh:
    """A unit latlong sphere turned 1 rad about y (its seam is not the destinations' seam), textured."""
    turn = rotation_y(1.0)
    return latlong_sphere(160, 80, rotation=turn).replace(texture=texture_of_sphere_uv(SOURCE_TEXTURE, turn))


@pytest.fixture(scope="module")
def atlas_sphere() -> Mesh:
    """A differently tessellated sphere (icosphere, 2562 vertices) 0.3 % larger, with an xatlas layout."""
    ico = trimesh.creation.icosphere(subdivisions=4, radius=OFFSET)
    mesh = Mesh(torch.tensor(ico.vertices, dtype=torch.float32), torch.tensor(ico.faces))
    return unwrap_uv(mesh, 256)


def surface_of(mesh: Mesh, size: int) -> TexelSurface:
    assert mesh.uv is not None
    return texel_surface(mesh.verts, mesh.faces, mesh.uv, mesh.uv_faces, size)


def covered_errors(result: BakeResult, destination: Mesh, size: int) -> np.ndarray:
    """|baked - field| (K, 3) at the covered texels, field taken at the texels' own 3D points."""
    surface = surface_of(destination, size)
    assert torch.equal(surface.valid, result.covered)
    expected = colour_field(surface.position[surface.valid].double().numpy())
    return np.abs(result.texture[result.covered].double().numpy() - expected)


def test_colour_field_round_trip(source: Mesh, atlas_sphere: Mesh) -> None:
    result = bake_texture(atlas_sphere, source, 256)
    assert result.texture.shape == (256, 256, 3) and result.covered.shape == (256, 256)
    assert result.distance.shape == (256, 256) and result.seconds > 0
    error = covered_errors(result, atlas_sphere, 256)
    assert error.mean() < 5e-4, error.mean()  # measured 2.5e-5 (faceted source, bilinear source texture)
    assert error.max() < 1e-2, error.max()  # measured 2.2e-3
    distance = result.distance[result.covered]
    assert 0.001 < float(distance.min()) and float(distance.max()) < 0.005  # 0.3 % offset -/+ both meshes' facet sag


def test_no_texel_unfilled(source: Mesh, atlas_sphere: Mesh) -> None:
    result = bake_texture(atlas_sphere, source, 128)
    texture, covered = result.texture.numpy(), result.covered.numpy()
    assert 0.2 < covered.mean() < 0.95  # there are gutters to fill
    assert np.isfinite(texture).all() and texture.min() >= 0.0 and texture.max() <= 1.0
    assert texture.min() > 0.05  # the field stays in [0.1, 0.9]: nothing black
    # every gutter texel holds the colour of its nearest island texel
    _, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
    np.testing.assert_array_equal(texture, texture[rows, cols])
    assert (result.distance.numpy()[~covered] == 0).all()


def test_limited_dilation_fills_the_rest_with_the_mean(source: Mesh, atlas_sphere: Mesh) -> None:
    result = bake_texture(atlas_sphere, source, 128, dilate=2)
    texture, covered = result.texture.numpy(), result.covered.numpy()
    distance, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
    near, far = (distance > 0) & (distance <= 2), distance > 2
    assert near.any() and far.any()
    np.testing.assert_array_equal(texture[near], texture[rows[near], cols[near]])
    np.testing.assert_allclose(texture[far], np.broadcast_to(texture[covered].mean(axis=0), texture[far].shape), atol=1e-6)


def seam_edges(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges cut by a UV seam, seen from both faces: 3D midpoints (E, 3) and the UV midpoints on either
    side (E, 2) and (E, 2)."""
    assert mesh.uv is not None and mesh.uv_faces is not None
    faces, uv_faces = mesh.faces.numpy(), mesh.uv_faces.numpy()
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    mids, side_a, side_b = [], [], []
    uv, verts = mesh.uv.double().numpy(), mesh.verts.double().numpy()
    for f in range(len(faces)):
        for k in range(3):
            a, b = faces[f, k], faces[f, (k + 1) % 3]
            ta, tb = uv_faces[f, k], uv_faces[f, (k + 1) % 3]
            key = (min(a, b), max(a, b))
            ends = (ta, tb) if a < b else (tb, ta)
            if key not in seen:
                seen[key] = ends
            elif seen[key] != ends:
                other = seen[key]
                mids.append((verts[a] + verts[b]) / 2)
                side_a.append((uv[other[0]] + uv[other[1]]) / 2)
                side_b.append((uv[ends[0]] + uv[ends[1]]) / 2)
    return np.array(mids), np.array(side_a), np.array(side_b)


def bilinear(texture: torch.Tensor, uv: np.ndarray) -> np.ndarray:
    level = texture.permute(2, 0, 1)[None]
    return sample_bilinear(level, torch.tensor(uv, dtype=torch.float32)).double().numpy()


@pytest.mark.parametrize("layout", ["xatlas", "latlong"])
def test_seams_agree_with_the_field(source: Mesh, atlas_sphere: Mesh, layout: str) -> None:
    """Bilinear lookups exactly on seam edges (what a renderer does at a chart border) give the field's
    colour from both sides of the seam."""
    destination = atlas_sphere if layout == "xatlas" else latlong_sphere(96, 48, radius=OFFSET)
    size = 256
    result = bake_texture(destination, source, size)
    mids, uv_a, uv_b = seam_edges(destination)
    assert len(mids) > 20
    expected = colour_field(mids)
    colour_a, colour_b = bilinear(result.texture, uv_a), bilinear(result.texture, uv_b)
    for colour in (colour_a, colour_b):
        error = np.abs(colour - expected)
        assert error.mean() < 6e-3 and error.max() < 4e-2, (error.mean(), error.max())  # measured <= 2.1e-3, 1.5e-2
    assert np.abs(colour_a - colour_b).mean() < 1e-2
    if layout == "latlong":  # the u = 0 and u = 1 columns show the same meridian
        texture = result.texture.numpy()
        assert np.abs(texture[:, 0] - texture[:, -1]).mean() < 2e-2


def test_distance_reports_far_parts(source: Mesh, atlas_sphere: Mesh, caplog: pytest.LogCaptureFixture) -> None:
    verts = atlas_sphere.verts.clone()
    cap = verts[:, 1] > 0.5
    verts[cap] *= 1.25  # the northern cap floats ~0.25 away from the source
    destination = atlas_sphere.replace(verts=verts)
    with caplog.at_level(logging.WARNING, logger="headfit"):
        result = bake_texture(destination, source, 128, max_distance=0.05)
    assert "farther than 0.05" in caplog.text
    surface = surface_of(destination, 128)
    far = result.covered & (surface.position.norm(dim=-1) > 1.2)
    near = result.covered & (surface.position.norm(dim=-1) < 1.01)
    assert far.any() and near.any()
    assert float(result.distance[far].min()) > 0.15
    assert float(result.distance[near].max()) < 0.01
    assert float(result.distance[~result.covered].abs().max()) == 0.0
    # far texels still get the nearest colour: the field's colour, radially below them
    error = covered_errors(result, destination, 128)
    assert error.mean() < 5e-3


def two_sheet_source() -> Mesh:
    """A thin slab: top sheet z = 0 facing +z, red; bottom sheet z = -0.02 facing -z, blue."""
    top = grid(4, size=2.0)
    bottom = grid(4, size=2.0)
    n = top.num_verts
    assert top.uv is not None
    verts = torch.cat([top.verts, bottom.verts - torch.tensor([0.0, 0.0, 0.02])])
    faces = torch.cat([top.faces, bottom.faces.flip(1) + n])
    uv = torch.cat([top.uv * 0.5, top.uv * 0.5 + torch.tensor([0.5, 0.0])])  # left half red, right half blue
    texture = torch.zeros(8, 8, 3)
    texture[:, :4, 0] = 1.0
    texture[:, 4:, 2] = 1.0
    return Mesh(verts, faces, uv, faces.clone(), texture)


@pytest.mark.parametrize(("slack", "want"), [(None, 0), (0.0, 2)])
def test_thin_features_prefer_agreeing_normals(slack: float | None, want: int) -> None:
    """A texel facing +z, 0.012 under the top sheet and 0.008 above the bottom one: the default slack
    (0.5 % of 2 = 0.01) lets the normal-agreeing top sheet win; with no slack the nearest sheet wins."""
    destination = grid(2, size=1.0)
    destination = destination.replace(verts=destination.verts - torch.tensor([0.0, 0.0, 0.012]))
    result = bake_texture(destination, two_sheet_source(), 16, normal_slack=slack)
    colours = result.texture[result.covered]
    assert colours.shape[0] > 100
    assert bool((colours.argmax(dim=1) == want).all())
    expected = 0.012 if want == 0 else 0.008
    assert torch.allclose(result.distance[result.covered], torch.tensor(expected), atol=1e-6)


def brute_force(points: np.ndarray, normals: np.ndarray, mesh: Mesh, slack: float) -> np.ndarray:
    """Distances (N,) of the rule's choice, every point against every triangle (trimesh's closest point)."""
    triangles = mesh.verts.double().numpy()[mesh.faces.numpy()]
    n, f = len(points), len(triangles)
    closest = trimesh.triangles.closest_point(np.tile(triangles, (n, 1, 1)), np.repeat(points, f, axis=0))
    dist = np.linalg.norm(closest - np.repeat(points, f, axis=0), axis=1).reshape(n, f)
    face_normal = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    facing = normals @ face_normal.T > 0
    d_min = dist.min(axis=1)
    eligible = np.where(facing & (dist <= d_min[:, None] + slack), dist, np.inf).min(axis=1)
    return np.where(np.isfinite(eligible), eligible, d_min)


@pytest.mark.parametrize("slack", [0.0, 0.05])
def test_closest_point_search_is_exact(slack: float) -> None:
    """The pruned search against brute force on a bumpy mesh with very uneven triangles (one large face
    among small ones) and query points from on the surface to far away."""
    rng = np.random.default_rng(3)
    ico = trimesh.creation.icosphere(subdivisions=2)
    verts = ico.vertices * rng.uniform(0.8, 1.2, size=(len(ico.vertices), 1))
    verts = np.concatenate([verts, [[3.0, 0.0, 0.0], [3.0, 2.0, 0.0], [3.0, 0.0, 2.0]]])
    faces = np.concatenate([ico.faces, [[len(verts) - 3, len(verts) - 2, len(verts) - 1]]])
    mesh = Mesh(torch.tensor(verts, dtype=torch.float32), torch.tensor(faces),
                torch.rand(len(verts), 2), torch.tensor(faces))
    points = rng.normal(size=(600, 3)) * rng.choice([0.3, 1.0, 2.5], size=(600, 1))
    normals = rng.normal(size=(600, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    _, dist = closest_source_uv(points, normals, mesh, slack)
    np.testing.assert_allclose(dist, brute_force(points, normals, mesh, slack), rtol=0, atol=1e-6)


def test_bad_inputs(source: Mesh, atlas_sphere: Mesh) -> None:
    with pytest.raises(ValueError, match="destination mesh has no UV layout"):
        bake_texture(atlas_sphere.without_uv(), source, 64)
    with pytest.raises(ValueError, match="source mesh has no texture"):
        bake_texture(atlas_sphere, source.replace(texture=None), 64)
    with pytest.raises(ValueError, match="source mesh has no UV layout"):
        bake_texture(atlas_sphere, source.without_uv(), 64)
    for size in (1, 0, 2.5):
        with pytest.raises(ValueError, match="size must be an integer >= 2"):
            bake_texture(atlas_sphere, source, size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dilate"):
        bake_texture(atlas_sphere, source, 64, dilate=-1)
    with pytest.raises(ValueError, match="max_distance"):
        bake_texture(atlas_sphere, source, 64, max_distance=-0.1)
    assert atlas_sphere.uv is not None
    far_uv = atlas_sphere.replace(uv=atlas_sphere.uv + 5.0)
    with pytest.raises(ValueError, match="cover no texel"):
        bake_texture(far_uv, source, 64)
