"""Errors of reading and converting a PanoHead checkpoint. Each is one line and a user error (exit 2);
each is also a ValueError, which `run.py convert-panohead` reports as "cannot convert ...: <why>"."""

from __future__ import annotations

import pickle

from fitter.errors import OutputError, UserError
from guidance.weights import WeightFileError


class CheckpointError(WeightFileError):
    """The checkpoint cannot be used: unreadable, not a network pickle, or not a PanoHead generator."""


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (it could run code when loaded)."""


class PickleLimitError(CheckpointError):
    """Reading the pickle would take more work or memory than any real checkpoint needs."""


class OutputLocationError(OutputError, ValueError):
    """The converted file cannot be written where the user asked."""


class ConvertUsageError(UserError, ValueError):
    """The conversion command's arguments are wrong (missing, extra or unknown)."""
