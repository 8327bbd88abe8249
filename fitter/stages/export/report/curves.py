"""Loss curves (matplotlib PNGs) from the `history` kept in each stage's checkpoints."""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

from common import atomic
from fitter.config import STAGES
from guidance.weights import WeightFileError, unpickle_plain

log = logging.getLogger("headfit")
History = dict[str, list[tuple[int, float]]]


def read_histories(out: Path) -> dict[str, History]:
    """{"<stage>/<loop>": history} for every checkpoint under OUT that has one, in stage order."""
    found: dict[str, History] = {}
    for stage in STAGES:
        for path in sorted((out / stage).glob("*.pt")):
            try:
                state = unpickle_plain(path)
            except WeightFileError as exc:
                log.warning("report: no loss curve for %s/%s (%s)", stage, path.name, exc)
                continue
            history = state.get("history") if isinstance(state, dict) else None
            if history:
                found[f"{stage}/{path.stem}"] = {k: [(int(s), float(v)) for s, v in pts] for k, pts in history.items() if pts}
    return found


def plot_history(name: str, history: History) -> bytes:
    """PNG bytes: one line per loss term against the step, log scale when every value is positive."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.0), dpi=100)
    ax = fig.add_subplot()
    positive = True
    for key, points in sorted(history.items()):
        steps, values = zip(*points)
        positive &= all(v > 0 for v in values if math.isfinite(v))
        ax.plot(steps, values, label=key, linewidth=2.2 if key == "loss" else 1.2)
    if positive:
        ax.set_yscale("log")
    ax.set(title=name, xlabel="step", ylabel="loss (weighted)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_loss_curves(out: Path, folder: Path) -> list[Path]:
    """One PNG per checkpoint history, `folder/loss_<stage>_<loop>.png`."""
    paths = []
    for name, history in read_histories(out).items():
        path = folder / f"loss_{name.replace('/', '_')}.png"
        atomic.write_bytes(path, plot_history(name, history))
        paths.append(path)
    return paths
