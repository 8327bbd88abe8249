#!/usr/bin/env python3
"""Fit a textured 3D head to one portrait photo: `python run.py --image face.png` (see --help)."""

import os
import sys

# Before torch/MediaPipe load: OpenMP threads that spin while waiting make every CPU step several
# times slower on a busy machine; MediaPipe's C++ logging would otherwise fill stderr.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from fitter.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
