"""Where messages go.

The terminal gets INFO summaries on stdout, `warning: ...` lines on stderr and, from the CLI, one
`error: ...` line; DEBUG lines (per-step losses), tracebacks and other libraries' log records go to
`OUT/run.log` only. The rich progress bar draws on stderr when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Iterator

LOGGER = "headfit"


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _NotOurs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(LOGGER)


class _StreamOf(logging.StreamHandler):
    """A handler writing to ``sys.stdout``/``sys.stderr`` as they are at emit time (pytest's capsys
    and redirections swap them)."""

    def __init__(self, name: str):
        super().__init__()
        self.stream_name = name

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


class _Prefixed(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split()) if record.levelno >= logging.WARNING else record.getMessage()
        return f"warning: {message}" if record.levelno >= logging.WARNING else message


def setup_terminal() -> None:
    """Install the terminal handlers once (idempotent): INFO to stdout, warnings to stderr as one
    `warning:` line each; nothing below INFO and nothing from other libraries reaches the terminal."""
    log = logging.getLogger(LOGGER)
    if any(getattr(h, "_headfit_terminal", False) for h in log.handlers):
        return
    log.setLevel(logging.DEBUG)
    out = _StreamOf("stdout")
    out.setLevel(logging.INFO)
    out.addFilter(_Below(logging.WARNING))
    err = _StreamOf("stderr")
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_Prefixed())
        handler._headfit_terminal = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    root = logging.getLogger()
    if not root.handlers:  # no lastResort printing of other libraries' warnings on the terminal
        root.addHandler(logging.NullHandler())
    logging.captureWarnings(True)


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[logging.Handler]:
    """Everything (DEBUG and up, ours and other libraries') appended to `path` while the block runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours, root = logging.getLogger(LOGGER), logging.getLogger()
    foreign = logging.FileHandler(path, encoding="utf-8")
    foreign.setLevel(logging.INFO)
    foreign.addFilter(_NotOurs())
    foreign.setFormatter(handler.formatter)
    ours.addHandler(handler)
    root.addHandler(foreign)
    try:
        yield handler
    finally:
        ours.removeHandler(handler)
        root.removeHandler(foreign)
        handler.close()
        foreign.close()


def log_traceback(message: str, exc: BaseException) -> None:
    """The traceback of `exc` into run.log (when one is open), never onto the terminal."""
    log = logging.getLogger(LOGGER)
    record = log.makeRecord(LOGGER, logging.DEBUG, __file__, 0, message, (), (type(exc), exc, exc.__traceback__))
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


@contextlib.contextmanager
def held_back() -> Iterator[logging.handlers.MemoryHandler]:
    """Keep our records (DEBUG and up) in memory while the block runs, e.g. the intake's, which runs
    before OUT may be written; `release_into` hands them to run.log once it is open."""
    buffer = logging.handlers.MemoryHandler(capacity=1 << 20, flushLevel=logging.CRITICAL + 1, flushOnClose=False)
    buffer.setLevel(logging.DEBUG)
    log = logging.getLogger(LOGGER)
    log.addHandler(buffer)
    try:
        yield buffer
    finally:
        log.removeHandler(buffer)


def release_into(buffer: logging.handlers.MemoryHandler, handler: logging.Handler) -> None:
    buffer.setTarget(handler)
    buffer.flush()
    buffer.close()
