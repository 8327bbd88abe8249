"""`--engine local`: the subjects one after another in this process's machine, nothing to install."""

from __future__ import annotations

from typing import Sequence

from fitter.batch.task import OnResult, SubjectTask, run_subject


class LocalEngine:
    def run(self, tasks: Sequence[SubjectTask], on_result: OnResult) -> None:
        for task in tasks:
            on_result(run_subject(task))
