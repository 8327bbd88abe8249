"""Intake input handling: every usual photo format loads; every bad input is one BadImageError and
creates nothing on disk; arbitrary bytes or random-pixel images are always refused with a
BadImageError and never raise anything else. Hypothesis runs derandomized (a fixed seed per test) and
prints the failing example, whose `seed` argument seeds the pixel draw."""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data

from common.errors import BadImageError
from fitter.config import Config, IntakeConfig
from fitter.stages.intake import meshpoints as mpi
from fitter.stages.intake.detection import detect_faces
from fitter.stages.intake.loading import decode_image
from fitter.stages.intake.subject import run_intake

ASTRONAUT = data.astronaut()


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def tiff16() -> bytes:
    ok, buf = cv2.imencode(".tif", (ASTRONAUT.astype(np.uint16) * 257)[:, :, ::-1])
    assert ok
    return buf.tobytes()


def with_transparent_border(mode: str, width: int = 40) -> Image.Image:
    rgba = np.dstack([ASTRONAUT, np.full(ASTRONAUT.shape[:2], 255, np.uint8)])
    rgba[:, :width, 3] = 0
    image = Image.fromarray(rgba)
    return image if mode == "RGBA" else image.convert(mode)


def palette_with_transparency() -> Image.Image:
    image = Image.fromarray(ASTRONAUT).quantize(255)
    pixels = np.array(image)
    pixels[:, :40] = 255
    out = Image.fromarray(pixels, mode="P")
    palette = image.getpalette()[: 255 * 3]
    out.putpalette(palette + [0, 0, 0] * (256 - len(palette) // 3))  # index 255: the transparent one
    return out


FORMATS = {
    "jpeg": lambda: encode(Image.fromarray(ASTRONAUT), "JPEG", quality=90),
    "webp": lambda: encode(Image.fromarray(ASTRONAUT), "WEBP", quality=90),
    "tiff16_rgb": tiff16,
    "bmp": lambda: encode(Image.fromarray(ASTRONAUT), "BMP"),
    "gray": lambda: encode(Image.fromarray(ASTRONAUT).convert("L"), "PNG"),
    "gray16": lambda: encode(Image.fromarray(ASTRONAUT[:, :, 1].astype(np.uint16) * 257), "PNG"),
    "palette": lambda: encode(Image.fromarray(ASTRONAUT).quantize(64), "PNG"),
    "cmyk_jpeg": lambda: encode(Image.fromarray(ASTRONAUT).convert("CMYK"), "JPEG", quality=92),
    "rgba": lambda: encode(with_transparent_border("RGBA"), "PNG"),
    "la": lambda: encode(with_transparent_border("LA"), "PNG"),
    "palette_transparency": lambda: encode(palette_with_transparency(), "PNG", transparency=255),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_and_mode_loads_with_a_face(name):
    image = decode_image(FORMATS[name](), name, IntakeConfig())
    assert image.rgb.shape == (512, 512, 3) and image.rgb.dtype == np.uint8
    assert np.abs(image.rgb[:, 40:, 1].astype(float) - ASTRONAUT[:, 40:, 1]).mean() < 12
    has_alpha = name in ("rgba", "la", "palette_transparency")
    assert (image.alpha is not None) == has_alpha
    if has_alpha:
        assert image.alpha[:, :40].max() == 0 and image.alpha[:, 40:].min() == 1
        assert np.all(np.abs(image.rgb[:, :40].astype(int) - 128) <= 1)  # composited on the grey
    faces = detect_faces(image.rgb)
    assert len(faces) == 1 and 150 < faces[0].box[0] < 250


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(ASTRONAUT)))  # shown rotated 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "rotated.jpg"
    stored.save(photo, format="JPEG", quality=95, exif=exif)
    record = run_intake(photo, Config(), tmp_path / "subject")
    assert record["input"]["exif_orientation"] == 6
    points = np.array(__import__("json").loads((tmp_path / "subject" / "landmarks.json").read_text())["landmarks"])
    assert points[mpi.LEFT_IRIS_CENTRE, 0] > points[mpi.RIGHT_IRIS_CENTRE, 0]
    assert points[mpi.CHIN, 1] > points[mpi.NOSE_TIP, 1] > points[mpi.LEFT_IRIS_CENTRE, 1]
    assert abs(record["pose"]["roll_deg"]) < 10
    x0, y0, x1, y1 = record["face"]["box_input"]
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200  # upright astronaut coordinates


def test_alpha_limits_the_mask(tmp_path):
    photo = tmp_path / "cutout.png"
    photo.write_bytes(encode(with_transparent_border("RGBA", 165), "PNG"))  # cuts her hair on the left
    record = run_intake(photo, Config(), tmp_path / "subject")
    assert record["input"]["had_alpha"]
    mask = np.array(Image.open(tmp_path / "subject" / "mask.png"))
    matrix = np.array(record["crop"]["crop_from_input"])
    # Where input column 165 (the alpha edge) lands in the crop, at the hair's height.
    edge = int(matrix[0, 0] * 165 + matrix[0, 1] * 100 + matrix[0, 2])
    assert 100 < edge < 400
    assert not mask[300:500, : edge - 10].any() and mask[300:500, edge + 10 : edge + 60].all()


def png_header_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def make_bad(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.png"
    good_png = encode(Image.fromarray(ASTRONAUT), "PNG")
    if kind == "missing":
        return folder / "nope.jpg"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated_png":
        path.write_bytes(good_png[: len(good_png) // 2])
    elif kind == "truncated_jpeg":
        jpeg = encode(Image.fromarray(ASTRONAUT), "JPEG")
        path = folder / "cut.jpg"
        path.write_bytes(jpeg[: len(jpeg) // 2])
    elif kind == "text_as_jpg":
        path = folder / "notes.jpg"
        path.write_text("not an image\n" * 30)
    elif kind == "small_image":
        Image.fromarray(ASTRONAUT).resize((100, 100)).save(path)
    elif kind == "tiny_face":
        Image.fromarray(ASTRONAUT).resize((256, 256), Image.LANCZOS).save(path)
    elif kind in ("no_face", "profile_face", "cat"):
        image = {"no_face": data.coffee, "profile_face": data.camera, "cat": data.chelsea}[kind]()
        Image.fromarray(image).save(path)
    elif kind == "bomb_header":
        path.write_bytes(png_header_claiming(100_000, 100_000))
    elif kind == "bomb_limit":
        path.write_bytes(good_png)
    return path


BAD = {
    "missing": "not found",
    "directory": "directory",
    "empty": "empty",
    "truncated_png": "cannot decode",
    "truncated_jpeg": "cannot decode",
    "text_as_jpg": "not an image",
    "small_image": "min_short_side",
    "tiny_face": "min_face_px",
    "no_face": "no face",
    "cat": "no human face",
    "profile_face": "max_yaw",
    "bomb_header": "pixels",
    "bomb_limit": "max_pixels",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, kind):
    photo = make_bad(kind, tmp_path)
    cfg = Config()
    if kind == "bomb_limit":
        cfg.intake.max_pixels = 100_000
    out = tmp_path / "out" / "nested" / "subject"
    with pytest.raises(BadImageError) as err:
        run_intake(photo, cfg, out)
    message = str(err.value)
    assert BAD[kind] in message and "\n" not in message
    assert not (tmp_path / "out").exists()


PREFIXES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBPVP8 "]


SETTINGS = dict(deadline=None, derandomize=True, print_blob=True, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=40, **SETTINGS)
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(min_size=0, max_size=2048), suffix=st.sampled_from([".jpg", ".png", ".webp"]))
def test_random_bytes_only_raise_bad_image(prefix, body, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / f"photo{suffix}"
        photo.write_bytes(prefix + body)
        with pytest.raises(BadImageError):
            run_intake(photo, Config(), Path(tmp) / "out" / "subject")
        assert not (Path(tmp) / "out").exists()


RANDOM_IMAGE_REFUSALS = ("min_short_side", "no face found", "no human face", "min_face_px", "max_yaw", "cannot decode")


@settings(max_examples=15, **SETTINGS)
@given(
    width=st.integers(1, 260),
    height=st.integers(1, 260),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "I;16"]),
    fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "TIFF"]),
    seed=st.integers(0, 2**16),
)
def test_random_small_images_are_refused(width, height, mode, fmt, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode) if mode != "I;16" else Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257)
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "random.img"
        try:
            image.save(photo, format=fmt)
        except (OSError, ValueError, KeyError):
            assume(False)  # this format cannot store this mode
        with pytest.raises(BadImageError) as err:  # random pixels hold no face
            run_intake(photo, Config(), Path(tmp) / "out" / "subject")
        assert any(reason in str(err.value) for reason in RANDOM_IMAGE_REFUSALS), str(err.value)
        assert not (Path(tmp) / "out").exists()


def black_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height black pixels, a few kB however large."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b"")


def test_max_pixels_is_the_one_limit_above_pils_bomb_guard():
    """90 MP is over PIL's default 89.5 MP guard: intake.max_pixels decides, and PIL's guard is restored."""
    default_guard = Image.MAX_IMAGE_PIXELS
    huge = black_png(9500, 9500)
    image = decode_image(huge, "huge.png", IntakeConfig(max_pixels=100_000_000))
    assert image.rgb.shape == (9500, 9500, 3)
    assert Image.MAX_IMAGE_PIXELS == default_guard
    with pytest.raises(BadImageError, match="90250000 pixels, more than intake.max_pixels=90000000"):
        decode_image(huge, "huge.png", IntakeConfig(max_pixels=90_000_000))
    with pytest.raises(BadImageError, match="90250000 pixels, more than intake.max_pixels=80000000"):
        decode_image(huge, "huge.png", IntakeConfig(max_pixels=80_000_000))
    assert Image.MAX_IMAGE_PIXELS == default_guard
