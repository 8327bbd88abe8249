"""Settings that ask for a part of the fit this build does not have yet.

Checked before any work starts, so a run never spends minutes in the intake and init to fail at the
geometry stage. Each entry names the setting and the value that avoids it. Empty in this build:
every setting the config validator accepts is implemented (the last entry, a reference normal
estimator, is fitter/reference_estimate_normals.py).
"""

from __future__ import annotations

from fitter.config import Config


def unavailable(cfg: Config) -> list[str]:
    missing: list[str] = []
    return missing
