"""Errors of reading and converting a PanoHead checkpoint. Each is one line and a ValueError, which
`run.py convert-panohead` reports as "cannot convert ...: <why>" (exit 2); the checkpoint errors are
also `MissingModelError`s (through `WeightFileError`), so a fit reports them the same way."""

from __future__ import annotations

import pickle

from guidance.weights import WeightFileError


class CheckpointError(WeightFileError):
    """The checkpoint cannot be used: unreadable, not a network pickle, or not a PanoHead generator."""


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (it could run code when loaded)."""


class PickleLimitError(CheckpointError):
    """Reading the pickle would take more work or memory than any real checkpoint needs."""


class OutputLocationError(ValueError):
    """The converted file cannot be written where the user asked."""
