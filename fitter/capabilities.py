"""Settings that ask for a part of the fit this build does not have yet.

Checked before any work starts, so a run never spends minutes in the intake and init to fail at the
geometry stage. Each entry names the setting and the value that avoids it.
"""

from __future__ import annotations

from fitter.config import Config


def unavailable(cfg: Config) -> list[str]:
    missing = []
    if cfg.reference.source == "estimator" and cfg.models.normal_estimator:
        missing.append("a reference normal estimator (unset models.normal_estimator; models.depth_estimator works)")
    return missing
