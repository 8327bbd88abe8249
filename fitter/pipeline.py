"""Runs the stages in order: intake -> prior -> reference -> init -> geometry -> texture -> rig -> export.

What each stage reads, which config sections and input files change its result and which models it
needs are declared in its contract (`fitter/contract.py`, `fitter/stages/<name>/__init__.py`); this
module derives everything from them. Each stage writes `OUT/<stage>/` and, last,
`OUT/<stage>/done.json` holding its hash: its config sections, the contents of its input files and
the hashes of the stages it reads, so a change upstream invalidates exactly what depends on it.
`--resume` skips stages whose marker matches and continues the first one that runs from its
checkpoints when its `started.json` carries the same hash (otherwise, with one warning, that stage
starts over); without `--resume` every stage after the intake runs afresh, except stages whose
contract asks for reuse (the reference maps) and the intake (which reuses a complete `subject/` for
the same photo and settings).

A stage that runs deletes its own outputs (unless it continues from its checkpoints) and those of
every stage that depends on it, so a run that stops early never leaves results of other inputs
behind. Only files listed in the run folder's manifest are ever deleted (`fitter/outdir.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch

from common import atomic
from common.digests import file_sha256
from common.errors import StopRequested
from fitter import dry_run
from fitter.config import Config, as_dict, to_yaml
from fitter.context import RunContext, resolve_device
from fitter.contract import StageContract
from fitter.logs import held_back, log_traceback, release_into, run_log
from fitter.outdir import RUN, RunFolder
from fitter.stages.registry import CONTRACTS
from fitter.subject import Subject
from guidance.models import effective_models_config

log = logging.getLogger("headfit")
INTAKE = CONTRACTS[0].name
LATER = CONTRACTS[1:]


def _section(cfg_dict: dict, dotted: str) -> object:
    node: object = cfg_dict
    for part in dotted.split("."):
        node = node[part]  # type: ignore[index]
    return node


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_input_files(cfg: Config, subject_dir: Path) -> dict[str, dict[str, str | None]]:
    """sha256 (None: absent) of the files each stage reads beyond its upstream stages' outputs and its
    config, by a name that does not depend on where the run folder is (a copied or moved run still resumes)."""
    return {c.name: {name: file_sha256(path) for name, path in c.inputs(cfg, subject_dir).items()} for c in LATER}


def stage_hashes(cfg: Config, subject: dict, input_files: dict[str, dict] | None = None) -> dict[str, str]:
    """Hash per stage over its config sections, ``input_files`` (`stage_input_files`) and the hashes of
    the stages it reads (the intake's is the subject: photo, intake settings, files)."""
    cfg_dict, input_files = as_dict(cfg), input_files or {}
    hashes = {INTAKE: _digest([subject.get("input_sha256"), subject.get("settings"), subject.get("files")])}
    for c in LATER:
        upstream = [hashes[name] for name in c.reads]
        hashes[c.name] = _digest([upstream, [_section(cfg_dict, s) for s in c.sections(cfg)], input_files.get(c.name)])
    return {c.name: hashes[c.name] for c in LATER}


def dependents(stage: str) -> list[str]:
    """The stages that read ``stage``'s outputs, directly or through others, in run order."""
    found: set[str] = {stage}
    for c in LATER:
        if found & set(c.reads):
            found.add(c.name)
    return [c.name for c in LATER if c.name in found and c.name != stage]


def _stage_files(folder: Path) -> dict[str, str | None]:
    skip = {DONE_JSON, STARTED_JSON}
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def stage_done(out: Path, stage: str, digest: str, check_files: bool = False) -> bool:
    """Whether `stage` finished under `digest` (and, with ``check_files``, its files are as it left them)."""
    try:
        record = json.loads((out / stage / DONE_JSON).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("hash") != digest:
        return False
    return not check_files or record.get("files") == _stage_files(out / stage)


def with_effective_models(cfg: Config) -> Config:
    """The config the stages run with: `models.preset=tiny-random`/`random-full` resolved to the preset's
    model folders (built once in the cache), so the intake's ArcFace embedding and every stage load the same set."""
    if cfg.models.preset == "real":
        return cfg
    return dataclasses.replace(cfg, models=effective_models_config(cfg.models))


EVAL = "eval"
"""What `run.py eval` wrote into the run folder: stale once any stage is redone."""
DONE_JSON = "done.json"
"""Written when a stage ends: the hash it ran under, its wall time (and its files' digests for reused stages)."""
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
        t0 = time.perf_counter()
        for contract in CONTRACTS:  # bad user maps, init mesh or views: refused before anything is written
            contract.check(self.cfg, self.image)
        ctx = RunContext(self.cfg, self.out, resolve_device(self.cfg.run.device), resume=self.resume, image=self.image)
        ctx.stop.install()
        try:
            folder.stage = INTAKE
            with held_back() as intake_records:  # run.log may be written only once the photo is accepted
                CONTRACTS[0].run(ctx)  # validates before writing
            folder.stage = RUN
            atomic.claim(self.out / "run.log")
            with run_log(self.out / "run.log") as handler:
                release_into(intake_records, handler)
                try:
                    atomic.write_text(self.out / "config.yaml", to_yaml(self.user_cfg))
                    log.info("intake: %s (%.1f s)", self.out / "subject", time.perf_counter() - t0)
                    self._after_intake(ctx, folder)
                except BaseException as exc:
                    log_traceback(f"run ended by {type(exc).__name__}: {exc}", exc)
                    raise
        finally:
            ctx.stop.uninstall()

    def _after_intake(self, ctx: RunContext, folder: RunFolder) -> None:
        hashes = self._hashes()
        if self.stop_after == INTAKE:  # what the new subject made stale goes, nothing runs
            folder.remove_stages([c.name for c in LATER if not self._finished(c, hashes[c.name], resume=True)] + [EVAL])
            return
        self._run_stages(ctx, folder, hashes)

    def _hashes(self) -> dict[str, str]:
        subject = Subject.load(self.out / "subject").record
        return stage_hashes(self.user_cfg, subject, stage_input_files(self.cfg, self.out / "subject"))

    def _finished(self, contract: StageContract, digest: str, resume: bool) -> bool:
        """Whether `contract`'s stage may be skipped: done under `digest`, and --resume or a reused stage."""
        return (resume or contract.reuse) and stage_done(self.out, contract.name, digest, check_files=contract.reuse)

    def _run_stages(self, ctx: RunContext, folder: RunFolder, hashes: dict[str, str]) -> None:
        ctx.tensorboard = self._tensorboard()
        torch.use_deterministic_algorithms(self.cfg.run.deterministic, warn_only=True)
        first = True  # only the first stage that runs may continue from its checkpoints
        try:
            for contract in LATER:
                stage, digest = contract.name, hashes[contract.name]
                if self._finished(contract, digest, self.resume):
                    log.info("%s: %s", stage, "already complete, skipped" if self.resume else "reusing the finished stage")
                else:
                    continue_it = first and self._may_continue(stage, digest)
                    folder.remove_stages(dependents(stage) + [EVAL] + ([] if continue_it else [stage]))
                    folder.stage = stage
                    self._run_stage(ctx, contract, digest, continue_it)
                    first = False
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

    def _run_stage(self, ctx: RunContext, contract: StageContract, digest: str, continue_it: bool) -> None:
        stage = contract.name
        ctx.resume, ctx.stage_hash = continue_it, digest
        atomic.write_json(ctx.stage_dir(stage) / STARTED_JSON, {"stage": stage, "hash": digest})
        t0 = time.perf_counter()
        log.info("%s: started", stage)
        contract.run(ctx)
        wall = time.perf_counter() - t0
        record = {"stage": stage, "hash": digest, "wall_s": round(wall, 3)}
        if contract.reuse:
            record["files"] = _stage_files(self.out / stage)
        atomic.write_json(ctx.stage_dir(stage) / DONE_JSON, record)
        log.info("%s: done in %.1f s", stage, wall)

    def _tensorboard(self):  # type: ignore[no-untyped-def]
        if not self.cfg.run.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter  # optional and slow to import

        return SummaryWriter(log_dir=str(self.out / "tensorboard"))
