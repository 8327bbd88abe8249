"""The error corpus for the init's own inputs: a user mesh (`init.kind=mesh`) or a folder of views
(`init.kind=multiview`) that cannot be used is one `error:` line, exit 2 (tests/corpus.py).

Every case but two is refused before the intake (`fitter.stages.init.stage.check_init_inputs`), so its
folder stays unchanged; the two found only while the init runs (a mesh too large to read before the
intake, a view with no foreground) leave the intake's files, all listed in the run's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.corpus import EXAMPLE, PREVIEW, Case, run_case, written

LOW_RES = ("low resolution",)
"""The intake's warning for the example photo (its face is small); only cases that pass the intake see it."""
GOOD_VIEW = {"file": "a.png", "azimuth_deg": 0, "elevation_deg": 0, "radius": 4.6, "fov_deg": 30}


def init_args(folder: Path, *overrides: str) -> list[str]:
    return ["--image", EXAMPLE, "--config", PREVIEW, "--out", folder / "out", "--stop-after", "init", *overrides]


# --- init.kind=mesh --------------------------------------------------------------------------------

def sphere_arrays(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    sphere = trimesh.creation.icosphere(subdivisions)
    return sphere.vertices.copy(), sphere.faces.copy()


def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> Path:
    trimesh.Trimesh(verts, faces, process=False, validate=False).export(path)
    return path


def changed_sphere(change, subdivisions: int = 2):
    """A build that writes an icosphere PLY after `change(verts, faces)` edits it in place."""
    def make(folder: Path) -> Path:
        verts, faces = sphere_arrays(subdivisions)
        change(verts, faces)
        return write_ply(folder / "head.ply", verts, faces)

    return make


def declares_too_many_faces(folder: Path) -> Path:
    """A PLY whose header declares 30M faces (refused before its body is read; it has none)."""
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
              b"property float z\nelement face 30000000\nproperty list uchar int vertex_indices\nend_header\n")
    return written("huge.ply", header + b"\x00" * 36)(folder)


def mesh_case(name: str, make, expect: str, *overrides: str, writes_nothing: bool = True, warnings: tuple[str, ...] = ()) -> Case:
    return Case(name, lambda folder: init_args(folder, "init.kind=mesh", f"init.mesh_path={make(folder)}", *overrides),
                expect, warnings=warnings, writes_nothing=writes_nothing)


def _set(index, value):
    def change(verts, faces):
        verts[index] = value

    return change


def _face(row, column, value):
    def change(verts, faces):
        faces[row, column] = value

    return change


MESH_CASES = [
    mesh_case("mesh_nan_vertex", changed_sphere(_set((7, 0), np.nan)), "non-finite coordinates"),
    mesh_case("mesh_inf_vertex", changed_sphere(_set((7, 2), np.inf)), "non-finite coordinates"),
    mesh_case("mesh_one_point", changed_sphere(_set(slice(None), (0.1, 0.2, 0.3))), "all its vertices at one point"),
    mesh_case("mesh_face_index_too_big", changed_sphere(_face(9, 1, 5000)), "uses vertex index 5000"),
    mesh_case("mesh_face_index_negative", changed_sphere(_face(9, 1, -3)), "uses vertex index -3"),
    mesh_case("mesh_single_triangle", written("tri.obj", b"v 0 0 0\nv 1e-9 0 0\nv 0 1e-9 0\nf 1 2 3\n"), "too few triangles"),
    mesh_case("mesh_flat", changed_sphere(_set((slice(None), 2), 0.0)), "is flat"),
    mesh_case("mesh_zero_area", written("zero.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 1 2\nf 2 2 3\nf 3 3 4\nf 4 4 1\n"),
              "only triangles of zero area"),
    mesh_case("mesh_empty_file", written("empty.obj", b""), "cannot read empty.obj"),
    mesh_case("mesh_garbage", written("garbage.ply", b"\x00\x01garbage" * 50), "cannot read garbage.ply"),
    mesh_case("mesh_garbage_glb", written("garbage.glb", b"glTF" + b"\xff" * 60), "cannot read garbage.glb"),
    mesh_case("mesh_missing", lambda folder: folder / "nowhere.ply", "does not exist"),
    mesh_case("mesh_wrong_kind", written("head.stl", b"solid head\nendsolid head\n"), "must be one of"),
    mesh_case("mesh_declares_too_many_faces", declares_too_many_faces, "more than the 10,000,000 that can be read"),
    # Over init.max_mesh_faces, so read only by the init stage, after the intake:
    mesh_case("mesh_nan_vertex_over_the_limit", changed_sphere(_set((7, 0), np.nan), subdivisions=4), "non-finite coordinates",
              "init.max_mesh_faces=1000", writes_nothing=False, warnings=LOW_RES),
]


# --- init.kind=multiview ---------------------------------------------------------------------------

def cut_out(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """An RGBA view: an opaque disc on a transparent background."""
    w, h = size
    y, x = np.mgrid[:h, :w]
    alpha = ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (0.35 * min(w, h)) ** 2) * 255
    rgba = np.dstack([np.full((h, w, 3), 180), alpha]).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def views_folder(folder: Path, cameras, files: dict | None = None) -> Path:
    """folder/views with cameras.json (a list, or raw text) and the images `files` maps names to
    (an Image, bytes, or None for a default cut-out); a.png by default."""
    views = folder / "views"
    views.mkdir()
    if cameras is not None:
        (views / "cameras.json").write_text(cameras if isinstance(cameras, str) else json.dumps(cameras))
    for name, content in (files or {"a.png": None}).items():
        if isinstance(content, bytes):
            (views / name).write_bytes(content)
        else:
            (content or cut_out()).save(views / name)
    return views


