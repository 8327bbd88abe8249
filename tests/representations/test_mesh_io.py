"""GLB / OBJ+MTL+PNG / PLY export and import, the uv orientation, and axis conversion on load."""

import errno
import json
import struct

import numpy as np
import pytest
import torch
import trimesh

import representations.mesh.export as mesh_export
from representations.mesh import (
    Mesh,
    MeshFormatError,
    UnwrapOptions,
    grid,
    icosphere,
    load_mesh,
    read_mesh,
    rotation_to_canonical,
    save_glb,
    save_mesh,
    save_obj,
    save_ply,
    unwrap_uv,
    uv_to_grid,
    uv_to_pixel,
    vertex_normals,
)


@pytest.fixture(scope="module")
def textured_sphere() -> Mesh:
    mesh = unwrap_uv(icosphere(2), 64, UnwrapOptions(padding=2))
    levels = torch.randint(0, 256, (48, 64, 3), generator=torch.Generator().manual_seed(0))
    return mesh.replace(texture=levels.float() / 255.0)


def corner_uvs(mesh: Mesh) -> torch.Tensor:
    return mesh.uv[mesh.uv_faces]


def assert_same_textured_mesh(loaded: Mesh, original: Mesh, atol: float) -> None:
    assert torch.allclose(loaded.verts, original.verts, atol=atol, rtol=0)
    assert torch.equal(loaded.faces, original.faces)
    assert torch.allclose(corner_uvs(loaded), corner_uvs(original), atol=1e-6, rtol=0)
    assert torch.equal(loaded.texture, original.texture)


def glb_json(path) -> dict:
    data = path.read_bytes()
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A  # "JSON"
    return json.loads(data[20 : 20 + length])


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_glb_round_trip_and_material(tmp_path, textured_sphere):
    save_glb(textured_sphere, tmp_path / "head.glb")
    assert_same_textured_mesh(read_mesh(tmp_path / "head.glb"), textured_sphere, atol=0.0)
    tree = glb_json(tmp_path / "head.glb")
    (material,) = tree["materials"]
    pbr = material["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == pytest.approx(0.8)
    assert "baseColorTexture" in pbr and material.get("doubleSided", False) is False
    assert [image["mimeType"] for image in tree["images"]] == ["image/png"]
    assert leftovers(tmp_path) == []


def test_obj_round_trip_writes_mtl_and_png_with_relative_links(tmp_path, textured_sphere):
    save_mesh(textured_sphere, tmp_path / "head.obj")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.mtl", "head.obj", "head.png"]
    assert (tmp_path / "head.obj").read_text().startswith("mtllib head.mtl\n")
    mtl = (tmp_path / "head.mtl").read_text().splitlines()
    assert "Kd 1 1 1" in mtl and "map_Kd head.png" in mtl
    assert_same_textured_mesh(read_mesh(tmp_path / "head.obj"), textured_sphere, atol=1e-6)


def test_obj_set_is_untouched_when_writing_fails(tmp_path, textured_sphere, monkeypatch):
    save_obj(textured_sphere, tmp_path / "head.obj")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(_texture):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mesh_export, "texture_to_image", broken)
    with pytest.raises(OSError, match="No space left on device") as info:
        save_obj(textured_sphere.replace(verts=textured_sphere.verts * 2.0), tmp_path / "head.obj")
    assert info.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_untextured_obj_is_a_single_file(tmp_path):
    sphere = icosphere(1)
    save_obj(sphere, tmp_path / "plain.obj")
    assert [p.name for p in tmp_path.iterdir()] == ["plain.obj"]
    loaded = read_mesh(tmp_path / "plain.obj")
    assert torch.allclose(loaded.verts, sphere.verts, atol=1e-6) and torch.equal(loaded.faces, sphere.faces)


def test_ply_round_trip_with_vertex_colours(tmp_path):
    sphere = icosphere(2)
    colours = torch.randint(0, 256, (sphere.num_verts, 3)).float() / 255.0
    save_ply(sphere, tmp_path / "head.ply", vertex_colors=colours)
    loaded = read_mesh(tmp_path / "head.ply")
    assert torch.equal(loaded.verts, sphere.verts) and torch.equal(loaded.faces, sphere.faces)
    assert torch.equal(loaded.vertex_colors, colours)
    save_ply(sphere, tmp_path / "plain.ply")
    assert torch.equal(read_mesh(tmp_path / "plain.ply").verts, sphere.verts)


