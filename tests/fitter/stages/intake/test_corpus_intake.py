"""The error corpus for the intake: each photo a user can get wrong, run as `run.py ... --stop-after
intake`, is one `error:` line, exit 2, and leaves its folder unchanged (tests/corpus.py)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from tests.corpus import PREVIEW, Case, run_case, written
from tests.intake_photos import line_drawing, save


def intake_args(photo: Path, folder: Path, *overrides: str) -> list[str]:
    return ["--image", photo, "--config", PREVIEW, "--out", folder / "out", "--stop-after", "intake", *overrides]


def photo_case(name: str, make, expect: str, warnings: tuple[str, ...] = (), overrides: tuple[str, ...] = ()) -> Case:
    """A case whose input is one file written by `make(folder) -> path`."""
    return Case(name, lambda folder: intake_args(make(folder), folder, *overrides), expect, warnings)


def png_bytes(rgb) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def huge_header_png(folder: Path) -> Path:
    """A 100000 x 100000 PNG header (10 gigapixels) in a file of a few dozen bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path = folder / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def truncated_png(folder: Path) -> Path:
    good = png_bytes(data.astronaut())
    return written("cut.png", good[: len(good) // 2])(folder)


def a_directory(folder: Path) -> Path:
    (folder / "photo.png").mkdir()
    return folder / "photo.png"


LOW_RES = ("low resolution",)
CASES = [
    photo_case("no_face", lambda f: save(data.coffee(), f / "coffee.png"), "no face found"),
    photo_case("cat", lambda f: save(data.chelsea(), f / "cat.png"), "no human face found"),
    photo_case("line_drawing", lambda f: save(line_drawing(), f / "drawing.png"), "no face found"),
    photo_case("profile", lambda f: save(data.camera(), f / "cameraman.png"), "max_yaw", LOW_RES),
    photo_case("huge_pixels", huge_header_png, "more than intake.max_pixels"),
    photo_case("over_max_pixels", lambda f: save(data.astronaut(), f / "a.png"), "more than intake.max_pixels=100000",
               overrides=("intake.max_pixels=100000",)),
    photo_case("truncated", truncated_png, "cannot decode"),
    photo_case("empty", written("empty.jpg", b""), "empty"),
    photo_case("directory", a_directory, "directory"),
    photo_case("missing", lambda f: f / "nope.jpg", "not found"),
    photo_case("text_as_jpg", written("notes.jpg", b"not an image\n" * 30), "not an image"),
    photo_case("tiny_image", lambda f: save(data.astronaut()[::5, ::5].copy(), f / "tiny.png"), "min_short_side"),
    photo_case("tiny_face", lambda f: save(data.astronaut()[::2, ::2].copy(), f / "small.png"), "min_face_px"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_intake_error_corpus(case, tmp_path):
    run_case(case, tmp_path / case.name)
