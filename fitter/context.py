"""What a stage is handed: the config, the run folder, the device, logging and the stop flag."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from common.errors import ConfigError, StopRequested
from fitter.config import Config
from fitter.subject import Subject

log = logging.getLogger("headfit")


class StopFlag:
    """Set by SIGINT/SIGTERM. Inside a training loop (`deferred`) the loop polls it, saves a
    checkpoint and stops; anywhere else the signal raises `StopRequested` at once, so a stop is
    honoured promptly in long preparations (loading, meshing) that have nothing to checkpoint.

    A second Ctrl-C while a stop is pending raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self._deferring = 0
        self._previous: dict[int, Any] = {}

    def request(self, signum: int = signal.SIGINT, frame: Any = None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        if not self._deferring:
            raise StopRequested("stop requested")
        log.warning("stop requested: saving a checkpoint at the next step")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """While this block runs, a signal only sets the flag (the caller polls it and checkpoints)."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self.request)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device=cuda but no CUDA device is available (use run.device=auto or cpu)")
    return torch.device(name)


@dataclass
class RunContext:
    cfg: Config
    out: Path
    device: torch.device
    resume: bool = False
    """Whether the running stage continues from its checkpoints (set per stage by the pipeline)."""
    stage_hash: Optional[str] = None
    image: Optional[Path] = None
    """The user's photo (the intake reads it; the reference stage checks user maps against its size)."""
    """The running stage's chained hash; every checkpoint carries it and a mismatch is never loaded."""
    stop: StopFlag = field(default_factory=StopFlag)
    tensorboard: Optional[Any] = None

    @property
    def subject_dir(self) -> Path:
        return self.out / "subject"

    @cached_property
    def subject(self) -> Subject:
        """The intake's subject, loaded once (each of its files is read on first use)."""
        return Subject.load(self.subject_dir)

    def stage_dir(self, stage: str) -> Path:
        path = self.out / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.tensorboard is not None:
            self.tensorboard.add_scalar(tag, value, step)
