"""Intake on skimage's astronaut: landmarks, crop, pose, camera, mask, reuse, several faces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from common.errors import BadImageError, OutputError
from fitter.config import Config
from fitter.stages.intake import meshpoints as mpi
from fitter.stages.intake import subject
from fitter.stages.intake.masking import neck_cut_row
from fitter.stages.intake.pose import canonical_landmarks, solve_head_pose
from fitter.stages.intake.subject import run_intake
from representations.cameras import PANOHEAD_FOCAL, Camera

FILES = ("image.png", "image_512.png", "mask.png", "landmarks.json", "camera.json", "identity.npz", "subject.json")


def save_png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def astronaut_subject(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("astronaut")
    photo = save_png(data.astronaut(), folder / "astronaut.png")
    record = run_intake(photo, Config(), folder / "out" / "subject", prompt="a portrait")
    return folder / "out" / "subject", record


def read_landmarks(folder: Path) -> dict:
    return json.loads((folder / "landmarks.json").read_text())


def test_writes_every_file_and_subject_record(astronaut_subject):
    folder, record = astronaut_subject
    assert all((folder / name).is_file() for name in FILES)
    assert json.loads((folder / "subject.json").read_text()) == record
    assert record["complete"] and record["prompt"] == "a portrait"
    assert len(record["input_sha256"]) == 64 and record["input"]["width"] == 512
    assert Image.open(folder / "image.png").size == (1024, 1024)
    assert Image.open(folder / "image_512.png").size == (512, 512)
    x0, y0, x1, y1 = record["face"]["box_input"]
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200
    ids = np.load(folder / "identity.npz")
    assert ids["dlib"].shape == (128,) and "arcface" not in ids


def test_landmarks_in_crop_are_upright_and_centred(astronaut_subject):
    lm = read_landmarks(astronaut_subject[0])
    points = np.array(lm["landmarks"])
    assert points.shape == (478, 3) and lm["crop_size"] == 1024
    eyes = points[[mpi.RIGHT_IRIS_CENTRE, mpi.LEFT_IRIS_CENTRE]]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 20  # roll removed
    assert eyes[0, 0] < 512 < eyes[1, 0]
    assert eyes[:, 1].max() < points[mpi.MOUTH_RIGHT_CORNER, 1] < points[mpi.CHIN, 1] < 1024
    assert points[mpi.NOSE_TIP, 2] < points[mpi.CHIN, 2]  # the nose is nearer the camera
    m = np.array(lm["crop_from_input"])
    x0, y0, x1, y1 = astronaut_subject[1]["face"]["box_input"]
    centre = m[:2, :2] @ np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + m[:2, 2]
    crop_box = np.ptp(points[:, :2], axis=0)
    assert np.linalg.norm(centre - (points[:, :2].min(0) + crop_box / 2)) < 20
    scale = np.sqrt(np.linalg.det(m[:2, :2]))
    assert abs(scale * max(x1 - x0, y1 - y0) / crop_box.max() - 1) < 0.05


def test_pose_and_reference_camera(astronaut_subject):
    folder, record = astronaut_subject
    pose = record["pose"]
    assert abs(pose["yaw_deg"]) <= 15 and abs(pose["roll_deg"]) <= 10
    assert pose["pnp_rms_px"] < 8.0
    cam_json = json.loads((folder / "camera.json").read_text())
    cam = Camera.from_dict(cam_json)
    assert cam.width == 1024 and math.isclose(cam.fx / 1024, PANOHEAD_FOCAL) and cam.cx == 512
    assert cam_json["small"]["width"] == 512 and math.isclose(cam_json["small"]["fx"], PANOHEAD_FOCAL * 512)
    assert math.isclose(pose["camera_radius"], float(np.linalg.norm(cam.position)))


def test_world_landmarks_project_onto_crop_landmarks(astronaut_subject):
    folder, _ = astronaut_subject
    lm = read_landmarks(folder)
    cam = Camera.from_dict(json.loads((folder / "camera.json").read_text()))
    world, points = np.array(lm["world"]), np.array(lm["landmarks"])
    uv, depth = cam.project(world)
    assert np.all(depth > 0)
    assert np.abs(uv - points[:, :2]).max() < 0.01
    # The subject's own landmarks stay close to the canonical layout in the same world frame.
    assert np.linalg.norm(world - canonical_landmarks(), axis=1).mean() < 0.05
    assert np.corrcoef(depth, points[:, 2])[0, 1] > 0.99


def test_mask_covers_face_and_stops_below_the_chin(astronaut_subject):
    folder, _ = astronaut_subject
    mask = np.array(Image.open(folder / "mask.png"))
    assert mask.shape == (1024, 1024) and set(np.unique(mask)) <= {0, 255}
    points = np.array(read_landmarks(folder)["landmarks"])
    (x0, y0), (x1, y1) = np.floor(points[:, :2].min(0)).astype(int), np.ceil(points[:, :2].max(0)).astype(int)
    # The landmark box's corners beside the jaw show the wall behind her, so the whole box is
    # covered less than its upper part (forehead to mouth), whose corners are hair and cheeks.
    mouth_row = int(points[mpi.MOUTH_RIGHT_CORNER, 1])
    assert (mask[y0:mouth_row, x0:x1] > 0).mean() >= 0.97
    assert (mask[y0:y1, x0:x1] > 0).mean() >= 0.9
    assert not mask[neck_cut_row(points, Config().intake.neck_margin) :].any()
    assert 0.15 < (mask > 0).mean() < 0.8
    assert not mask[:, :40].any()  # grey background at the crop's left edge


def test_crop_is_stable_under_a_small_shift(tmp_path, astronaut_subject):
    folder, _ = astronaut_subject
    shifted = np.full((512, 512, 3), 128, np.uint8)
    shifted[5:, 3:] = data.astronaut()[:-5, :-3]
    run_intake(save_png(shifted, tmp_path / "shifted.png"), Config(), tmp_path / "subject")
    a = np.asarray(Image.open(folder / "image_512.png"), dtype=np.float32)
    b = np.asarray(Image.open(tmp_path / "subject" / "image_512.png"), dtype=np.float32)
    # Compare where both crops show the photo (the shift brings grey in at one border).
    inner = (slice(64, 448), slice(64, 448))
    assert np.abs(a[inner] - b[inner]).mean() < 6.0
    pa = np.array(read_landmarks(folder)["landmarks"])[:, :2]
    pb = np.array(read_landmarks(tmp_path / "subject")["landmarks"])[:, :2]
    assert np.abs(pa - pb).mean() < 2.0


def test_rerun_reuses_a_complete_subject_and_redoes_an_incomplete_one(tmp_path, monkeypatch):
    photo = save_png(data.astronaut(), tmp_path / "a.png")
    out = tmp_path / "subject"
    first = run_intake(photo, Config(), out)
    calls = []
    real = subject.analyse
    monkeypatch.setattr(subject, "analyse", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = run_intake(photo, Config(), out, prompt="new prompt")
    assert calls == [] and again["input_sha256"] == first["input_sha256"]
    assert json.loads((out / "subject.json").read_text())["prompt"] == "new prompt"
    (out / "mask.png").unlink()
    run_intake(photo, Config(), out)
    assert calls == [1] and (out / "mask.png").is_file()
    cfg = Config()
    cfg.intake.crop_scale = 1.3  # a setting that changes the result: redone
    redone = run_intake(photo, cfg, out)
    assert calls == [1, 1] and redone["settings"]["intake"]["crop_scale"] == 1.3


def two_astronauts() -> np.ndarray:
    a = data.astronaut()
    small = np.asarray(Image.fromarray(a).resize((384, 384), Image.LANCZOS))
    canvas = np.full((512, 1024, 3), 128, np.uint8)
    canvas[:, :512] = a
    canvas[64:448, 576:960] = small
    return canvas


def test_several_faces_use_the_largest_with_a_warning_or_the_index(tmp_path, caplog):
    photo = save_png(two_astronauts(), tmp_path / "two.png")
    with caplog.at_level("WARNING", logger="headfit"):
        largest = run_intake(photo, Config(), tmp_path / "s0")
    assert largest["face"]["count"] == 2 and largest["face"]["index"] == 0
    assert largest["face"]["box_input"][2] < 512
    assert any("2 faces" in w for w in largest["warnings"]) and "2 faces" in caplog.text
    cfg = Config()
    cfg.intake.face_index = 1
    second = run_intake(photo, cfg, tmp_path / "s1")
    assert second["face"]["box_input"][0] > 512
    cfg.intake.face_index = 2
    with pytest.raises(BadImageError, match="face_index"):
        run_intake(photo, cfg, tmp_path / "s2")
    assert not (tmp_path / "s2").exists()


def test_canonical_layout_is_symmetric_and_scaled():
    c = canonical_landmarks()
    assert c.shape == (478, 3)
    mirrored = c * np.array([-1.0, 1.0, 1.0])
    nearest = np.sqrt(((c[:, None] - mirrored[None]) ** 2).sum(-1)).min(1)
    assert nearest.max() < 1e-4
    assert math.isclose(np.linalg.norm(c[mpi.LEFT_IRIS_CENTRE] - c[mpi.RIGHT_IRIS_CENTRE]), 0.5, rel_tol=1e-4)
    assert c[mpi.LEFT_IRIS_CENTRE, 0] > 0  # the subject's left is +x
    assert c[mpi.NOSE_TIP, 2] > c[mpi.LEFT_IRIS_CENTRE, 2] > 0  # faces +z, eyes in front of the centre
    assert c[mpi.CHIN, 1] < c[mpi.NOSE_TIP, 1] < c[mpi.LEFT_IRIS_CENTRE, 1] < c[mpi.FOREHEAD_TOP, 1]
    assert np.abs(c).max() < 1.1


@pytest.mark.parametrize("azimuth,elevation", [(0.0, 0.0), (25.0, 0.0), (-30.0, 10.0), (10.0, -15.0)])
def test_head_pose_recovers_a_known_orbit_camera(azimuth, elevation):
    truth = Camera.orbit(azimuth, elevation, 9.0, 13.37, 1024)
    truth = Camera.from_normalized_focal(truth.w2c, 1024)
    uv, _ = truth.project(canonical_landmarks())
    pose = solve_head_pose(uv, 1024)
    angles = pose.angles()
    assert pose.rms_px < 1e-3
    assert math.isclose(angles["camera_azimuth_deg"], azimuth, abs_tol=0.01)
    assert math.isclose(angles["camera_elevation_deg"], elevation, abs_tol=0.01)
    # A camera to the subject's left (+azimuth) means the head is turned to its right: yaw < 0.
    assert math.isclose(angles["yaw_deg"], -azimuth, abs_tol=0.01)
    assert math.isclose(angles["pitch_deg"], -elevation, abs_tol=0.01)
    assert abs(angles["roll_deg"]) < 0.01


def test_unwritable_subject_folder_is_an_output_error(tmp_path):
    photo = save_png(data.astronaut(), tmp_path / "a.png")
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    with pytest.raises(OutputError, match="cannot write"):
        run_intake(photo, Config(), tmp_path / "blocker" / "subject")


def test_a_small_face_in_a_large_wide_photo_is_found(tmp_path):
    wide = np.full((1500, 4000, 3), 200, np.uint8)
    wide[900:1412, 300:812] = data.astronaut()
    record = run_intake(save_png(wide, tmp_path / "wide.png"), Config(), tmp_path / "subject")
    x0, y0, x1, y1 = record["face"]["box_input"]
    assert 450 < x0 < x1 < 600 and 950 < y0 < y1 < 1100
