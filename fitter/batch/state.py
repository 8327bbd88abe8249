"""What a batch must do for one subject, judged from what is already in `ROOT/<stem>/`."""

from __future__ import annotations

import enum
import json
from pathlib import Path

from common.digests import file_sha256


class Plan(enum.Enum):
    SKIP = "skip"
    """Complete with this config and this photo: nothing to do."""
    RESUME = "resume"
    """Started with this config: rerun with `--resume` (finished stages are kept)."""
    FRESH = "fresh"
    """Nothing there, or it was made with another config or photo: a plain run."""


def is_complete(out: Path) -> bool:
    """The export stage wrote its marker and the metrics: the last things a fit writes."""
    return (out / "metrics.json").is_file() and (out / "export" / "done.json").is_file()


def plan_subject(out: Path, image: Path, config_yaml: str) -> Plan:
    """`config_yaml` is the resolved config as the fit writes it to `OUT/config.yaml`."""
    if not out.is_dir() or not any(out.iterdir()):
        return Plan.FRESH
    if _made_with_other(out, image, config_yaml):
        return Plan.FRESH
    return Plan.SKIP if is_complete(out) else Plan.RESUME


def _made_with_other(out: Path, image: Path, config_yaml: str) -> bool:
    config_file = out / "config.yaml"
    if config_file.is_file() and config_file.read_text(encoding="utf-8") != config_yaml:
        return True
    recorded = _recorded_photo_sha(out)
    return recorded is not None and image.is_file() and recorded != file_sha256(image)


def _recorded_photo_sha(out: Path) -> str | None:
    try:
        return json.loads((out / "subject" / "subject.json").read_text())["input_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


