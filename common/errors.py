"""Errors a user can cause and fix (exit code 2), as opposed to internal errors (exit code 1)."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the input, config, weights or output location. Printed as one line, exit 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class BadImageError(UserError):
    """The photo cannot be used (missing, corrupt, too small, no face...)."""


class ConfigError(UserError):
    """The config has an unknown key, a wrong type or an out-of-range value."""


class MissingModelError(UserError):
    """A model the config needs is not present locally."""


class OutputError(UserError):
    """The output directory cannot be written."""


class StopRequested(BaseException):
    """Raised when Ctrl-C/SIGTERM asked the run to stop (a training loop saves its checkpoint first).
    A BaseException, like KeyboardInterrupt, so that no `except Exception` (a decoder's, a parser's)
    can turn a stop into some other error."""


class DivergedError(UserError):
    """Losses kept turning NaN/Inf after the allowed number of rollbacks."""