def view_case(name: str, make, expect: str, *overrides: str, writes_nothing: bool = True, warnings: tuple[str, ...] = ()) -> Case:
    """`make(folder)` builds the views folder and returns it."""
    def build(folder: Path) -> list[str]:
        return init_args(folder, "init.kind=multiview", f"init.views_dir={make(folder)}", "init.views_size=32",
                         "init.views_fit_steps=2", "init.views_grid_resolution=16", *overrides)

    return Case(name, build, expect, warnings=warnings, writes_nothing=writes_nothing)


def cameras(*entries: dict, files: dict | None = None):
    return lambda folder: views_folder(folder, list(entries), files)


def raw_cameras(text: str):
    return lambda folder: views_folder(folder, text)


def huge_view(folder: Path) -> Path:
    """A real 14000 x 14000 PNG (196 MP) of a few dozen KB: one bit per pixel, all zero."""
    return views_folder(folder, [GOOD_VIEW], {"a.png": Image.new("1", (14000, 14000))})


def truncated_png() -> bytes:
    import io

    buffer = io.BytesIO()
    cut_out((256, 256)).save(buffer, format="PNG")
    return buffer.getvalue()[:-200]


def absolute_file(folder: Path) -> Path:
    cut_out().save(folder / "outside.png")
    return views_folder(folder, [{**GOOD_VIEW, "file": str(folder / "outside.png")}])


def escaping_link(folder: Path) -> Path:
    cut_out().save(folder / "outside.png")
    views = views_folder(folder, [{**GOOD_VIEW, "file": "link.png"}], {})
    (views / "link.png").symlink_to(folder / "outside.png")
    return views


def dot_dot(key: str):
    def make(folder: Path) -> Path:
        cut_out().save(folder / "outside.png")
        return views_folder(folder, [{**GOOD_VIEW, key: "../outside.png"}])

    return make


def no_foreground(folder: Path) -> Path:
    return views_folder(folder, [GOOD_VIEW], {"a.png": Image.new("RGBA", (64, 64))})


VIEW_CASES = [
    view_case("view_14000x14000", huge_view, "has 196000000 pixels, more than intake.max_pixels"),
    view_case("view_over_max_pixels", cameras(GOOD_VIEW, files={"a.png": cut_out((1200, 1000))}),
              "has 1200000 pixels, more than intake.max_pixels=1000000", "intake.max_pixels=1000000"),
    view_case("view_not_an_image", cameras(GOOD_VIEW, files={"a.png": b"not an image\n" * 20}), "cannot read multi-view image"),
    view_case("view_truncated", cameras(GOOD_VIEW, files={"a.png": truncated_png()}), "cannot read multi-view image"),
    view_case("view_missing", cameras({**GOOD_VIEW, "file": "b.png"}), "does not exist"),
    view_case("views_of_two_sizes", cameras(GOOD_VIEW, {**GOOD_VIEW, "file": "b.png"},
                                            files={"a.png": None, "b.png": cut_out((32, 64))}), "all views must be one size"),
    view_case("views_dir_missing", lambda folder: folder / "nowhere", "is not a folder"),
    view_case("cameras_missing", lambda folder: views_folder(folder, None), "cameras.json not found"),
    view_case("cameras_invalid_json", raw_cameras("[{'file': 'a.png'}"), "cannot read"),
    view_case("cameras_not_a_list", cameras(), "non-empty JSON list"),
    view_case("cameras_nan", raw_cameras(json.dumps([GOOD_VIEW]).replace("4.6", "NaN")), "'radius' must be a finite number, got nan"),
    view_case("cameras_wrong_type", cameras({**GOOD_VIEW, "azimuth_deg": "left"}), "'azimuth_deg' must be a finite number"),
    view_case("cameras_missing_key", cameras({k: v for k, v in GOOD_VIEW.items() if k != "radius"}), "'radius' must be a finite number"),
    view_case("cameras_unknown_key", cameras({**GOOD_VIEW, "normal": "n.png"}), "unknown key"),
    view_case("cameras_too_many_views", cameras(*[GOOD_VIEW] * 101), "101 views, more than the 100"),
    view_case("preset_wrong_count", lambda folder: views_folder(folder, None), "needs 6 images in the views folder, found 1",
              "init.views_preset=facelift"),
    view_case("path_absolute", absolute_file, "must be a path relative to the views folder"),
    view_case("path_dot_dot", dot_dot("file"), "must not use '..'"),
    view_case("normal_path_dot_dot", dot_dot("normal_file"), "must not use '..'"),
    view_case("path_escaping_symlink", escaping_link, "outside the views folder"),
    # Found while the init decodes the views, after the intake:
    view_case("view_without_foreground", no_foreground, "no foreground found", writes_nothing=False, warnings=LOW_RES),
]

CASES = MESH_CASES + VIEW_CASES


@pytest.mark.parametrize("case", CASES, ids=str)
def test_init_error_corpus(case, tmp_path):
    run_case(case, tmp_path / case.name)
