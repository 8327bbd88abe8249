"""One subject's fit: `python run.py ...` in a subprocess, retried, its exit code read as the status.

A subprocess per fit isolates subjects from each other (memory, CUDA state, a crash) and runs
exactly what a single `run.py` run does. Exit 0 is done; 2 is a photo or setting the user must fix,
reported and never retried; 130 means the fit was asked to stop; anything else is retried with
`--resume`, so a retry continues from the last checkpoint.

This module runs inside Ray workers and submitit jobs: keep it free of heavy imports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fitter.config import REPO_ROOT

RUN_PY = REPO_ROOT / "run.py"
# Put in front of the fit's command on Linux: the fit gets SIGTERM (it saves a checkpoint and stops)
# when the process that started it dies, e.g. a killed Ray worker or submitit job, instead of running
# on orphaned next to the rerun. argv: parent pid, then the command to exec.
DIE_WITH_PARENT = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(130)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
EXIT_USER, EXIT_STOPPED = 2, 130

DONE, SKIPPED, REFUSED, FAILED, STOPPED, PENDING = "done", "skipped", "refused", "failed", "stopped", "pending"


@dataclass(frozen=True)
class SubjectTask:
    stem: str
    image: str
    out: str
    config: str
    overrides: tuple[str, ...] = ()
    resume: bool = False
    retries: int = 1
    log: str = ""
    """File that collects the fit's stdout and stderr, attempt after attempt."""


@dataclass
class SubjectResult:
    stem: str
    image: str
    out: str
    status: str
    attempts: int = 0
    wall_s: float = 0.0
    reason: str = ""
    resumed: bool = False
    metrics: dict = field(default_factory=dict)


OnResult = Callable[[SubjectResult], None]
"""What an engine calls with each finished subject."""


def lost_task(task: SubjectTask, exc: BaseException) -> SubjectResult:
    """The result of a task that its engine lost (worker died, job crashed or timed out)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return SubjectResult(task.stem, task.image, task.out, FAILED, reason=f"{type(exc).__name__}: {text[:300]}",
                         resumed=task.resume)


def fit_command(task: SubjectTask, resume: bool) -> list[str]:
    command = [sys.executable, str(RUN_PY), "--image", task.image, "--config", task.config, "--out", task.out, *task.overrides]
    return command + ["--resume"] if resume else command


def run_subject(task: SubjectTask) -> SubjectResult:
    t0 = time.perf_counter()
    resume = task.resume
    for attempt in range(1, task.retries + 2):
        code, reason = run_once(task, resume, attempt)
        status = _status(code)
        if status != FAILED or attempt > task.retries:
            break
        resume = True
    return SubjectResult(task.stem, task.image, task.out, status, attempt, round(time.perf_counter() - t0, 3),
                         "" if status == DONE else reason, resumed=task.resume)


def _status(code: int) -> str:
    return {0: DONE, EXIT_USER: REFUSED, EXIT_STOPPED: STOPPED}.get(code, FAILED)


def run_once(task: SubjectTask, resume: bool, attempt: int) -> tuple[int, str]:
    """Run the fit once; return its exit code and the one-line reason it printed (if any)."""
    log_path = Path(task.log)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fit = fit_command(task, resume)
    command = [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *fit] if sys.platform.startswith("linux") else fit
    with open(log_path, "ab") as log:
        log.write(f"== attempt {attempt}: {' '.join(fit)}\n".encode())
        log.flush()
        start = log.tell()
        code = _wait(subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return code, _reason(log_path, start, code)


def _wait(proc: subprocess.Popen) -> int:
    """Wait for the fit; when this process is interrupted, stop it the way Ctrl-C would (it saves a
    checkpoint). It runs in its own session so a terminal's Ctrl-C reaches it only through here."""
    try:
        return proc.wait()
    except BaseException:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _reason(log_path: Path, start: int, code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    with open(log_path, "rb") as f:
        f.seek(start)
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        for prefix in ("error: ", "internal error: ", "stopped: "):
            if line.startswith(prefix):
                return line.removeprefix("error: ")
    return f"exit code {code}" + (f": {lines[-1].strip()}" if lines else "")


def log_path_for(root: Path, stem: str) -> Path:
    return root / ".batch" / "logs" / f"{stem}.log"
