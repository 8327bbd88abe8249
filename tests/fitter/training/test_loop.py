"""The shared optimisation loop: exact resume, NaN rollback, stop-and-save."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from common.errors import DivergedError, StopRequested, UserError
from fitter.config import Config
from fitter.context import RunContext, StopFlag
from fitter.training.checkpoint import TrainState, load_checkpoint
from fitter.training.loop import TrainLoop


def make_problem(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    state = TrainState({"model": model}, {"opt": opt}, np.random.default_rng(seed))

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(state.rng.normal(size=(32, 3))).float() + 0.01 * torch.randn(32, 3)
        y = x.sum(dim=1, keepdim=True).sin()
        return {"loss_fit": ((model(x) - y) ** 2).mean()}

    return model, state, step_fn


def ctx_for(tmp_path, resume: bool = False, every: int = 5, max_nan: int = 3) -> RunContext:
    cfg = Config()
    cfg.run.checkpoint_every = every
    cfg.run.max_nan_rollbacks = max_nan
    return RunContext(cfg, tmp_path, torch.device("cpu"), resume=resume)


def params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resume_after_stop_matches_uninterrupted(tmp_path, seeded_rng):
    model, state, step_fn = make_problem()
    TrainLoop(ctx_for(tmp_path / "a"), "geometry", "fit", state, 40, step_fn).run()
    reference = params(model)

    stop_at = int(seeded_rng.integers(1, 39))
    model, state, step_fn = make_problem()
    ctx = ctx_for(tmp_path / "b")

    def stop_at_step(step: int) -> None:
        if step == stop_at:
            ctx.stop.requested = True

    with pytest.raises(StopRequested):
        TrainLoop(ctx, "geometry", "fit", state, 40, step_fn, before_step=stop_at_step).run()
    saved = load_checkpoint(tmp_path / "b" / "geometry" / "fit.pt")
    assert saved is not None and saved["step"] == stop_at + 1  # honoured at the next step boundary

    model, state, step_fn = make_problem(seed=123)  # different init: everything must come from the checkpoint
    state.rng = np.random.default_rng(0)
    TrainLoop(ctx_for(tmp_path / "b", resume=True), "geometry", "fit", state, 40, step_fn).run()
    assert torch.equal(params(model), reference)


def test_nan_rolls_back_and_lowers_lr(tmp_path):
    model, state, step_fn = make_problem()
    poisoned = {"left": 1}

    def flaky(step: int) -> dict[str, torch.Tensor]:
        losses = step_fn(step)
        if step == 7 and poisoned["left"]:
            poisoned["left"] -= 1
            return {"loss_fit": losses["loss_fit"] * float("nan")}
        return losses

    TrainLoop(ctx_for(tmp_path), "geometry", "fit", state, 20, flaky).run()
    assert state.nan_failures == 1
    assert state.lr_scale == pytest.approx(0.5)
    assert state.optimizers["opt"].param_groups[0]["lr"] == pytest.approx(5e-3)
    assert torch.isfinite(params(model)).all()


def test_persistent_nan_stops_with_clear_error(tmp_path):
    model, state, step_fn = make_problem()

    def always_nan(step: int) -> dict[str, torch.Tensor]:
        return {"loss_fit": step_fn(step)["loss_fit"] * float("inf") if step >= 3 else step_fn(step)["loss_fit"]}

    with pytest.raises(DivergedError, match="NaN/Inf 3 times"):
        TrainLoop(ctx_for(tmp_path, max_nan=2), "geometry", "fit", state, 20, always_nan).run()


def test_checkpoint_loads_without_pickled_code(tmp_path):
    model, state, step_fn = make_problem()
    TrainLoop(ctx_for(tmp_path, every=4), "texture", "refine", state, 8, step_fn).run()
    saved = torch.load(tmp_path / "texture" / "refine.pt", weights_only=True)
    assert saved["step"] == 8 and "loss_fit" in saved["history"]


def test_tensorboard_scalars_when_enabled(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    model, state, step_fn = make_problem()
    ctx = ctx_for(tmp_path)
    ctx.tensorboard = SummaryWriter(log_dir=str(tmp_path / "tb"))
    TrainLoop(ctx, "geometry", "fit", state, 6, step_fn).run()
    ctx.tensorboard.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert "geometry/fit/loss_fit" in events.Tags()["scalars"]
    assert len(events.Scalars("geometry/fit/loss_fit")) == 6


def test_a_checkpoint_of_another_stage_hash_is_never_loaded(tmp_path, caplog):
    model, state, step_fn = make_problem()
    ctx = ctx_for(tmp_path)
    ctx.stage_hash = "made-with-photo-a"
    TrainLoop(ctx, "geometry", "fit", state, 8, step_fn).run()
    model, state, step_fn = make_problem()
    ctx = ctx_for(tmp_path, resume=True)
    ctx.stage_hash = "now-photo-b"
    with caplog.at_level("WARNING", logger="headfit"):
        TrainLoop(ctx, "geometry", "fit", state, 8, step_fn).run()
    assert "other inputs or settings" in caplog.text
    assert load_checkpoint(tmp_path / "geometry" / "fit.pt")["stage_hash"] == "now-photo-b"
    assert state.history["loss_fit"][0][0] == 1  # it ran from step 0


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04 truncated"])
def test_a_damaged_checkpoint_is_a_user_error_naming_the_file(tmp_path, content):
    path = tmp_path / "geometry" / "sculpt.pt"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(UserError, match="sculpt.pt is damaged") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and "--resume" in str(info.value)


def test_a_checkpoint_that_does_not_fit_the_model_is_a_user_error(tmp_path):
    model, state, step_fn = make_problem()
    TrainLoop(ctx_for(tmp_path), "geometry", "fit", state, 4, step_fn).run()
    wider = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    other = TrainState({"model": wider}, {"opt": torch.optim.Adam(wider.parameters())}, np.random.default_rng(0))
    with pytest.raises(UserError, match="does not fit this run"):
        TrainLoop(ctx_for(tmp_path, resume=True), "geometry", "fit", other, 8, step_fn).run()


def test_a_stop_outside_a_training_loop_is_honoured_at_once():
    flag = StopFlag()
    with pytest.raises(StopRequested):
        flag.request(signal.SIGTERM)
    flag = StopFlag()
    with flag.deferred():
        flag.request(signal.SIGTERM)  # inside a loop: only the flag, the loop checkpoints
    assert flag.requested