def test_uv_v_zero_is_the_bottom_row_in_ours_and_trimesh(tmp_path):
    texture = torch.zeros(8, 8, 3)
    texture[:4, :, 0] = 1.0  # top half red
    texture[4:, :, 2] = 1.0  # bottom half blue
    uv_high = torch.tensor([[0.5, 0.9]])
    assert uv_to_pixel(uv_high, 8, 8)[0, 1] < 4  # lands in the top rows
    sampled = torch.nn.functional.grid_sample(texture.permute(2, 0, 1)[None], uv_to_grid(uv_high)[None, None], align_corners=False)
    assert sampled[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    save_glb(grid(2).replace(texture=texture), tmp_path / "flat.glb")
    loaded = trimesh.load(tmp_path / "flat.glb", force="mesh")
    image = loaded.visual.material.baseColorTexture
    assert trimesh.visual.color.uv_to_color(np.array([[0.5, 0.9]]), image)[0, :3].tolist() == [255, 0, 0]


def authored_z_up(mesh: Mesh) -> Mesh:
    """Our +y-up/+z-front mesh as a Blender-style file would hold it (+z up, face towards -y)."""
    x, y, z = mesh.verts.unbind(-1)
    return mesh.replace(verts=torch.stack([x, -z, y], dim=-1))


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_load_mesh_turns_z_up_into_y_up(tmp_path, suffix):
    head = icosphere(2)
    verts = head.verts.clone()
    verts[verts[:, 1].argmax(), 1] = 2.0  # a tall crown at +y
    verts[verts[:, 2].argmax(), 2] = 1.5  # a nose at +z
    head = head.replace(verts=verts)
    save_mesh(authored_z_up(head), tmp_path / f"blender{suffix}")
    loaded = load_mesh(tmp_path / f"blender{suffix}", up_axis="+z", front_axis="-y")
    assert torch.allclose(loaded.verts, head.verts, atol=1e-6)
    assert loaded.verts[:, 1].max() == pytest.approx(2.0) and loaded.verts[:, 2].max() == pytest.approx(1.5)
    normals = vertex_normals(loaded.verts, loaded.faces)
    assert ((normals * loaded.verts).sum(-1) > 0).float().mean() > 0.95  # winding still outward


@pytest.mark.parametrize(("up", "front"), [("+y", "+y"), ("+y", "-y"), ("up", "+z"), ("+w", "+z"), ("+x", "")])
def test_invalid_axes_are_rejected(tmp_path, up, front):
    save_ply(icosphere(0), tmp_path / "a.ply")
    with pytest.raises(ValueError):
        load_mesh(tmp_path / "a.ply", up_axis=up, front_axis=front)


def test_every_axis_pair_gives_a_proper_rotation():
    axes = ["+x", "-x", "+y", "-y", "+z", "-z"]
    for up in axes:
        for front in axes:
            if up[1] == front[1]:
                continue
            rotation = rotation_to_canonical(up, front)
            assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_mesh(tmp_path / "missing.obj")
    (tmp_path / "mesh.stl").write_text("solid nothing")
    with pytest.raises(MeshFormatError, match="must be one of"):
        read_mesh(tmp_path / "mesh.stl")
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\nend_header\n\x00")
    with pytest.raises(MeshFormatError):
        read_mesh(tmp_path / "broken.ply")
    with pytest.raises(MeshFormatError):
        save_mesh(icosphere(0), tmp_path / "out.stl")


def test_glb_carries_smooth_unit_normals_shared_across_uv_seams(tmp_path, textured_sphere):
    """Without NORMAL a glTF viewer shades every triangle flat; the normals are the unsplit surface's, so the copies
    of a vertex on both sides of a UV seam shade alike (no seam line)."""
    from tests.helpers import accessor, read_glb

    save_glb(textured_sphere, tmp_path / "head.glb")
    doc, blob = read_glb(tmp_path / "head.glb")
    attributes = doc["meshes"][0]["primitives"][0]["attributes"]
    normals, positions = accessor(doc, blob, attributes["NORMAL"]), accessor(doc, blob, attributes["POSITION"])
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    radial = positions / np.linalg.norm(positions, axis=1, keepdims=True)
    assert float((normals * radial).sum(1).min()) > 0.98  # a sphere's smooth normals point outwards
    _, first, inverse = np.unique(positions.round(6), axis=0, return_index=True, return_inverse=True)
    assert len(first) < len(positions)  # the sphere has seam copies
    assert np.allclose(normals, normals[first][inverse.ravel()], atol=1e-6)
