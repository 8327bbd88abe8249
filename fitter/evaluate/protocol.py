"""`run.py eval RUN_DIR ...`: the paper's evaluation protocol on finished runs.

The head in `RUN_DIR/head.glb` is rendered at the five evaluation views (left-frontal, left,
right-frontal, right, rear; `EVAL_VIEWS`) with the run's export camera. Per run (`eval.json`):
identity against the input photo (ArcFace cosine similarity when `models.arcface` is set, else the
dlib descriptor distance, each under its own name), CLIP-I (`models.clip`) over the views, LPIPS
(`models.lpips`), PSNR and SSIM at the reference view. A metric whose model is not configured is
reported as not computed, with the reason. Over all runs: `eval_summary.csv` and `eval_summary.md`.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from common import atomic
from common.errors import MissingModelError, UserError
from fitter.config import Config
from fitter.evaluate.metrics import identity_distance, psnr_masked, ssim_masked
from fitter.stages.export.views import render_eval_views, render_rgb, write_eval_views
from fitter.stages.intake.detection import detect_faces
from fitter.stages.intake.identity import arcface_embedding, dlib_embedding
from fitter.subject import CAMERA, IDENTITY, IMAGE_SMALL, MASK, Subject
from guidance.lpips import LPIPS
from guidance.models.config import ModelsConfig
from representations.cameras import EVAL_VIEWS
from representations.mesh import Mesh, read_mesh

log = logging.getLogger("headfit")
Metric = dict[str, Any]
SUMMARY_COLUMNS = ("identity_arcface_cosine", "identity_dlib_distance", "clip_i", "lpips", "psnr_db", "ssim")


def computed(value: Optional[float], higher_is_better: bool, **extra: Any) -> Metric:
    return {"computed": True, "value": value, "higher_is_better": higher_is_better, **extra}


def not_computed(reason: str) -> Metric:
    return {"computed": False, "value": None, "reason": reason}


def _mean(values: list[Optional[float]]) -> Optional[float]:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def dlib_identity(subject: Subject, views: dict[str, np.ndarray]) -> Metric:
    reference = subject.dlib_embedding
    per_view = {name: identity_distance(reference, dlib_embedding(image)) for name, image in views.items()}
    return computed(_mean(list(per_view.values())), False, per_view=per_view,
                    note="L2 distance of dlib 128-D descriptors to the input (0.6 = same-person threshold); "
                         "views with no detectable face are left out of the mean")


def arcface_identity(photo: np.ndarray, views: dict[str, np.ndarray], model_path: str) -> Metric:
    def embed(image: np.ndarray) -> Optional[np.ndarray]:
        faces = detect_faces(image)
        return arcface_embedding(image, faces[0].points, model_path) if faces else None

    reference = embed(photo)
    if reference is None:
        return not_computed("no face found in the input photo for ArcFace")
    per_view = {}
    for name, image in views.items():
        feat = embed(image)
        per_view[name] = None if feat is None else float(np.dot(reference, feat))
    return computed(_mean(list(per_view.values())), True, per_view=per_view,
                    note="ArcFace cosine similarity to the input; views with no detectable face are left out of the mean")


# --- CLIP-I ---------------------------------------------------------------------------------
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(models: ModelsConfig):  # type: ignore[no-untyped-def]
    from transformers import CLIPModel

    try:
        model = CLIPModel.from_pretrained(
            models.clip, cache_dir=models.cache_dir, local_files_only=True, use_safetensors=not models.pickle_allowed("clip"))
    except (OSError, ValueError) as exc:
        raise MissingModelError(f"cannot load the CLIP model models.clip={models.clip}: {' '.join(str(exc).split())[:200]}") from None
    return model.eval()


def clip_pixels(image: np.ndarray, size: int) -> torch.Tensor:
    """CLIP preprocessing: bicubic resize of the short side, centre crop, normalise. (1, 3, S, S)."""
    im = Image.fromarray(image)
    scale = size / min(im.size)
    im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BICUBIC)
    left, top = (im.width - size) // 2, (im.height - size) // 2
    x = torch.from_numpy(np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0)
    x = (x - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    return x.permute(2, 0, 1)[None]


def clip_i(photo: np.ndarray, views: dict[str, np.ndarray], models: ModelsConfig) -> Metric:
    if not models.clip:
        return not_computed("models.clip is not set (a CLIP model in transformers layout)")
    model = load_clip(models)
    size = model.config.vision_config.image_size
    with torch.no_grad():
        def embed(image: np.ndarray) -> torch.Tensor:
            features = model.get_image_features(pixel_values=clip_pixels(image, size))
            features = getattr(features, "pooler_output", features)  # transformers 5 returns an output object
            return torch.nn.functional.normalize(features, dim=-1)[0]

        reference = embed(photo)
        per_view = {name: float(reference @ embed(image)) for name, image in views.items()}
    return computed(_mean(list(per_view.values())), True, per_view=per_view,
                    note="cosine similarity of CLIP image embeddings of each view and the input photo")


# --- LPIPS ----------------------------------------------------------------------------------
def lpips_distance(a: np.ndarray, b: np.ndarray, models: ModelsConfig) -> Metric:
    if not models.lpips:
        return not_computed("models.lpips is not set (an AlexNet LPIPS weight file)")
    net = LPIPS.from_file(models.lpips, "alex", models.pickle_allowed("lpips"), key="models.lpips")
    with torch.no_grad():
        value = net(*(torch.from_numpy(np.ascontiguousarray(x)).float().permute(2, 0, 1)[None] * 2 - 1 for x in (a, b)))
    return computed(float(value[0]), False, note="LPIPS (AlexNet) at the reference view, both images masked")


# --- one run --------------------------------------------------------------------------------
def reference_view(subject: Subject, mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(render, photo, mask) at the reference camera, float images in [0, 1] at the 512 crop (`small_size`)."""
    size = subject.small_size
    photo, mask, camera = subject.image(size).numpy(), subject.mask(size).numpy(), subject.camera(size)
    rendered = render_rgb(mesh, camera, background=(0.0, 0.0, 0.0)).astype(np.float32)
    return rendered, photo, mask


