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


class SettingError(ConfigError, ValueError):
    """A settings dataclass refused a value in its `__post_init__` (see `require`). `key` is the field's name in
    that dataclass; `fitter.config.load_config` reports it under the section's path (e.g. `fit.geometry.isd.`)."""

    def __init__(self, key: str, why: str):
        self.key, self.why = key, why
        super().__init__(f"{key} {why}")


def require(ok: bool, key: str, why: str) -> None:
    """A range check of a settings dataclass: `SettingError` "<key> <why>" unless ``ok``."""
    if not ok:
        raise SettingError(key, why)


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
