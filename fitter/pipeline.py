"""Runs the stages in order: intake -> init -> geometry -> texture -> export.

Each stage writes `OUT/<stage>/` and, last, `OUT/<stage>/done.json` holding a hash of what it ran
with: its config sections and the contents of the files it reads (the subject's files, the user mesh
or views of the init, the reference maps), chained with the stages before it, so a change anywhere
upstream invalidates everything downstream. `--resume` skips stages whose marker matches and
continues the first unfinished one from its checkpoint; without `--resume` every stage after the
intake runs afresh (the intake reuses a complete `subject/` for the same photo and settings).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Optional

import torch

from fitter import atomic, dry_run
from fitter.config import STAGES, Config, as_dict, to_yaml
from fitter.context import RunContext, resolve_device
from fitter.digests import file_sha256
from fitter.errors import StopRequested

log = logging.getLogger("headfit")

# Config sections whose values change what each stage produces.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "init": ("init", "models.panohead", "models.preset", "run.seed"),
    "geometry": ("fit.geometry", "reference", "models", "prompt", "run.seed"),
    "texture": ("fit.texture", "models", "prompt", "run.seed"),
    "export": ("export",),
}


def _section(cfg_dict: dict, dotted: str) -> object:
    node: object = cfg_dict
    for part in dotted.split("."):
        node = node[part]  # type: ignore[index]
    return node


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_input_files(cfg: Config, subject_dir: Path) -> dict[str, dict[str, str | None]]:
    """sha256 (None: absent) of the files each stage reads beyond subject/'s own and its config, by a
    name that does not depend on where the run folder is (a copied or moved run still resumes)."""
    init = cfg.init
    files = {"init": {}, "geometry": {name: subject_dir / name for name in ("normal.png", "depth.png")}}
    if init.kind == "mesh" and init.mesh_path:
        files["init"] = {"mesh": Path(init.mesh_path)}
    elif init.kind == "multiview" and init.views_dir and Path(init.views_dir).is_dir():
        folder = Path(init.views_dir)
        files["init"] = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    return {stage: {name: file_sha256(path) for name, path in named.items()} for stage, named in files.items()}


def stage_hashes(cfg: Config, subject: dict, input_files: dict[str, dict] | None = None) -> dict[str, str]:
    """Chained hash per stage over the subject (photo, intake settings, files), the stage's config
    sections and ``input_files`` (`stage_input_files`): a change upstream invalidates everything downstream."""
    cfg_dict, input_files = as_dict(cfg), input_files or {}
    hashes, previous = {}, _digest([subject.get("input_sha256"), subject.get("settings"), subject.get("files")])
    for stage in STAGES[1:]:
        previous = _digest([previous, [_section(cfg_dict, s) for s in STAGE_SECTIONS[stage]], input_files.get(stage)])
        hashes[stage] = previous
    return hashes


def stage_done(out: Path, stage: str, digest: str) -> bool:
    marker = out / stage / "done.json"
    try:
        return json.loads(marker.read_text()).get("hash") == digest
    except (OSError, ValueError):
        return False


def with_effective_models(cfg: Config) -> Config:
    """The config the stages run with: `models.preset=tiny-random` resolved to the tiny model folders
    (built once in the cache), so the intake's ArcFace embedding and every stage load the same set."""
    if cfg.models.preset != "tiny-random":
        return cfg
    from guidance.models import effective_models_config

    return dataclasses.replace(cfg, models=effective_models_config(cfg.models))


class Pipeline:
    def __init__(self, cfg: Config, image: Path, out: Path, resume: bool = False, stop_after: Optional[str] = None, prompt: Optional[str] = None):
        if prompt is not None:  # --prompt is the top-level `prompt`: the guidance, config.yaml and stage hashes see it
            cfg = dataclasses.replace(cfg, prompt=prompt)
        if dry_run.wanted(cfg):
            cfg = dry_run.scaled(cfg)
            log.warning("dry run: the schedule is scaled down to CPU minutes (run.dry_run=false keeps it)")
        self.user_cfg, self.image, self.out = cfg, Path(image), Path(out)
        self.cfg = with_effective_models(cfg)
        self.resume, self.stop_after = resume, stop_after

    def run(self) -> None:
        from fitter.intake import run_intake
        from fitter.reference_user import check_user_maps

        t0 = time.perf_counter()
        user_maps = check_user_maps(self.cfg, self.image)  # bad user maps: refused before anything is written
        # The intake validates the photo before creating anything under OUT.
        subject = run_intake(self.image, self.cfg, self.out / "subject")
        handler = self._start_log()
        try:
            atomic.write_text(self.out / "config.yaml", to_yaml(self.user_cfg))
            log.info("intake: %s (%.1f s)", self.out / "subject", time.perf_counter() - t0)
            if self.stop_after == "intake":
                return
            self._reference_maps(subject, user_maps)
            self._run_stages(subject)
        finally:
            logging.getLogger("headfit").removeHandler(handler)
            handler.close()

    def _reference_maps(self, subject: dict, user_maps: dict) -> None:
        from fitter.reference_maps import ensure_reference_maps

        ensure_reference_maps(self.cfg, self.out / "subject", subject, user_maps, resolve_device(self.cfg.run.device))

    def _start_log(self) -> logging.Handler:
        handler = logging.FileHandler(self.out / "run.log", encoding="utf-8")
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger("headfit")
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        return handler

    def _run_stages(self, subject: dict) -> None:
        ctx = RunContext(self.cfg, self.out, resolve_device(self.cfg.run.device), resume=self.resume)
        ctx.tensorboard = self._tensorboard()
        hashes = stage_hashes(self.user_cfg, subject, stage_input_files(self.cfg, self.out / "subject"))
        torch.use_deterministic_algorithms(self.cfg.run.deterministic, warn_only=True)
        ctx.stop.install()
        try:
            for stage in STAGES[1:]:
                if self.resume and stage_done(self.out, stage, hashes[stage]):
                    log.info("%s: already complete, skipped", stage)
                else:
                    self._run_stage(ctx, stage, hashes[stage])
                if stage == self.stop_after:
                    break
                if ctx.stop.requested:  # asked during the stage's last step: stop before the next
                    raise StopRequested(f"stopped after {stage}")
        finally:
            ctx.stop.uninstall()
            if ctx.tensorboard is not None:
                ctx.tensorboard.close()

    def _run_stage(self, ctx: RunContext, stage: str, digest: str) -> None:
        stage_dir = self.out / stage
        if not self.resume and stage_dir.exists():
            shutil.rmtree(stage_dir)
        (self.out / stage / "done.json").unlink(missing_ok=True)
        module = importlib.import_module(f"fitter.stages.{stage}")
        t0 = time.perf_counter()
        log.info("%s: started", stage)
        module.run(ctx)
        wall = time.perf_counter() - t0
        atomic.write_json(ctx.stage_dir(stage) / "done.json", {"stage": stage, "hash": digest, "wall_s": round(wall, 3)})
        log.info("%s: done in %.1f s", stage, wall)

    def _tensorboard(self):  # type: ignore[no-untyped-def]
        if not self.cfg.run.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.out / "tensorboard"))
