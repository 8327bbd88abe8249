"""`ROOT/summary.csv` and `ROOT/summary.json`: status, time and metrics per subject, written
atomically after every finished subject so they are always readable mid-batch."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from common import atomic
from fitter.batch.task import SubjectResult

CSV_COLUMNS = ("stem", "status", "attempts", "wall_s", "resumed", "psnr_db", "ssim", "identity_front",
               "identity_mean", "faces", "wrap_error_pct", "wrap_error_p95_pct", "reason", "image", "out")
FRONT_VIEW = "az+000_el+00"


def read_metrics(out: Path) -> dict:
    """The headline numbers of a finished fit's `metrics.json` ({} when there is none)."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    reference = metrics.get("reference", {})
    identity = {k: v for k, v in metrics.get("identity", {}).items() if _finite(v)}
    wrap = metrics.get("rig", {}).get("wrap_error", {})  # the rigged head's (stage rig); absent when it was off
    return {
        "psnr_db": _rounded(reference.get("psnr_db")),
        "ssim": _rounded(reference.get("ssim")),
        "identity_front": _rounded(identity.get(FRONT_VIEW)),
        "identity_mean": _rounded(sum(identity.values()) / len(identity)) if identity else None,
        "faces": metrics.get("mesh", {}).get("faces"),
        "wrap_error_pct": _rounded(wrap.get("mean_pct")),
        "wrap_error_p95_pct": _rounded(wrap.get("p95_pct")),
        "stage_wall_s": metrics.get("stage_wall_s", {}),
    }


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _rounded(value: object) -> Optional[float]:
    return round(float(value), 4) if _finite(value) else None


def count_statuses(results: list[SubjectResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts


def write_summary(root: Path, results: list[SubjectResult], header: dict) -> None:
    atomic.write_json(root / "summary.json", {**header, "counts": count_statuses(results),
                                              "subjects": [asdict(r) for r in results]})
    atomic.write_text(root / "summary.csv", _csv_text(results))


def _csv_text(results: list[SubjectResult]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        row = {**asdict(result), **result.metrics}
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in CSV_COLUMNS})
    return buf.getvalue()
