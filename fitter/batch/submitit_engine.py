"""`--engine submitit`: one SLURM job array (one element per subject) through submitit; on a machine
without SLURM (or with `--cluster local`) submitit's local executor runs every subject at once, each
in its own process.

Each job asks for `--gpus-per-fit` GPUs (rounded up; default 1 on SLURM, and locally 1 when this
machine has a CUDA GPU, else 0) and `--cpus-per-fit` CPUs, `--timeout-min`
minutes and, on SLURM, `--slurm-partition`. Job files and logs go to `ROOT/.batch/submitit/`. The
jobs run on cluster nodes that must see this repository, the photos and ROOT at the same paths.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Optional, Sequence

from common.errors import UserError
from fitter.batch.task import OnResult, SubjectTask, lost_task, run_subject

POLL_S = 0.5
log = logging.getLogger("headfit")


def default_gpus(cluster: Optional[str]) -> float:
    """1 on SLURM (GPU partitions are the norm; --gpus-per-fit 0 for CPU ones); locally, 1 if this
    machine has a CUDA GPU, else 0."""
    import shutil

    slurm = cluster == "slurm" or (cluster is None and shutil.which("sbatch") is not None)
    if slurm:
        gpus, why = 1.0, "SLURM"
    else:
        import torch

        gpus, why = (1.0, "a CUDA GPU here") if torch.cuda.is_available() else (0.0, "no CUDA GPU here")
    log.info("batch: each fit asks for %g GPU (%s; --gpus-per-fit sets it)", gpus, why)
    return gpus


class SubmititEngine:
    def __init__(self, folder: str | Path, gpus_per_fit: Optional[float], cpus_per_fit: int, cluster: Optional[str] = None,
                 timeout_min: int = 240, partition: Optional[str] = None):
        self.folder, self.cluster = Path(folder), cluster
        if gpus_per_fit is None:
            gpus_per_fit = default_gpus(cluster)
        self.parameters = {"name": "headfit", "timeout_min": timeout_min, "gpus_per_node": math.ceil(gpus_per_fit),
                           "cpus_per_task": cpus_per_fit, "slurm_partition": partition}

    def run(self, tasks: Sequence[SubjectTask], on_result: OnResult) -> None:
        executor = self._executor()
        jobs = executor.map_array(run_subject, list(tasks))
        pending = dict(zip(jobs, tasks))
        try:
            while pending:
                for job in [job for job in pending if job.done()]:
                    task = pending.pop(job)
                    try:
                        result = job.result()
                    except Exception as exc:  # the job itself failed (crash, timeout, node lost)
                        result = lost_task(task, exc)
                    on_result(result)
                time.sleep(POLL_S if pending else 0)
        except KeyboardInterrupt:
            for job in pending:
                job.cancel(check=False)
            raise

    def _executor(self):  # type: ignore[no-untyped-def]
        import submitit

        try:
            executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"submitit cannot use cluster {self.cluster or 'auto'}: {exc}") from None
        executor.update_parameters(**self.parameters)
        return executor
