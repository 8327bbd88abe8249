"""Errors of the mesh package (plain exceptions: `representations` does not depend on `fitter`)."""

from __future__ import annotations


class UVUnwrapError(RuntimeError):
    """The xatlas worker process crashed, hung past its timeout, or returned an unusable atlas."""


class MeshFormatError(ValueError):
    """A mesh file cannot be read or written in the requested format."""


class MeshGeometryError(ValueError):
    """A mesh's geometry cannot stand for a solid: non-finite or out-of-range data, or degenerate shape."""
