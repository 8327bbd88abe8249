"""Runs the stages in order: intake -> init -> geometry -> texture -> export.

Each stage writes `OUT/<stage>/` and, last, `OUT/<stage>/done.json` holding a hash of what it ran
with: its config sections and the contents of the files it reads (the subject's files, the user mesh
or views of the init, the reference maps), chained with the stages before it, so a change anywhere
upstream invalidates everything downstream. `--resume` skips stages whose marker matches and
continues the first unfinished one from its checkpoints when its `started.json` carries the same
hash (otherwise, with one warning, that stage starts over); without `--resume` every stage after the
intake runs afresh (the intake reuses a complete `subject/` for the same photo and settings).

A stage that runs first deletes the outputs of every later stage (and its own, unless it continues
from its checkpoints), so a run that stops early never leaves results of other inputs behind. Only
files listed in the run folder's manifest are ever deleted (`fitter/outdir.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch

from fitter import dry_run
from fitter.config import STAGES, Config, as_dict, to_yaml
from fitter.context import RunContext, resolve_device
from common.digests import file_sha256
from common.errors import StopRequested
from fitter.logs import held_back, log_traceback, release_into, run_log
from fitter.outdir import RUN, RunFolder
from common import atomic

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


EVAL = "eval"
"""What `run.py eval` wrote into the run folder: stale once any stage is redone."""
STARTED_JSON = "started.json"
"""Written when a stage starts: the hash it runs under. `--resume` continues a stage from its
checkpoints only when this hash is the current one; otherwise the stage starts over."""


def stage_started(out: Path, stage: str, digest: str) -> bool:
    marker = out / stage / STARTED_JSON
    try:
        return json.loads(marker.read_text()).get("hash") == digest
    except (OSError, ValueError, AttributeError):
        return False


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

    def run(self, folder: RunFolder) -> None:
        """The whole fit into `folder` (opened and locked by the caller)."""
        from fitter.stages.intake import run_intake
        from fitter.stages.reference.user import check_user_maps
        from fitter.stages.init.stage import check_init_inputs

        t0 = time.perf_counter()
        user_maps = check_user_maps(self.cfg, self.image)  # bad user maps: refused before anything is written
        check_init_inputs(self.cfg)  # a bad init mesh or view folder: likewise
        ctx = RunContext(self.cfg, self.out, resolve_device(self.cfg.run.device), resume=self.resume)
        ctx.stop.install()
        try:
            folder.stage = "intake"
            with held_back() as intake_records:  # run.log may be written only once the photo is accepted
                subject = run_intake(self.image, self.cfg, self.out / "subject")  # validates before writing
            folder.stage = RUN
            atomic.claim(self.out / "run.log")
            with run_log(self.out / "run.log") as handler:
                release_into(intake_records, handler)
                try:
                    atomic.write_text(self.out / "config.yaml", to_yaml(self.user_cfg))
                    log.info("intake: %s (%.1f s)", self.out / "subject", time.perf_counter() - t0)
                    self._after_intake(ctx, folder, subject, user_maps)
                except BaseException as exc:
                    log_traceback(f"run ended by {type(exc).__name__}: {exc}", exc)
                    raise
        finally:
            ctx.stop.uninstall()

    def _after_intake(self, ctx: RunContext, folder: RunFolder, subject: dict, user_maps: dict) -> None:
        if self.stop_after == "intake":  # what the new subject made stale goes, nothing runs
            hashes = self._hashes(subject)
            folder.remove_stages(list(STAGES[1:])[self._first_to_run(hashes, resume=True):] + [EVAL])
            return
        folder.stage = "reference"
        from fitter.stages.reference.maps import ensure_reference_maps

        ensure_reference_maps(self.cfg, self.out / "subject", subject, user_maps, ctx.device)
        self._run_stages(ctx, folder, self._hashes(subject))

    def _hashes(self, subject: dict) -> dict[str, str]:
        return stage_hashes(self.user_cfg, subject, stage_input_files(self.cfg, self.out / "subject"))

    def _first_to_run(self, hashes: dict[str, str], resume: bool) -> int:
        """Index (in STAGES[1:]) of the first stage that is not done under its current hash."""
        stages = STAGES[1:]
        return next((i for i, s in enumerate(stages) if not (resume and stage_done(self.out, s, hashes[s]))), len(stages))

    def _run_stages(self, ctx: RunContext, folder: RunFolder, hashes: dict[str, str]) -> None:
        ctx.tensorboard = self._tensorboard()
        torch.use_deterministic_algorithms(self.cfg.run.deterministic, warn_only=True)
        stages = list(STAGES[1:])
        first = self._first_to_run(hashes, self.resume)
        try:
            for i, stage in enumerate(stages):
                if i < first:
                    log.info("%s: already complete, skipped", stage)
                else:
                    continue_it = i == first and self._may_continue(stage, hashes[stage])
                    folder.remove_stages(stages[i + 1:] + [EVAL] + ([] if continue_it else [stage]))
                    folder.stage = stage
                    self._run_stage(ctx, stage, hashes[stage], continue_it)
                if stage == self.stop_after:
                    break
                if ctx.stop.requested:  # asked during the stage's last step: stop before the next
                    raise StopRequested(f"stopped after {stage}")
        finally:
            folder.stage = RUN
            if ctx.tensorboard is not None:
                ctx.tensorboard.close()
                folder.adopt_tree(self.out / "tensorboard")

    def _may_continue(self, stage: str, digest: str) -> bool:
        """--resume: continue `stage` from its checkpoints only if they were made under `digest`."""
        if not self.resume:
            return False
        if stage_started(self.out, stage, digest):
            return True
        if (self.out / stage).is_dir() and any((self.out / stage).iterdir()):
            log.warning("%s: its checkpoint was made with other inputs or settings; starting the stage over", stage)
        return False

    def _run_stage(self, ctx: RunContext, stage: str, digest: str, continue_it: bool) -> None:
        ctx.resume, ctx.stage_hash = continue_it, digest
        module = importlib.import_module(f"fitter.stages.{stage}.stage")
        atomic.write_json(ctx.stage_dir(stage) / STARTED_JSON, {"stage": stage, "hash": digest})
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
