"""Training state that can be saved atomically, restored exactly, and snapshotted in memory."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from common import atomic
from common.errors import UserError
from guidance.weights import WeightFileError, unpickle_plain


@dataclass
class TrainState:
    """Everything an optimisation needs to continue bit-for-bit: modules, optimisers, RNGs, extras.

    `get_extra`/`set_extra` carry stage-specific state (e.g. a narrow band of tets) as a dict of
    tensors and plain values.
    """

    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    rng: np.random.Generator
    get_extra: Optional[Callable[[], dict]] = None
    set_extra: Optional[Callable[[dict], None]] = None
    lr_scale: float = 1.0
    nan_failures: int = 0
    history: dict[str, list] = field(default_factory=dict)

    def state_dict(self, step: int, stage_hash: Optional[str] = None) -> dict[str, Any]:
        return {
            "step": step,
            "stage_hash": stage_hash,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": self.rng.bit_generator.state,
            "extra": self.get_extra() if self.get_extra else {},
            "lr_scale": self.lr_scale,
            "nan_failures": self.nan_failures,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> int:
        # Extras first: they may change parameter shapes (e.g. a rebuilt band) before modules load.
        if self.set_extra:
            self.set_extra(state["extra"])
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        torch.set_rng_state(state["torch_rng"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.lr_scale = float(state["lr_scale"])
        self.nan_failures = int(state["nan_failures"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        return int(state["step"])

    def snapshot(self, step: int, stage_hash: Optional[str] = None) -> dict[str, Any]:
        """An in-memory deep copy (for NaN rollback)."""
        return copy.deepcopy(self.state_dict(step, stage_hash))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic.write_torch(path, state)


def load_checkpoint(path: Path) -> Optional[dict[str, Any]]:
    """Load a checkpoint with `weights_only=True` (no code runs); None when there is none.
    Raises UserError for a file that cannot be read as one."""
    if not path.is_file():
        return None

    try:
        state = unpickle_plain(path)
    except WeightFileError as exc:
        raise UserError(f"checkpoint {path} is damaged ({exc}); delete it to start that stage over, "
                        "or rerun without --resume") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UserError(f"checkpoint {path} is not a headfit checkpoint; delete it or rerun without --resume")
    return state
