"""Progress across subjects: a rich bar (subjects finished / total, counts by status, elapsed, ETA)
on a terminal, and one line per finished subject either way."""

from __future__ import annotations

import sys
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fitter.batch.task import DONE, SKIPPED, SubjectResult


class BatchProgress:
    def __init__(self, total: int):
        self.total, self.finished = total, 0
        self.counts: dict[str, int] = {}
        self._progress: Optional[Progress] = None
        self._task = None

    def __enter__(self) -> "BatchProgress":
        console = Console(stderr=True)
        if console.is_terminal and sys.stderr.isatty():
            self._progress = Progress(
                TextColumn("[bold]subjects"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            )
            self._progress.start()
            self._task = self._progress.add_task("subjects", total=self.total, counts="")
        return self

    def subject_finished(self, result: SubjectResult) -> None:
        self.finished += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        line = describe(result, self.finished, self.total)
        if self._progress is None:
            print(line, file=sys.stderr, flush=True)
            return
        self._progress.console.print(line, markup=False, highlight=False)
        counts = " ".join(f"{status}={n}" for status, n in sorted(self.counts.items()))
        self._progress.update(self._task, completed=self.finished, counts=counts)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def describe(result: SubjectResult, finished: int, total: int) -> str:
    head = f"[{finished}/{total}] {result.stem}: {result.status}"
    if result.status == SKIPPED:
        return head + " (already complete)"
    if result.status != DONE:
        return f"{head} after {result.attempts} attempt(s): {result.reason}"
    psnr = result.metrics.get("psnr_db")
    quality = f", reference PSNR {psnr:.2f} dB" if psnr is not None else ""
    wrap = result.metrics.get("wrap_error_pct")
    quality += f", wrap error {wrap:.2f}% of head height" if wrap is not None else ""
    return f"{head} in {result.wall_s:.1f} s{' (resumed)' if result.resumed else ''}{quality}"
