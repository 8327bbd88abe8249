"""A rich progress bar per stage (step/total, main losses, ETA); silent when stderr is not a terminal."""

from __future__ import annotations

import sys
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

MAIN_LOSSES = 3


class StageProgress:
    def __init__(self, label: str, total: int, start: int = 0):
        self.label, self.total, self.start = label, total, start
        self._progress: Optional[Progress] = None
        self._task = None

    def __enter__(self) -> "StageProgress":
        console = Console(stderr=True)
        if console.is_terminal and sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, completed=self.start, losses="")
        return self

    def update(self, step: int, losses: dict[str, float]) -> None:
        if self._progress is None:
            return
        main = sorted(((k, v) for k, v in losses.items() if k != "loss"), key=lambda kv: -abs(kv[1]))[:MAIN_LOSSES]
        text = " ".join(f"{k.removeprefix('loss_')}={v:.3g}" for k, v in [("loss", losses.get("loss", 0.0)), *main])
        self._progress.update(self._task, completed=step, losses=text)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
