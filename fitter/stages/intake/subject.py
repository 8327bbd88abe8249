"""`run_intake`: photo in, `subject/` folder out.

Everything is validated and computed in memory first, so a bad photo raises `BadImageError` with
nothing created on disk. Then each file is written atomically and `subject.json` last: it marks the
folder complete and records the input's sha256, the settings that shape the result and each file's
sha256, so a rerun can reuse a complete, matching subject without analysing the photo again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from common import atomic
from common.digests import file_sha256
from common.errors import OutputError
from fitter.config import Config, as_dict
from fitter.stages.intake.analysis import Analysis, Warnings, analyse
from fitter.stages.intake.loading import LoadedImage, decode_image, read_input_bytes, sha256_of
from fitter.subject import CAMERA, IDENTITY, IMAGE, IMAGE_SMALL, LANDMARKS, MASK, SUBJECT_FILES, SUBJECT_JSON

log = logging.getLogger("headfit")
INTAKE_VERSION = 2
"""Bump when the analysis changes so that old subjects are redone."""
LANDMARK_CONVENTION = (
    "landmarks: x, y in crop pixels (origin at the top-left corner, pixel centres at +0.5), z MediaPipe's "
    "relative depth in the same pixel units (more negative = nearer the camera); world: the same points in "
    "world units (representations/cameras.py), on the reference camera's rays through x, y"
)


def settings_fingerprint(cfg: Config) -> dict:
    """The configuration values that change what the intake produces (JSON-normalised)."""
    parsing = cfg.models.face_parsing if cfg.intake.segmenter == "face_parsing" else None
    settings = {"intake_version": INTAKE_VERSION, "intake": as_dict(cfg.intake), "face_parsing": parsing, "arcface": cfg.models.arcface}
    return json.loads(json.dumps(settings))


def reusable_subject(subject_dir: Path, input_sha: str, settings: dict) -> dict | None:
    """The stored subject.json when it is complete and matches this photo and these settings."""
    try:
        record = json.loads((subject_dir / SUBJECT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("input_sha256") != input_sha or record.get("settings") != settings:
        return None
    files = record.get("files")
    if not isinstance(files, dict) or set(files) != set(SUBJECT_FILES):
        return None
    if any(file_sha256(subject_dir / name) != digest for name, digest in files.items()):
        return None
    return record


def _rounded(a: np.ndarray, digits: int = 5) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _file_payloads(a: Analysis, cfg: Config) -> dict[str, object]:
    camera = a.pose.camera
    landmarks = {
        "convention": LANDMARK_CONVENTION,
        "crop_size": cfg.intake.crop_size,
        "crop_from_input": _rounded(a.crop_matrix, 8),
        "count": int(len(a.landmarks)),
        "landmarks": _rounded(a.landmarks, 3),
        "world": _rounded(a.world, 6),
        "pnp_rms_px": a.pose.rms_px,
    }
    camera_json = camera.to_dict() | {"small": camera.resized(cfg.intake.small_size).to_dict()}
    identity = {k: v.astype(np.float32) for k, v in a.identity.items() if v is not None}
    return {
        IMAGE: a.crop,
        IMAGE_SMALL: a.crop_small,
        MASK: a.mask,
        LANDMARKS: landmarks,
        CAMERA: camera_json,
        IDENTITY: identity,
    }


def _write_file(path: Path, payload: object) -> None:
    if path.suffix == ".png":
        atomic.write_png(path, payload)  # type: ignore[arg-type]
    elif path.suffix == ".json":
        atomic.write_json(path, payload)
    else:
        atomic.write_npz(path, **payload)  # type: ignore[arg-type]


def _face_record(a: Analysis) -> dict:
    def rounded(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "box_input": [round(v, 2) for v in a.face.box],
        "size_px": round(a.face.size, 2),
        "index": a.face_index,
        "count": a.face_count,
        "dlib_hog_score": rounded(a.evidence.hog_score),
        "dlib_cnn_confidence": rounded(a.evidence.cnn_confidence),
    }


def _subject_record(image_path: Path, image: LoadedImage, a: Analysis, cfg: Config, prompt: str, settings: dict) -> dict:
    h, w = image.rgb.shape[:2]
    return {
        "version": INTAKE_VERSION,
        "complete": True,
        "input_path": str(image_path.resolve()),
        "input_sha256": image.sha256,
        "input": {"width": w, "height": h, "format": image.format, "mode": image.mode, "exif_orientation": image.exif_orientation, "had_alpha": image.alpha is not None},
        "settings": settings,
        "prompt": prompt,
        "face": _face_record(a),
        "pose": a.pose.angles() | {"pnp_rms_px": a.pose.rms_px},
        "crop": {
            "size": cfg.intake.crop_size,
            "small_size": cfg.intake.small_size,
            "crop_from_input": _rounded(a.crop_matrix, 8),
            "scale": float(np.sqrt(abs(np.linalg.det(a.crop_matrix[:2, :2])))),
            "padding": f"constant grey {cfg.intake.background:g} (intake.background)",
        },
        "warnings": list(a.warnings),
        "timings_s": {k: round(v, 4) for k, v in a.timings.items()},
    }


def write_subject(subject_dir: Path, a: Analysis, record: dict, cfg: Config, started: float) -> None:
    """Write the files, then subject.json (with the write and total times) last."""
    write_start = time.perf_counter()
    try:
        # A stale marker must go first: a crash while the new files are written must not leave an
        # old subject.json vouching for a mix of old and new files.
        (subject_dir / SUBJECT_JSON).unlink(missing_ok=True)
        files = {}
        for name, payload in _file_payloads(a, cfg).items():
            _write_file(subject_dir / name, payload)
            files[name] = file_sha256(subject_dir / name)
        record["files"] = files
        record["timings_s"]["write"] = round(time.perf_counter() - write_start, 4)
        record["timings_s"]["total"] = round(time.perf_counter() - started, 4)
        atomic.write_json(subject_dir / SUBJECT_JSON, record)
    except OSError as exc:
        raise OutputError(f"cannot write the subject folder {subject_dir}: {exc.strerror or exc}") from None


def _reuse(subject_dir: Path, record: dict, prompt: str) -> dict:
    log.info("intake: reusing the complete subject in %s", subject_dir)
    for message in record.get("warnings", []):
        log.warning(message)
    if record.get("prompt") != prompt:
        record["prompt"] = prompt
        try:
            atomic.write_json(subject_dir / SUBJECT_JSON, record)
        except OSError as exc:
            raise OutputError(f"cannot write {subject_dir / SUBJECT_JSON}: {exc.strerror or exc}") from None
    return record


def run_intake(image_path: Path, cfg: Config, subject_dir: Path, prompt: str | None = None) -> dict:
    """Analyse the photo and write `subject_dir/`; returns the subject.json content.

    Raises BadImageError (nothing written) for an unusable photo, MissingModelError for a configured
    model that cannot be loaded and OutputError when the folder cannot be written."""
    start = time.perf_counter()
    image_path, subject_dir = Path(image_path), Path(subject_dir)
    prompt = cfg.prompt if prompt is None else prompt
    data = read_input_bytes(image_path, cfg.intake)
    settings = settings_fingerprint(cfg)
    previous = reusable_subject(subject_dir, sha256_of(data), settings)
    if previous is not None:
        return _reuse(subject_dir, previous, prompt)

    load_start = time.perf_counter()
    image = decode_image(data, image_path.name, cfg.intake)
    warnings = Warnings()
    for message in image.warnings:
        warnings.add(message)
    load_time = time.perf_counter() - load_start
    a = analyse(image, cfg, warnings)
    a.timings = {"load": load_time} | a.timings
    record = _subject_record(image_path, image, a, cfg, prompt, settings)
    write_subject(subject_dir, a, record, cfg, start)
    return record
