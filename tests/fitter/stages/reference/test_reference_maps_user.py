"""User-supplied reference maps: warped from the photo into the crop, refused when bad, used by geometry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from fitter.cli import main
from fitter.stages.intake.meshpoints import NOSE_TIP
from fitter.stages.intake.warp import apply
from fitter.stages.reference.maps import subject_mask
from fitter.stages.reference.user import crop_matrix
from fitter.subject import Subject
from tests.reference_support import EXAMPLE, PREVIEW, run_to

SIZE = 128

pytestmark = pytest.mark.usefixtures("one_thread")


def save_normal_map(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def photo_shape() -> tuple[int, int]:
    w, h = Image.open(EXAMPLE).size
    return h, w


def marker_maps(tmp_path: Path, centre: np.ndarray, radius: float) -> tuple[Path, Path]:
    """Lavender (facing the camera) normals and flat depth, with a disc at ``centre`` (input pixels)
    whose normal is +x (image right) and whose depth is far."""
    h, w = photo_shape()
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    disc = np.hypot(xs - centre[0], ys - centre[1]) <= radius
    normal = np.empty((h, w, 3), np.uint8)
    normal[...] = (128, 128, 255)
    normal[disc] = (255, 128, 128)
    depth = np.where(disc, 60000, 20000).astype(np.uint16)
    Image.fromarray(depth).save(tmp_path / "depth.png")
    return save_normal_map(tmp_path / "normal.png", normal), tmp_path / "depth.png"


def test_user_maps_land_where_the_crop_transform_puts_them(run_dir, tmp_path):
    folder = run_dir / "reference"
    landmarks = json.loads((run_dir / "subject" / "landmarks.json").read_text())
    m = np.asarray(landmarks["crop_from_input"])
    nose_input = apply(np.linalg.inv(m), np.asarray(landmarks["landmarks"])[NOSE_TIP:NOSE_TIP + 1, :2])[0]
    normal_path, depth_path = marker_maps(tmp_path, nose_input, radius=8.0)
    args = ["reference.source=user", f"reference.normal_path={normal_path}", f"reference.depth_path={depth_path}", f"reference.size={SIZE}", "run.dry_run=false"]
    assert run_to(run_dir, "reference", *args) == 0

    expected = apply(crop_matrix(m, int(landmarks["crop_size"]), SIZE), nose_input[None])[0]
    depth = np.asarray(Image.open(folder / "depth.png")).astype(np.float64)
    far = depth > 0.5 * 65535
    rows, cols = np.nonzero(far)
    found = np.array([cols.mean() + 0.5, rows.mean() + 0.5])  # pixel centres in continuous coordinates
    assert np.linalg.norm(found - expected) < 1.0, (found, expected)
    normal = np.asarray(Image.open(folder / "normal.png")).astype(np.float64) / 255.0 * 2.0 - 1.0
    centre = normal[int(expected[1]), int(expected[0])]
    roll = math.atan2(m[1, 0], m[0, 0])  # the crop turns the image by this (image y down)
    assert np.allclose(centre, [math.cos(-roll), math.sin(-roll), 0.0], atol=0.1), (centre, roll)
    mask = subject_mask(Subject.load(run_dir / "subject"), SIZE)
    rest = mask & ~binary_dilation(far, iterations=3)
    assert np.allclose(normal[rest], [0.0, 0.0, 1.0], atol=0.02)


def test_opencv_normals_are_turned_into_our_frame(run_dir, tmp_path):
    folder = run_dir / "reference"
    h, w = photo_shape()
    facing = np.zeros((h, w, 3), np.uint8)
    facing[...] = (128, 128, 0)  # OpenCV frame: the face looks along -z (towards the camera)
    path = save_normal_map(tmp_path / "cv.png", facing)
    assert run_to(run_dir, "reference", "reference.source=user", f"reference.normal_path={path}", "reference.user_normal_convention=opencv") == 0
    normal = np.asarray(Image.open(folder / "normal.png")).astype(np.float64) / 255.0 * 2.0 - 1.0
    mask = subject_mask(Subject.load(run_dir / "subject"), 32)
    assert np.allclose(normal[mask], [0.0, 0.0, 1.0], atol=0.02)
    assert not (folder / "depth.png").exists()


def bad_map(kind: str, tmp_path: Path) -> list[str]:
    h, w = photo_shape()
    if kind == "wrong_size":
        return ["--normal", str(save_normal_map(tmp_path / "n.png", np.full((h // 2, w, 3), 128)))]
    if kind == "unreadable":
        (tmp_path / "d.png").write_bytes(b"not an image at all")
        return ["--depth", str(tmp_path / "d.png")]
    if kind == "grey_normal":
        Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / "g.png")
        return ["--normal", str(tmp_path / "g.png")]
    return ["--depth", str(tmp_path / "missing.png")]


@pytest.mark.parametrize("kind", ["wrong_size", "unreadable", "grey_normal", "missing"])
def test_bad_user_maps_exit_2_one_line_nothing_written(tmp_path, capsys, kind):
    out = tmp_path / "out"
    code = main(["--image", str(EXAMPLE), "--config", str(PREVIEW), "--out", str(out), *bad_map(kind, tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1 and "Traceback" not in err
    assert "reference" in err and not out.exists()


def test_geometry_fits_to_user_maps_from_the_command_line(tmp_path):
    from tests.helpers import SMOKE

    h, w = photo_shape()
    normal = np.zeros((h, w, 3), np.uint8)
    normal[...] = (128, 128, 255)
    depth = np.tile(np.linspace(1000, 60000, w, dtype=np.float64), (h, 1)).astype(np.uint16)
    Image.fromarray(depth).save(tmp_path / "depth.png")
    out = tmp_path / "run"
    args = ["--image", str(EXAMPLE), "--config", str(PREVIEW), "--out", str(out), *SMOKE, "--stop-after", "geometry",
            "--normal", str(save_normal_map(tmp_path / "normal.png", normal)), "--depth", str(tmp_path / "depth.png")]
    assert main(args) == 0
    assert json.loads((out / "reference" / "done.json").read_text())["files"].keys() == {"normal.png", "depth.png"}
    final = json.loads((out / "geometry" / "geometry.json").read_text())["final_losses"]
    assert {"loss_ref_normal", "loss_ref_depth"} <= set(final) and all(np.isfinite(final[k]) for k in final)


def sphere_normals(shape: tuple[int, int], centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenGL camera-frame normals (H, W, 3) of an orthographic sphere image, and its coverage."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    x, y = (xs - centre[0]) / radius, -(ys - centre[1]) / radius
    inside = x**2 + y**2 < 1.0
    z = np.sqrt(np.clip(1.0 - x**2 - y**2, 0.0, 1.0))
    return np.stack([x, y, z], axis=-1) * inside[..., None], inside


def test_a_rolled_crop_turns_the_normals_with_the_image():
    """A sphere's normal map stays a sphere's normal map under any in-plane rotation of the crop."""
    from fitter.stages.intake.warp import similarity
    from fitter.stages.reference.user import warp_user_maps

    h, w = 300, 400
    centre, radius = np.array([210.0, 140.0]), 90.0
    normals, _ = sphere_normals((h, w), centre, radius)
    m = similarity(centre + [5.0, -3.0], 260.0, math.radians(30.0), 256)
    warped, valid = warp_user_maps({"normal": (normals + 1.0) * 0.5 * (np.linalg.norm(normals, axis=-1, keepdims=True) > 0)},
                                   m, 256, SIZE, "opengl")["normal"]
    k = crop_matrix(m, 256, SIZE)
    expected, inside = sphere_normals((SIZE, SIZE), apply(k, centre[None])[0], radius * SIZE / 260.0)
    core = inside & ~binary_dilation(~inside, iterations=3) & valid
    assert core.sum() > 2000
    assert np.abs(warped[core] - expected[core]).max() < 0.08
