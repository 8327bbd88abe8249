"""`run_batch`: plan every subject (skip, resume or fresh), run the rest on an engine, keep the summary."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common import atomic
from fitter.batch.discover import find_images
from fitter.batch.engine import make_engine
from fitter.batch.progress import BatchProgress
from fitter.batch.state import Plan, plan_subject
from fitter.batch.summary import read_metrics, write_summary
from fitter.batch.task import DONE, PENDING, SKIPPED, STOPPED, SubjectResult, SubjectTask, log_path_for
from fitter.config import Config, to_yaml
from fitter.outdir import RunFolder


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    images: Path
    """A folder of photos or a text file listing them."""
    root: Path
    config: Path
    overrides: tuple[str, ...] = ()
    engine: str = "local"
    retries: int = 1
    """Extra attempts for a fit that fails (not for a photo the intake refuses)."""
    gpus_per_fit: Optional[float] = None
    """None: 1 where the cluster (or this machine) has GPUs, else 0 (the engine decides and logs it)."""
    cpus_per_fit: int = 1
    address: Optional[str] = None
    cluster: Optional[str] = None
    timeout_min: int = 240
    partition: Optional[str] = None


def run_batch(options: BatchOptions, cfg: Config, folder: Optional[RunFolder] = None) -> list[SubjectResult]:
    """Fit every photo into `ROOT/<stem>/`; `cfg` is the config the options resolve to (already checked).
    `folder`: ROOT, opened and locked by the caller (one is opened here when None)."""
    if folder is None:
        with RunFolder(options.root, [options.images]) as opened:
            return run_batch(options, cfg, opened)
    root = options.root.absolute()
    images = find_images(options.images)
    results, tasks = plan_all(options, root, images, to_yaml(cfg))
    for task in tasks:
        atomic.claim(task.log)  # the fits append to their logs from other processes
    engine = make_engine(options.engine, gpus_per_fit=options.gpus_per_fit, cpus_per_fit=options.cpus_per_fit,
                         address=options.address, cluster=options.cluster, folder=str(root / ".batch" / "submitit"),
                         timeout_min=options.timeout_min, partition=options.partition)
    with BatchProgress(len(results)) as progress:
        record = Recorder(root, _header(options, root), results, progress)
        record.save()
        for result in [r for r in results.values() if r.status == SKIPPED]:
            record(result)
        try:
            engine.run(tasks, record)
        except KeyboardInterrupt:
            record.stop_pending()
            raise
        finally:
            folder.adopt_tree(root / ".batch" / "submitit")
    return list(results.values())


class Recorder:
    """Takes each finished subject: adds its metrics, shows it, rewrites the summary."""

    def __init__(self, root: Path, header: dict, results: dict[str, SubjectResult], progress: BatchProgress):
        self.root, self.header, self.results, self.progress = root, header, results, progress

    def __call__(self, result: SubjectResult) -> None:
        if result.status in (DONE, SKIPPED):
            result.metrics = read_metrics(Path(result.out))
        self.results[result.stem] = result
        self.progress.subject_finished(result)
        self.save()

    def stop_pending(self) -> None:
        for result in self.results.values():
            if result.status == PENDING:
                result.status = STOPPED
        self.save()

    def save(self) -> None:
        write_summary(self.root, list(self.results.values()), self.header)


def plan_all(options: BatchOptions, root: Path, images: list[Path], config_yaml: str) -> tuple[dict[str, SubjectResult], list[SubjectTask]]:
    """One result per photo (in photo order): `skipped` for complete subjects, `pending` for the tasks."""
    results: dict[str, SubjectResult] = {}
    tasks = []
    for image in images:
        out = root / image.stem
        plan = plan_subject(out, image, config_yaml)
        status = SKIPPED if plan is Plan.SKIP else PENDING
        results[image.stem] = SubjectResult(image.stem, str(image), str(out), status)
        if plan is not Plan.SKIP:
            tasks.append(SubjectTask(image.stem, str(image.absolute()), str(out), str(options.config.absolute()),
                                     tuple(options.overrides), plan is Plan.RESUME, options.retries,
                                     str(log_path_for(root, image.stem))))
    return results, tasks


def _header(options: BatchOptions, root: Path) -> dict:
    return {
        "root": str(root), "images": str(options.images), "config": str(options.config),
        "overrides": list(options.overrides), "engine": options.engine,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
