"""Fixtures shared by several test files."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture
def one_thread():
    """Torch on one thread: with tiny models, threads only add overhead (and contend under xdist).
    A file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def seeded_rng(request) -> np.random.Generator:
    """A generator for tests that draw (a stop step, a delay): seeded, and the seed printed (pytest
    shows it with a failure) so that `HEADFIT_TEST_SEED=N` reproduces the draw."""
    seed = int(os.environ.get("HEADFIT_TEST_SEED") or secrets.randbits(32))
    print(f"{request.node.nodeid}: random seed {seed} (HEADFIT_TEST_SEED={seed} reproduces it)")
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def intake_run(tmp_path_factory) -> Path:
    """A run folder holding a finished intake of the shipped photo (preview config, tiny models)."""
    from tests.reference_support import run_to

    out = tmp_path_factory.mktemp("intake") / "run"
    assert run_to(out, "intake") == 0
    return out


@pytest.fixture
def run_dir(intake_run: Path, tmp_path: Path) -> Path:
    """A private copy of `intake_run` that a test may run later stages in."""
    out = tmp_path / "run"
    shutil.copytree(intake_run, out)
    return out
