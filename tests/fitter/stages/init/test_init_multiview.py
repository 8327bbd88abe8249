"""init.kind=multiview: a known textured head rendered from 6 (FaceLift) and 16 (ring16) views is
recovered within 1 % of its height (Chamfer) and renders a held-out view at >= 25 dB; bad view
folders are one-line UserErrors; the CLI runs the init into the geometry stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from common.errors import UserError
from fitter.cli import main
from fitter.stages.init.from_views import init_from_views
from fitter.stages.init.multiview.cameras import ORTHO_DISTANCE, view_camera
from fitter.stages.init.multiview.fit import FitSettings
from fitter.stages.init.multiview.loading import check_view_images, load_view_set, view_specs
from fitter.stages.init.multiview.presets import preset_angles
from fitter.stages.init.multiview.shading import render_coloured
from fitter.stages.init.multiview.texture import colours_near
from fitter.stages.init.multiview.views import ViewSpec
from representations.mesh import Mesh, mesh_to_trimesh, read_mesh
from representations.render import Rasterizer, render
from tests.helpers import EXAMPLE, PREVIEW, SMOKE

SIZE = 128
RADIUS, FOV = 4.6, 30.0
FIT = FitSettings(steps=40, grid_resolution=48, views_per_step=3)


def _ellipsoid(p: np.ndarray, centre, radii) -> np.ndarray:
    q = (p - np.asarray(centre)) / np.asarray(radii)
    k0 = np.linalg.norm(q, axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(np.linalg.norm(q / np.asarray(radii), axis=-1), 1e-12)


def head_sdf(p: np.ndarray) -> np.ndarray:
    """An ellipsoid skull smoothly united with a nose (world units, facing +z)."""
    skull, nose, k = _ellipsoid(p, (0, 0, 0), (0.72, 0.92, 0.82)), _ellipsoid(p, (0, -0.05, 0.78), (0.11, 0.2, 0.16)), 0.06
    h = np.clip(0.5 + 0.5 * (nose - skull) / k, 0, 1)
    return nose * (1 - h) + skull * h - k * h * (1 - h)


def _blob(p: np.ndarray, centre, radius: float) -> np.ndarray:
    return np.exp(-np.sum((p - np.asarray(centre)) ** 2, axis=-1) / radius**2)[:, None]


def head_colour(p: np.ndarray) -> np.ndarray:
    """Skin, hair over the top and back, a low-frequency pattern, dark eyes and a red mouth."""
    hair = 1 / (1 + np.exp(-(p[:, 1] - 0.35 + 0.5 * np.clip(-p[:, 2], 0, None)) / 0.06))[:, None]
    c = np.array([0.86, 0.66, 0.52]) * (1 - hair) + np.array([0.30, 0.18, 0.10]) * hair
    c = c + 0.08 * (np.sin(5 * p[:, 0]) * np.cos(4 * p[:, 1]))[:, None]
    for x in (-0.27, 0.27):
        c = c * (1 - 0.7 * _blob(p, (x, 0.15, 0.66), 0.09))
    mouth = _blob(p, (0, -0.42, 0.68), 0.1)
    return np.clip(c * (1 - mouth) + np.array([0.7, 0.25, 0.25]) * mouth, 0, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def head() -> tuple[Mesh, torch.Tensor]:
    axis = np.linspace(-1.1, 1.1, 96)
    volume = head_sdf(np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)).reshape((96,) * 3)
    verts, faces, _, _ = marching_cubes(volume, 0.0, spacing=(axis[1] - axis[0],) * 3)
    verts = verts - 1.1
    mesh = Mesh(torch.tensor(verts, dtype=torch.float32), torch.tensor(faces[:, ::-1].copy(), dtype=torch.long))
    return mesh, torch.tensor(head_colour(verts), dtype=torch.float32)


def render_head(head, camera) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = render_coloured(Rasterizer("torch"), head[0].verts, head[0].faces, camera, head[1])
    return out["rgb"].numpy(), out["mask"][..., 0].numpy()


def write_views(folder: Path, head, specs: list[ViewSpec]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        rgb, alpha = render_head(head, view_camera(spec, SIZE, SIZE))
        rgba = np.clip(np.concatenate([rgb, alpha[..., None]], -1), 0, 1)
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / spec.file)


def preset_folder(tmp_path: Path, head, preset: str) -> Path:
    folder = tmp_path / preset
    files = [f"view_{i:02d}.png" for i in range(len(preset_angles(preset)))]
    write_views(folder, head, [ViewSpec(f, a, e, RADIUS, FOV) for f, (a, e) in zip(files, preset_angles(preset))])
    return folder


def chamfer(a: Mesh, b: Mesh, n: int = 20000) -> float:
    """Symmetric mean nearest-surface distance: (mean d(A→B) + mean d(B→A)) / 2, on n samples each."""
    pa = trimesh.sample.sample_surface(mesh_to_trimesh(a), n, seed=0)[0]
    pb = trimesh.sample.sample_surface(mesh_to_trimesh(b), n, seed=1)[0]
    return 0.5 * (cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean())


def held_out_psnr(head, textured: Mesh, azimuth: float, elevation: float) -> float:
    """PSNR (dB) of the textured fit against the true head at a view no input had (whole image, black background)."""
    camera = view_camera(ViewSpec("held_out", azimuth, elevation, RADIUS, FOV), SIZE, SIZE)
    truth, alpha = render_head(head, camera)
    out = render(textured.verts, textured.faces, camera, ("rgb", "mask"), uv=textured.uv, uv_faces=textured.uv_faces,
                 texture=textured.texture, backend="torch")
    mse = float((((out["rgb"] * out["mask"]).numpy() - truth * alpha[..., None]) ** 2).mean())
    return 10.0 * np.log10(1.0 / mse)


@pytest.mark.parametrize("preset, held_out", [("facelift", (110.0, 0.0)), ("ring16", (20.0, 10.0))])
def test_views_recover_the_head(tmp_path, head, preset, held_out):
    folder = preset_folder(tmp_path, head, preset)
    views = load_view_set(folder, view_specs(folder, preset, 0.0, 0.0, RADIUS, FOV), SIZE)
    made = init_from_views(views, FIT, texture_resolution=256, texture_max_faces=6000, sdf_resolution=48)
    height = float(head[0].verts[:, 1].max() - head[0].verts[:, 1].min())
    assert chamfer(made.mesh, head[0]) <= 0.01 * height
    assert held_out_psnr(head, made.textured, *held_out) >= 25.0
    inside_outside = made.sdf(torch.tensor([[0.0, 0.0, 0.0], [1.2, 1.2, 1.2]]))
    assert inside_outside[0] < -0.5 and inside_outside[1] > 0.5
    assert made.sdf(made.mesh.verts).abs().mean() < 0.01
    colours = colours_near(made.textured, head[0].verts, samples=100_000)
    assert (colours - head[1]).abs().mean() < 0.05


def test_near_orthographic_camera_matches_orthographic_projection():
    spec = ViewSpec("v.png", 30.0, 10.0, 1.0, ortho_scale=2.4)
    camera = view_camera(spec, 512, 512)
    points = np.random.default_rng(0).uniform(-1.3, 1.3, (1000, 3))
    pixels, _ = camera.project(points)
    c2w = camera.c2w
    right, up = c2w[:3, 0], c2w[:3, 1]
    ortho = np.stack([256 + points @ right * 512 / 2.4, 256 - points @ up * 512 / 2.4], -1)
    assert np.abs(pixels - ortho).max() < 0.5  # the documented bound: below 0.35 px at 512 px for 2 units
    assert np.linalg.norm(camera.position) == pytest.approx(ORTHO_DISTANCE)


def _cameras(folder: Path, entries) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cameras.json").write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return folder


GOOD = {"file": "a.png", "azimuth_deg": 0, "elevation_deg": 0, "radius": 4.6, "fov_deg": 30}


@pytest.mark.parametrize("entries, message", [
    ("not json", "cannot read"),
    ({"file": "a.png"}, "non-empty JSON list"),
    ([{**GOOD, "radius": "far"}], "'radius' must be a finite number"),
    ([{k: v for k, v in GOOD.items() if k != "azimuth_deg"}], "'azimuth_deg' must be a finite number"),
    ([{**GOOD, "ortho_scale": 2.0}], "exactly one of 'fov_deg'"),
    ([{**GOOD, "elevation_deg": 95}], "elevation_deg must be in"),
    ([{**GOOD, "file": "missing.png"}], "does not exist"),
    ("[]", "non-empty JSON list"),
    ('[{"file": "a.png", "azimuth_deg": NaN, "elevation_deg": 0, "radius": 4.6, "fov_deg": 30}]', "'azimuth_deg' must be a finite number, got nan"),
    ('[{"file": "a.png", "azimuth_deg": 0, "elevation_deg": 0, "radius": Infinity, "fov_deg": 30}]', "'radius' must be a finite number, got inf"),
    ([{**GOOD, "radius": "x" * 10_000}], r"'radius' must be a finite number, got 'xxx.*\.\.\.$"),
    ([{**GOOD, "fov": 30}], "unknown key"),
    ([{**GOOD, "normal_file": 3}], "'normal_file' must be a file name"),
    ([{**GOOD, "file": ""}], "'file' must be a file name"),
    ([{**GOOD, "file": "a\x00.png"}], "'file' must be a file name"),
    ([{**GOOD, "file": ["a.png"]}], "'file' must be a file name"),
    ([GOOD] * 101, "101 views, more than the 100"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("\xff\xfe{", "cannot read"),
])
def test_bad_cameras_json_is_one_line_user_error(tmp_path, entries, message):
    folder = _cameras(tmp_path / "views", entries)
    Image.new("RGBA", (8, 8)).save(folder / "a.png")
    with pytest.raises(UserError, match=message) as info:
        view_specs(folder, "none", 0.0, 0.0, RADIUS, FOV)
    assert "\n" not in str(info.value)


def test_cameras_json_must_be_a_small_file(tmp_path):
    (tmp_path / "cameras.json").mkdir()
    with pytest.raises(UserError, match="is not a regular file"):
        view_specs(tmp_path, "none", 0.0, 0.0, RADIUS, FOV)
    big = _cameras(tmp_path / "big", [GOOD] + [{"padding": "x" * 1000}] * 2000)
    with pytest.raises(UserError, match="larger than 1024 KB"):
        view_specs(big, "none", 0.0, 0.0, RADIUS, FOV)


def _confined_folder(tmp_path: Path, entry: dict) -> Path:
    """A views folder with a.png inside, outside.png next to it, and cameras.json holding ``entry``."""
    Image.new("RGBA", (8, 8)).save(tmp_path / "outside.png")
    folder = _cameras(tmp_path / "views", [entry])
    Image.new("RGBA", (8, 8)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("entry, message", [
    ({**GOOD, "file": "ABSOLUTE"}, "must be a path relative to the views folder"),
    ({**GOOD, "file": "../outside.png"}, "must not use '..'"),
    ({**GOOD, "file": "sub/../../outside.png"}, "must not use '..'"),
    ({**GOOD, "normal_file": "../outside.png"}, "must not use '..'"),
    ({**GOOD, "normal_file": "ABSOLUTE"}, "must be a path relative to the views folder"),
    ({**GOOD, "file": "link.png"}, "outside the views folder"),
    ({**GOOD, "file": "linked_dir/outside.png"}, "outside the views folder"),
    ({**GOOD, "file": "loop.png"}, "cannot be resolved|does not exist"),
])
def test_view_files_must_lie_inside_the_folder(tmp_path, entry, message):
    absolute = str(tmp_path / "outside.png")
    entry = {k: (absolute if v == "ABSOLUTE" else v) for k, v in entry.items()}
    folder = _confined_folder(tmp_path, entry)
    (folder / "link.png").symlink_to(tmp_path / "outside.png")
    (folder / "linked_dir").symlink_to(tmp_path)
    (folder / "loop.png").symlink_to(folder / "loop.png")
    with pytest.raises(UserError, match=message) as info:
        view_specs(folder, "none", 0.0, 0.0, RADIUS, FOV)
    assert "\n" not in str(info.value)


def test_links_inside_the_folder_are_fine(tmp_path):
    folder = _confined_folder(tmp_path, {**GOOD, "file": "inner/link.png", "normal_file": "a.png"})
    (folder / "inner").mkdir()
    (folder / "inner" / "link.png").symlink_to(folder / "a.png")
    assert [s.file for s in view_specs(folder, "none", 0.0, 0.0, RADIUS, FOV)] == ["inner/link.png"]


def test_preset_folders_are_confined_too(tmp_path):
    folder = tmp_path / "views"
    folder.mkdir()
    for i in range(5):
        Image.new("RGBA", (8, 8)).save(folder / f"v{i}.png")
    Image.new("RGBA", (8, 8)).save(tmp_path / "outside.png")
    (folder / "v5.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(UserError, match="outside the views folder"):
        view_specs(folder, "facelift", 0.0, 0.0, RADIUS, FOV)


def _one_view(tmp_path: Path, image: Image.Image | bytes, **entry) -> tuple[Path, list]:
    folder = _cameras(tmp_path / "views", [{**GOOD, **entry}])
    if isinstance(image, bytes):
        (folder / "a.png").write_bytes(image)
    else:
        image.save(folder / "a.png")
    return folder, view_specs(folder, "none", 0.0, 0.0, RADIUS, FOV)


def _png_bytes(image: Image.Image) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("image, max_pixels, message", [
    (Image.new("RGB", (2000, 1000)), 1_000_000, "has 2000000 pixels, more than intake.max_pixels=1000000"),
    (Image.new("RGB", (1100, 1000)), 1_000_000, "has 1100000 pixels, more than intake.max_pixels=1000000"),
    (_png_bytes(Image.new("RGB", (64, 64)))[:-40], 1_000_000, "cannot read multi-view image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, 1_000_000, "cannot read multi-view image"),
    (b"not an image at all", 1_000_000, "cannot read multi-view image"),
], ids=["pil-guard", "over-limit", "truncated-png", "png-signature-only", "not-an-image"])
def test_view_images_are_checked_before_decoding(tmp_path, image, max_pixels, message):
    folder, specs = _one_view(tmp_path, image)
    with pytest.raises(UserError, match=message) as info:
        check_view_images(folder, specs, max_pixels)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=message):
        load_view_set(folder, specs, 32, max_pixels)


def test_views_must_be_one_size_and_normal_maps_are_checked(tmp_path):
    folder = _cameras(tmp_path / "views", [GOOD, {**GOOD, "file": "b.png", "normal_file": "n.png"}])
    Image.new("RGBA", (16, 8)).save(folder / "a.png")
    Image.new("RGBA", (8, 8)).save(folder / "b.png")
    (folder / "n.png").write_bytes(b"broken")
    specs = view_specs(folder, "none", 0.0, 0.0, RADIUS, FOV)
    with pytest.raises(UserError, match="b.png is 8x8, a.png is 16x8: all views must be one size"):
        check_view_images(folder, specs)
    Image.new("RGBA", (16, 8)).save(folder / "b.png")
    with pytest.raises(UserError, match="cannot read multi-view image .*n.png"):
        check_view_images(folder, specs)


def test_bad_folders_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        view_specs(tmp_path / "nowhere", "none", 0.0, 0.0, RADIUS, FOV)
    with pytest.raises(UserError, match="cameras.json not found"):
        view_specs(tmp_path, "none", 0.0, 0.0, RADIUS, FOV)
    cut_out = np.zeros((8, 8, 4), np.uint8)
    cut_out[2:6, 2:6] = 255
    for i in range(5):
        Image.fromarray(cut_out, "RGBA").save(tmp_path / f"v{i}.png")
    with pytest.raises(UserError, match="needs 6 images in the views folder, found 5"):
        view_specs(tmp_path, "facelift", 0.0, 0.0, RADIUS, FOV)
    (tmp_path / "v5.png").write_bytes(b"not an image")
    specs = view_specs(tmp_path, "facelift", 0.0, 0.0, RADIUS, FOV)
    with pytest.raises(UserError, match="cannot read multi-view image"):
        load_view_set(tmp_path, specs, 32)
    _cameras(tmp_path, [GOOD])
    with pytest.raises(UserError, match="use one of them"):
        view_specs(tmp_path, "facelift", 0.0, 0.0, RADIUS, FOV)


def test_cli_multiview_init_feeds_geometry(tmp_path, head):
    folder = preset_folder(tmp_path, head, "facelift")
    out = tmp_path / "run"
    overrides = ["init.kind=multiview", f"init.views_dir={folder}", "init.views_preset=facelift", "init.views_size=96",
                 "init.views_fit_steps=5", "init.views_grid_resolution=32", "init.views_texture_resolution=128",
                 "init.views_texture_max_faces=2000"]
    assert main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(out), *SMOKE, *overrides, "--stop-after", "geometry"]) == 0
    info = json.loads((out / "init" / "init.json").read_text())
    assert info["kind"] == "multiview" and info["views"] == 6 and len(info["cameras"]) == 6
    textured = read_mesh(out / "init" / "textured.obj")
    assert textured.texture is not None and textured.texture.shape[:2] == (128, 128)
    assert read_mesh(out / "geometry" / "mesh.ply").num_faces > 500
    assert main(["--image", EXAMPLE, "--config", PREVIEW, "--out", str(tmp_path / "bad"), *SMOKE, "init.kind=multiview"]) == 2
