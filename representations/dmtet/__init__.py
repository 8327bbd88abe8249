"""DMTet: tet grids (dense, cached; or narrow band), marching tetrahedra, hash-grid SDF model."""

from .band import band_grid, eval_chunked
from .cache import cache_dir
from .grid import TetGrid, dense_grid, tets_from_cubes
from .marching import marching_tets
from .mesh_sdf import mesh_signed_distance
from .model import DMTet, DMTetConfig
from .shapes import ellipsoid_sdf, sphere_sdf

__all__ = [
    "DMTet", "DMTetConfig", "TetGrid", "band_grid", "cache_dir", "dense_grid", "ellipsoid_sdf",
    "eval_chunked", "marching_tets", "mesh_signed_distance", "sphere_sdf", "tets_from_cubes",
]
