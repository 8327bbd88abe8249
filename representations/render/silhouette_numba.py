"""Find, for the antialiased mask, which silhouette edge crosses each foreground/background pair.

A silhouette edge (in this view) is a mesh edge whose two faces face opposite ways on screen, or
that has only one drawn face. For every pair of 4-neighbour pixels where exactly one is covered,
we keep the silhouette edge crossing the segment between their centres farthest from the covered
pixel: beyond it the segment is empty, so that crossing is where the union of triangles ends even
when several thin triangles (or an occluded contour) lie between the two pixel centres.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _face_orientation(screen, faces, drawn):
    """+1/-1 by the sign of each drawn face's screen-space area, 0 if not drawn or degenerate."""
    out = np.zeros(faces.shape[0], np.int8)
    for f in range(faces.shape[0]):
        if not drawn[f]:
            continue
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        area = (screen[b, 0] - screen[a, 0]) * (screen[c, 1] - screen[a, 1]) - (screen[b, 1] - screen[a, 1]) * (screen[c, 0] - screen[a, 0])
        out[f] = 1 if area > 0 else (-1 if area < 0 else 0)
    return out


@njit(cache=True)
def _silhouette_edges(edge_faces, orientation):
    out = np.zeros(edge_faces.shape[0], np.bool_)
    for e in range(edge_faces.shape[0]):
        f0, f1 = edge_faces[e, 0], edge_faces[e, 1]
        s0 = orientation[f0]
        s1 = orientation[f1] if f1 >= 0 else 0
        out[e] = (s0 != 0 or s1 != 0) and s0 != s1
    return out


@njit(cache=True)
def _mark_crossings(screen, edges, silhouette, covered, best_edge, best_s, vertical):
    """Scan each silhouette edge across the pixel-pair segments of one axis.

    Horizontal pairs (i, j)-(i, j+1) are stored at [i, j]; vertical pairs (i, j)-(i+1, j) at [i, j]
    of the transposed problem (``vertical`` swaps the roles of x and y).
    """
    ax0, ax1 = (1, 0) if vertical else (0, 1)  # along-pair axis, across-pair axis
    n_across, n_along = best_edge.shape
    for e in range(edges.shape[0]):
        if not silhouette[e]:
            continue
        a, b = edges[e, 0], edges[e, 1]
        pa, pb = screen[a, ax0], screen[b, ax0]
        qa, qb = screen[a, ax1], screen[b, ax1]
        if qa == qb:
            continue
        lo, hi = min(qa, qb), max(qa, qb)
        first = max(int(math.ceil(lo - 0.5)), 0)
        last = min(int(math.ceil(hi - 0.5)) - 1, n_across - 1)  # centres in [lo, hi)
        for r in range(first, last + 1):
            centre = r + 0.5
            crossing = pa + (centre - qa) * (pb - pa) / (qb - qa)
            # a crossing exactly on a pixel centre belongs to the pairs on both sides of it
            for c0 in range(int(math.ceil(crossing - 0.5)) - 1, int(math.floor(crossing - 0.5)) + 1):
                if c0 < 0 or c0 >= n_along:
                    continue
                in0 = covered[c0, r] if vertical else covered[r, c0]
                in1 = covered[c0 + 1, r] if vertical else covered[r, c0 + 1]
                if in0 == in1:
                    continue
                s = crossing - (c0 + 0.5) if in0 else (c0 + 1.5) - crossing
                if s > best_s[r, c0]:
                    best_s[r, c0] = s
                    best_edge[r, c0] = e


def silhouette_crossings(screen: np.ndarray, faces: np.ndarray, drawn: np.ndarray, edges: np.ndarray, edge_faces: np.ndarray, covered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel pairs straddling the silhouette and the edge that crosses each.

    Args:
        screen: (V, 2) float64 vertex positions in pixels (x right, y down).
        faces: (F, 3) int64; drawn: (F,) bool, faces the raster drew (in front of the near plane).
        edges, edge_faces: (E, 2) from `topology.edge_adjacency`.
        covered: (H, W) bool hard coverage.
    Returns:
        pairs: (P, 3) int64 rows (axis, i, j): axis 0 pairs (i, j)-(i, j+1), axis 1 (i, j)-(i+1, j).
        pair_edges: (P,) int64 edge index crossing each pair.
    """
    orientation = _face_orientation(screen, faces, drawn)
    silhouette = _silhouette_edges(edge_faces, orientation)
    height, width = covered.shape
    results = []
    for axis, vertical in ((0, False), (1, True)):
        shape = (height, width - 1) if not vertical else (width, height - 1)
        best_edge = np.full(shape, -1, np.int64)
        best_s = np.full(shape, -1.0)
        _mark_crossings(screen, edges, silhouette, covered, best_edge, best_s, vertical)
        r, c = np.nonzero(best_edge >= 0)
        i, j = (r, c) if not vertical else (c, r)
        results.append((np.stack([np.full_like(i, axis), i, j], axis=1), best_edge[r, c]))
    pairs = np.concatenate([p for p, _ in results]).astype(np.int64)
    pair_edges = np.concatenate([e for _, e in results]).astype(np.int64)
    return pairs, pair_edges
