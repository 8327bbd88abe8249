"""Batch fitting: one subprocess `run.py` fit per photo, scheduled by an engine (local, Ray, submitit).

`run_batch` discovers the photos, skips subjects already complete, resumes partial ones, runs the
rest on the chosen engine and keeps `ROOT/summary.csv` and `ROOT/summary.json` up to date.
"""

from fitter.batch.run import BatchOptions, run_batch

__all__ = ["BatchOptions", "run_batch"]
