"""Shared by the reference-stage tests: the preview config with tiny models, and running the stage
the way a user does (`run.py ... --stop-after reference` on a run folder whose intake is done)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fitter.cli import main
from fitter.config import REPO_ROOT, load_config

EXAMPLE = REPO_ROOT / "examples" / "astronaut.png"
PREVIEW = REPO_ROOT / "configs" / "preview.yaml"
CPU = torch.device("cpu")
TINY = ("models.preset=tiny-random", "reference.size=32")


def config(*overrides: str):
    return load_config(PREVIEW, [*TINY, *overrides])


def run_to(out: Path, stage: str, *args: str) -> int:
    """`run.py --image astronaut --config preview --out OUT --stop-after STAGE` with tiny models and ``args``."""
    return main(["--image", str(EXAMPLE), "--config", str(PREVIEW), "--out", str(out), "--stop-after", stage, *TINY, *args])


def reference_record(out: Path) -> dict:
    """`reference/done.json`: the hash the stage ran under and its files' digests."""
    return json.loads((out / "reference" / "done.json").read_text())



def run_stage(cfg, out: Path) -> None:
    """The reference stage's own `run(ctx)` on ``out``, without the pipeline around it (no model
    check, no reuse): for stand-in models that the pre-run check would not find."""
    from fitter.context import RunContext
    from fitter.stages.reference.contract import CONTRACT

    CONTRACT.run(RunContext(cfg, out, CPU, image=EXAMPLE))


def count_produce_maps(monkeypatch) -> list[int]:
    """A list that records each `produce_maps` call from here on."""
    from fitter.stages.reference import maps as reference_maps

    calls: list[int] = []
    original = reference_maps.produce_maps
    monkeypatch.setattr(reference_maps, "produce_maps", lambda *a: calls.append(1) or original(*a))
    return calls


def assert_reused_then_redone(out: Path, args: list[str], changed: list[str], monkeypatch) -> list[int]:
    """After a first run with ``args``: a rerun reuses normal.png (without --resume), ``changed`` remakes it.
    Returns the list that records each `produce_maps` call from here on."""
    first = (out / "reference" / "normal.png").read_bytes()
    calls = count_produce_maps(monkeypatch)
    assert run_to(out, "reference", *args) == 0
    assert calls == [] and (out / "reference" / "normal.png").read_bytes() == first
    assert run_to(out, "reference", *changed) == 0
    assert calls == [1] and (out / "reference" / "normal.png").read_bytes() != first
    return calls


def assert_valid_normals(normal: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    assert normal.shape == (size, size, 3) and normal.dtype == np.uint8
    assert not normal[~mask].any(), "normals must be black outside the mask"
    vectors = normal[mask].astype(np.float64) / 255.0 * 2.0 - 1.0
    assert np.abs(np.linalg.norm(vectors, axis=-1) - 1.0).max() < 0.02
    return vectors


def assert_valid_depth(depth: np.ndarray, mask: np.ndarray, size: int) -> None:
    assert depth.shape == (size, size) and depth.dtype == np.uint16
    assert not depth[~mask].any() and depth[mask].min() >= 1 and depth[mask].max() == 65535


def tiny_depth_model(folder: Path) -> Path:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    cfg = DPTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=37, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                    fusion_hidden_size=16, head_in_index=-1)
    DPTForDepthEstimation(cfg).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
