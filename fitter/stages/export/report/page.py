"""Building the report's HTML from what a run wrote."""

from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path
from typing import Any, Optional

from fitter.stages.export.report.template import NO_VIEWER, PAGE, RIGGED_VIEWER, TEXTURES, VIEWER
from fitter.subject import IMAGE_SMALL


def figure(src: str, caption: str, width: Optional[int] = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}"{size}><figcaption>{html.escape(caption)}</figcaption></figure>'


def glb_data_uri(glb: Path) -> str:
    """The GLB inline: browsers refuse to fetch file:// URLs, so a report opened from disk could
    not load `head.glb` by path."""
    return "data:model/gltf-binary;base64," + base64.b64encode(glb.read_bytes()).decode("ascii")


def viewer_html(out: Path, viewer_problem: Optional[str]) -> tuple[str, str]:
    """(script tag for <head>, viewer element or the notice that it is missing)."""
    if viewer_problem:
        return "", NO_VIEWER.substitute(reason=html.escape(viewer_problem))
    script = '<script src="report/model-viewer.min.js"></script>'
    return script, VIEWER.substitute(src=glb_data_uri(out / "head.glb"))


def rigged_html(out: Path, viewer_problem: Optional[str]) -> str:
    """The rigged head's viewer and its expression buttons ("" without head_rigged.glb or without the viewer)."""
    glb = out / "head_rigged.glb"
    if viewer_problem or not glb.is_file():
        return ""
    rig = json.loads((out / "metrics.json").read_text()).get("rig", {}) if (out / "metrics.json").is_file() else {}
    error = rig.get("wrap_error", {})
    summary = (f"Wrap error {error['mean_pct']:.2f}% of the head's height on average ({error['p95_pct']:.2f}% at the 95th "
               "percentile)." if "mean_pct" in error else "")
    return RIGGED_VIEWER.substitute(src=glb_data_uri(glb), summary=html.escape(summary))


def textures_html(out: Path, metrics: dict) -> str:
    """Which texture the viewer shows, with the lit and the albedo texture side by side ("" without head_albedo.png)."""
    if not (out / "head_albedo.png").is_file():
        return ""
    rmse = metrics.get("lighting", {}).get("fit_rmse")
    fit = "" if rmse is None else f" (Second-order spherical-harmonic lighting fitted to the face skin, RMS residual {rmse:.3f}.)"
    figures = figure("head.png", "head.png (lit, in the viewer)", 256) + figure("head_albedo.png", "head_albedo.png (lighting divided out)", 256)
    return TEXTURES.substitute(fit=html.escape(fit), figures=figures)


def flatten(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [row for key, value in node.items() for row in flatten(value, f"{prefix}.{key}" if prefix else str(key))]
    return [(prefix, node)]


def metrics_table(metrics: dict) -> str:
    rows = []
    for key, value in flatten(metrics):
        if isinstance(value, float):
            text, cls = f"{value:.4g}", ' class="num"'
        else:
            text, cls = ("n/a" if value is None else json.dumps(value) if isinstance(value, list) else str(value)), ""
        rows.append(f"<tr><td>{html.escape(key)}</td><td{cls}>{html.escape(text)}</td></tr>")
    return "<table><tr><th>metric</th><th>value</th></tr>" + "".join(rows) + "</table>"


def build_page(out: Path, *, eval_views: dict[str, str], export_views: list[str], curves: list[str],
               viewer_problem: Optional[str], turntable_size: int) -> str:
    """The whole page; image paths are relative to OUT."""
    script, viewer = viewer_html(out, viewer_problem)
    eval_figs = [figure(f"subject/{IMAGE_SMALL}", "input photo", 256)] + [figure(src, name.replace("_", "-"), 256) for name, src in eval_views.items()]
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
    config = (out / "config.yaml").read_text() if (out / "config.yaml").is_file() else "(config.yaml missing)"
    return PAGE.substitute(
        title=html.escape(out.name), written=datetime.datetime.now().isoformat(timespec="seconds"),
        viewer_script=script, viewer=viewer, textures=textures_html(out, metrics), rigged=rigged_html(out, viewer_problem), turntable_size=turntable_size,
        eval_views="".join(eval_figs),
        export_views="".join(figure(src, Path(src).stem, 160) for src in export_views),
        curves="".join(figure(src, Path(src).stem) for src in curves) or "<p>No training histories in this run.</p>",
        metrics=metrics_table(metrics) if metrics else "<p>metrics.json missing.</p>",
        config=html.escape(config),
    )
