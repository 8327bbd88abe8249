"""The optimisation loop every fitting stage uses.

It checkpoints every `run.checkpoint_every` steps and at the end (atomically), resumes from the
latest checkpoint with `--resume` (bit-for-bit on CPU with a fixed seed), saves and stops on
Ctrl-C/SIGTERM, and rolls a NaN/Inf loss back to the last good state with a halved learning rate,
giving up after `run.max_nan_rollbacks` failures.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Optional

import torch

from common.errors import DivergedError, StopRequested, UserError
from fitter.context import RunContext
from fitter.training.checkpoint import TrainState, load_checkpoint, save_checkpoint
from fitter.training.progress import StageProgress

log = logging.getLogger("headfit")

StepFn = Callable[[int], dict[str, torch.Tensor]]
"""Computes the weighted loss terms of one step (names `loss_*`); the loop sums and steps."""


def _finite(losses: dict[str, torch.Tensor], state: TrainState) -> bool:
    if not all(torch.isfinite(v.detach()).all() for v in losses.values()):
        return False
    for opt in state.optimizers.values():
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    return False
    return True


def _scale_lr(state: TrainState, factor: float) -> None:
    state.lr_scale *= factor
    for opt in state.optimizers.values():
        for group in opt.param_groups:
            group["lr"] *= factor


class TrainLoop:
    """Runs `step_fn` for `total_steps` steps on `state`, with checkpoints in `stage_dir/name.pt`."""

    def __init__(self, ctx: RunContext, stage: str, name: str, state: TrainState, total_steps: int, step_fn: StepFn,
                 before_step: Optional[Callable[[int], None]] = None):
        self.ctx, self.stage, self.name = ctx, stage, name
        self.state, self.total, self.step_fn = state, total_steps, step_fn
        self.before_step = before_step
        self.path: Path = ctx.stage_dir(stage) / f"{name}.pt"
        self.every = ctx.cfg.run.checkpoint_every
        self.max_failures = ctx.cfg.run.max_nan_rollbacks

    def _start_step(self) -> int:
        if not self.ctx.resume:
            return 0
        saved = load_checkpoint(self.path)
        if saved is None:
            return 0
        if saved.get("stage_hash") != self.ctx.stage_hash:
            log.warning("%s/%s: the checkpoint was made with other inputs or settings; starting over", self.stage, self.name)
            return 0
        try:
            step = self.state.load_state_dict(saved)
        except (KeyError, RuntimeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:160]
            raise UserError(f"checkpoint {self.path} does not fit this run ({detail}); delete it or rerun without --resume") from None
        log.info("%s/%s: resumed at step %d", self.stage, self.name, step)
        return step

    def run(self) -> TrainState:
        with self.ctx.stop.deferred():
            return self._run()

    def _run(self) -> TrainState:
        step = self._start_step()
        good = self.state.snapshot(step, self.ctx.stage_hash)
        with StageProgress(f"{self.stage}:{self.name}", self.total, step) as progress:
            while step < self.total:
                if self.ctx.stop.requested:
                    save_checkpoint(self.path, self.state.state_dict(step, self.ctx.stage_hash))
                    raise StopRequested(f"{self.stage} stopped at step {step}")
                if self.before_step is not None:
                    self.before_step(step)
                losses = self._one_step(step)
                if losses is None:
                    step = self._rollback(good, step)
                    continue
                step += 1
                progress.update(step, losses)
                self._record(step, losses)
                if step % self.every == 0 or step == self.total:
                    good = self.state.snapshot(step, self.ctx.stage_hash)
                    save_checkpoint(self.path, good)
        return self.state

    def _one_step(self, step: int) -> Optional[dict[str, float]]:
        for opt in self.state.optimizers.values():
            opt.zero_grad(set_to_none=True)
        losses = self.step_fn(step)
        total = sum(losses.values())
        if torch.is_tensor(total) and total.requires_grad and torch.isfinite(total):
            total.backward()
        if not _finite(losses, self.state):
            return None
        for opt in self.state.optimizers.values():
            opt.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["loss"] = float(sum(values.values()))
        return values

    def _rollback(self, good: dict, step: int) -> int:
        failures = self.state.nan_failures + 1
        if failures > self.max_failures:
            raise DivergedError(
                f"{self.stage}: losses became NaN/Inf {failures} times (last at step {step}); "
                "lower the learning rate or the loss weights (lambda_*) and rerun"
            )
        restored = self.state.load_state_dict(good)
        self.state.nan_failures = failures
        _scale_lr(self.state, 0.5)
        log.warning("%s: NaN/Inf at step %d; rolled back to step %d, learning rate x%.3g", self.stage, step, restored, self.state.lr_scale)
        return restored

    def _record(self, step: int, losses: dict[str, float]) -> None:
        for key, value in losses.items():
            if math.isfinite(value):
                self.state.history.setdefault(key, []).append((step, value))
                self.ctx.scalar(f"{self.stage}/{self.name}/{key}", value, step)
        if step % max(1, self.total // 20) == 0 or step == self.total:
            log.debug("%s/%s step %d/%d %s", self.stage, self.name, step, self.total,
                      " ".join(f"{k}={v:.4g}" for k, v in losses.items()))