def check_run(run: Path) -> None:
    for name in ("head.glb", *(f"subject/{file}" for file in (IMAGE_SMALL, MASK, CAMERA, IDENTITY))):
        if not (run / name).is_file():
            raise UserError(f"{run} is not a finished run: {name} is missing")


def evaluate_run(run: Path, cfg: Config) -> dict[str, Any]:
    """Every metric of one run; also writes `RUN/eval.json` and `RUN/eval/eval_<view>.png`."""
    check_run(run)
    mesh = read_mesh(run / "head.glb")
    views = render_eval_views(mesh, cfg.export)
    write_eval_views(views, run / "eval")
    subject = Subject.load(run / "subject")
    photo = subject.image_uint8(subject.small_size)
    rendered, photo_f, mask = reference_view(subject, mesh)
    masked = mask[..., None]
    metrics = {
        "identity_arcface_cosine": arcface_identity(photo, views, cfg.models.arcface) if cfg.models.arcface
        else not_computed("models.arcface is not set (dlib identity is reported instead)"),
        "identity_dlib_distance": dlib_identity(subject, views),
        "clip_i": clip_i(photo, views, cfg.models),
        "lpips": lpips_distance(rendered * masked, photo_f * masked, cfg.models),
        "psnr_db": computed(psnr_masked(rendered, photo_f, mask), True, note="reference view, inside the mask"),
        "ssim": computed(ssim_masked(rendered, photo_f, mask), True, note="reference view, inside the mask"),
    }
    result = {"run": str(run), "views": {name: {"azimuth_deg": az, "elevation_deg": 0.0, "image": f"eval/eval_{name}.png"}
                                         for name, az in EVAL_VIEWS.items()}, "metrics": metrics}
    atomic.write_json(run / "eval.json", result)
    return result


# --- many runs ------------------------------------------------------------------------------
def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for result in results:
        row = {"run": Path(result["run"]).name}
        for key in SUMMARY_COLUMNS:
            m = result["metrics"][key]
            row[key] = "" if m["value"] is None else f"{m['value']:.4f}"
        rows.append(row)
    if len(results) > 1:
        row = {"run": "mean"}
        for key in SUMMARY_COLUMNS:
            row[key] = "" if (v := _mean([r["metrics"][key]["value"] for r in results])) is None else f"{v:.4f}"
        rows.append(row)
    return rows


def summary_markdown(rows: list[dict[str, str]], results: list[dict[str, Any]]) -> str:
    header = ["run", *SUMMARY_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[h] or "n/a" for h in header) + " |" for row in rows]
    reasons = {key: m["reason"] for r in results for key, m in r["metrics"].items() if not m["computed"]}
    lines += ["", *(f"* {key}: not computed: {why}" for key, why in sorted(reasons.items()))]
    return "\n".join(lines) + "\n"


def write_summary(results: list[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    rows = summary_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["run", *SUMMARY_COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path, md_path = folder / "eval_summary.csv", folder / "eval_summary.md"
    atomic.write_text(csv_path, buf.getvalue())
    atomic.write_text(md_path, summary_markdown(rows, results))
    return csv_path, md_path
