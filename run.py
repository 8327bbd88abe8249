#!/usr/bin/env python3
"""Fit a textured 3D head to one portrait photo: `python run.py --image face.png` (see --help)."""

import sys

from fitter.cli import main

if __name__ == "__main__":
    sys.exit(main())
