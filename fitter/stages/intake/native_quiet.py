"""Keep MediaPipe's native log lines off the terminal.

MediaPipe 0.10.21 (absl logging) and TFLite write `W0000 ...`, `INFO: Created TensorFlow Lite
XNNPACK delegate ...` and `WARNING: All log messages before absl::InitializeLog() ...` straight to
file descriptor 2, from graph creation and from the graphs' inference threads. No environment
setting silences them in this build (checked: GLOG_minloglevel, GLOG_stderrthreshold,
ABSL_MIN_LOG_LEVEL, TF_CPP_MIN_LOG_LEVEL, TFLITE_LOG_LEVEL), so `native_stderr_to_log` points fd 2
at a temporary file while MediaPipe works. Afterwards the native lines go to the headfit logger at
DEBUG (run.log); anything else written to stderr in that window (Python's own text) is written back
to stderr, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

log = logging.getLogger("headfit")
NATIVE_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|INFO: |WARNING: All log messages before absl)")
"""absl/glog records (`W0000 00:00:...`) and TFLite's/absl's own one-line notices."""
_lock = threading.RLock()
_depth = 0


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)  # C stdio buffers of native code


def _forward(text: str) -> None:
    """Native lines to run.log; any other text back onto stderr."""
    foreign = []
    for line in text.splitlines():
        if NATIVE_LINE.match(line):
            log.debug("native: %s", line)
        elif line.strip():
            foreign.append(line)
    if foreign:
        with contextlib.suppress(Exception):
            sys.stderr.write("\n".join(foreign) + "\n")
            sys.stderr.flush()


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """While the block runs, file descriptor 2 goes to a temporary file (re-entrant: only the
    outermost block redirects); see the module docstring."""
    global _depth
    with _lock:
        _depth += 1
        try:
            if _depth > 1:
                yield
            else:
                with _redirected_fd2():
                    yield
        finally:
            _depth -= 1


@contextlib.contextmanager
def _redirected_fd2() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        try:
            sink = stack.enter_context(tempfile.TemporaryFile(mode="w+b"))
            saved = os.dup(2)
        except OSError:  # no fd 2 or no temporary space: run unredirected rather than fail
            sink = None
        if sink is None:
            yield
            return
        _flush_all()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            _flush_all()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            _forward(sink.read().decode("utf-8", "replace"))
