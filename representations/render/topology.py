"""Edge adjacency of a triangle mesh, cached per face array (the antialiased mask needs it)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


def edge_adjacency(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges and the faces on each side.

    Args:
        faces: (F, 3) int vertex indices.
    Returns:
        edges: (E, 2) int64 vertex indices.
        edge_faces: (E, 2) int64 the first two faces using the edge; -1 where the edge is on the
            mesh boundary. (A non-manifold edge keeps only its first two faces.)
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)
    corner_edges = faces[:, [[1, 2], [2, 0], [0, 1]]].reshape(-1, 2)
    lo, hi = corner_edges.min(axis=1), corner_edges.max(axis=1)
    key = lo * (int(faces.max(initial=0)) + 1) + hi
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    has_second = np.r_[first[1:] - first[:-1], len(key) - first[-1:]] >= 2
    face_of = order // 3
    edge_faces = np.full((len(first), 2), -1, np.int64)
    edge_faces[:, 0] = face_of[first]
    second = np.minimum(first + 1, len(key) - 1)
    edge_faces[has_second, 1] = face_of[second[has_second]]
    edges = np.stack([lo[order[first]], hi[order[first]]], axis=1)
    return edges, edge_faces


class AdjacencyCache:
    """Keeps `edge_adjacency` results for the last few face arrays (keyed by their bytes)."""

    def __init__(self, size: int = 8):
        self._size = size
        self._items: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = np.ascontiguousarray(faces, dtype=np.int64)
        key = (faces.shape, hash(faces.tobytes()))
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = edge_adjacency(faces)
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value
