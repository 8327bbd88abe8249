"""The one interface every engine offers: run these subject tasks, report each result as it comes."""

from __future__ import annotations

from typing import Optional, Protocol, Sequence

from common.errors import UserError
from fitter.batch.local_engine import LocalEngine
from fitter.batch.task import OnResult, SubjectTask

ENGINES = ("local", "ray", "submitit")


class Engine(Protocol):
    def run(self, tasks: Sequence[SubjectTask], on_result: OnResult) -> None:
        """Run every task; call `on_result` once per task, in the order they finish."""


def make_engine(name: str, gpus_per_fit: Optional[float], cpus_per_fit: int, address: Optional[str] = None,
                cluster: Optional[str] = None, folder: str = "", timeout_min: int = 240,
                partition: Optional[str] = None) -> Engine:
    if name == "local":
        return LocalEngine()
    if name == "ray":
        from fitter.batch.ray_engine import RayEngine

        return RayEngine(gpus_per_fit, cpus_per_fit, address)
    if name == "submitit":
        from fitter.batch.submitit_engine import SubmititEngine

        return SubmititEngine(folder, gpus_per_fit, cpus_per_fit, cluster, timeout_min, partition)
    raise UserError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
