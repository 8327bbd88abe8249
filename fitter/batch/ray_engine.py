"""`--engine ray`: one Ray task per subject, each asking for `num_gpus=--gpus-per-fit` (default: 1
when the cluster has GPUs, else 0; logged) and `num_cpus=--cpus-per-fit`, so Ray runs as many fits at once as the cluster's resources allow. Ray
sets OMP_NUM_THREADS to the task's CPUs and the fit inherits it, so fits sharing a machine do not
oversubscribe its cores (on a 2-core box: two fits at once, one thread each).

Without `--address` a new Ray instance is started on this machine (all its CPUs and GPUs), even if
one is running already, and shut down at the end; with `--address auto` (or host:port) the batch
joins a running cluster, whose nodes must see this repository, the photos and ROOT at the same
paths. If Ray is already initialised in this process (as the tests do, with logical GPUs), that
instance is used and left running.

Failed fits are retried inside the task (see task.py). Ray itself does not re-run a task whose
worker or node died (a re-run could overlap the dying fit in the same folder): such a subject is
reported as failed, and rerunning the batch resumes it from its checkpoint.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

from common.errors import UserError
from fitter.batch.task import OnResult, SubjectTask, lost_task, run_subject

log = logging.getLogger("headfit")
CANCEL_GRACE_S = 150.0
"""How long cancelled fits get to save a checkpoint before Ray is shut down."""


class RayEngine:
    def __init__(self, gpus_per_fit: Optional[float], cpus_per_fit: int, address: Optional[str] = None):
        self.gpus, self.cpus, self.address = gpus_per_fit, cpus_per_fit, address

    def run(self, tasks: Sequence[SubjectTask], on_result: OnResult) -> None:
        import ray

        started = self._connect(ray)
        self._choose_gpus(ray)
        try:
            self._run_all(ray, tasks, on_result)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:  # type: ignore[no-untyped-def]
        """Start or join Ray unless this process already has; True when this call did."""
        if ray.is_initialized():
            return False
        try:
            ray.init(address=self.address or "local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot start or reach Ray (address {self.address or 'local'}): {exc}") from None
        if self.address is None:
            self._choose_gpus(ray)
            self._check_local_resources(ray)
        return True

    def _choose_gpus(self, ray) -> None:  # type: ignore[no-untyped-def]
        if self.gpus is not None:
            return
        have = ray.cluster_resources().get("GPU", 0)
        self.gpus = 1.0 if have >= 1 else 0.0
        log.info("batch: the Ray cluster has %g GPU(s): each fit asks for %g (--gpus-per-fit sets it)", have, self.gpus)

    def _check_local_resources(self, ray) -> None:  # type: ignore[no-untyped-def]
        """A task asking for more than a fixed local instance has would wait forever."""
        have = ray.cluster_resources()
        if have.get("GPU", 0) < self.gpus or have.get("CPU", 0) < self.cpus:
            ray.shutdown()
            raise UserError(
                f"each fit asks for {self.gpus:g} GPU and {self.cpus} CPU but this machine has {have.get('GPU', 0):g} GPU "
                f"and {have.get('CPU', 0):g} CPU: lower --gpus-per-fit/--cpus-per-fit or join a cluster with --address")

    def _run_all(self, ray, tasks: Sequence[SubjectTask], on_result: OnResult) -> None:  # type: ignore[no-untyped-def]
        fit = ray.remote(run_subject).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        pending = {fit.remote(task): task for task in tasks}
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    result = lost_task(task, exc)
                on_result(result)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
            raise
