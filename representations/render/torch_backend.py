"""Our own backend: numba id raster + torch barycentrics and an analytic antialiased mask.

Works on CPU and CUDA tensors. On CUDA the id raster still runs in numba on the CPU (clip
positions are copied over, ids copied back; that transfer is small next to the raster itself);
everything differentiable runs in torch on the tensors' device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from representations.render.fragments import Fragments, perspective_barycentrics
from representations.render.raster_numba import rasterize_ids
from representations.render.silhouette_numba import silhouette_crossings
from representations.render.topology import AdjacencyCache

NEAR_W = 1e-6


def clip_to_screen(clip: Tensor, height: int, width: int) -> Tensor:
    """(V, 2) pixel positions (x right, y down; pixel centres at +0.5) of clip positions (V, 4)."""
    x = (clip[:, 0] / clip[:, 3] * 0.5 + 0.5) * width
    y = (0.5 - clip[:, 1] / clip[:, 3] * 0.5) * height
    return torch.stack([x, y], dim=1)


class TorchRasterBackend:
    name = "torch"

    def __init__(self) -> None:
        self._adjacency = AdjacencyCache()

    def rasterize(self, clip: Tensor, faces: Tensor, height: int, width: int) -> Fragments:
        """Fragments of clip-space triangles (clip (V, 4), faces (F, 3)) at height x width."""
        faces = faces.long()
        with torch.no_grad():
            clip_np = clip.detach().to("cpu", torch.float64).numpy()
            faces_np = faces.detach().cpu().numpy()
            tri_id, depth, _ = rasterize_ids(clip_np, faces_np, height, width, NEAR_W)
        device = clip.device
        triangle_id = torch.from_numpy(tri_id).to(device=device, dtype=torch.long)
        flat = triangle_id.view(-1)
        pixel = torch.nonzero(flat >= 0).squeeze(1)
        face = flat[pixel]
        bary = perspective_barycentrics(clip, faces, face, pixel, height, width)
        depth_t = torch.from_numpy(depth).to(device=device, dtype=clip.dtype)
        return Fragments(triangle_id, depth_t, pixel, face, bary, clip, faces, {"faces_np": faces_np, "clip_np": clip_np})

    def antialias_mask(self, frags: Fragments) -> Tensor:
        """(H, W, 1) coverage in [0, 1], differentiable w.r.t. the clip positions at silhouettes.

        Each pixel pair straddling the silhouette has the edge crossing at distance s (in pixels,
        from the covered pixel's centre). The pixel whose half of the segment contains the crossing
        gets its coverage moved by s - 0.5: the background pixel gains it, or the covered pixel loses
        it. Per row (column) that reproduces the area left of (above) a straight edge exactly; rows
        and columns are blended by the edge direction (dy^2 / |d|^2 for rows), so edges of any slope
        get the right area and a smooth gradient.
        """
        height, width = frags.height, frags.width
        covered = frags.covered
        mask = covered.to(frags.clip.dtype).view(-1)
        edges, edge_faces = self._adjacency.get(frags.extra["faces_np"])
        clip_np, faces_np = frags.extra["clip_np"], frags.extra["faces_np"]
        drawn = (clip_np[:, 3] >= NEAR_W)[faces_np].all(axis=1)
        screen_np = clip_to_screen(torch.from_numpy(clip_np), height, width).numpy()  # inf where w = 0: only undrawn faces
        pairs_np, pair_edges = silhouette_crossings(screen_np, faces_np, drawn, edges, edge_faces, covered.cpu().numpy())
        if len(pairs_np) == 0:
            return mask.view(height, width, 1)
        device = frags.clip.device
        pairs = torch.from_numpy(pairs_np).to(device)
        ends = torch.from_numpy(edges[pair_edges]).to(device)
        # only the crossing edges' ends are differentiated, all in front of the camera
        a = clip_to_screen(frags.clip.index_select(0, ends[:, 0]), height, width)
        b = clip_to_screen(frags.clip.index_select(0, ends[:, 1]), height, width)
        return self._blend_crossings(mask, covered.view(-1), pairs, a, b, height, width).view(height, width, 1)

    @staticmethod
    def _blend_crossings(mask: Tensor, covered: Tensor, pairs: Tensor, a: Tensor, b: Tensor, height: int, width: int) -> Tensor:
        """Add the crossing corrections to the flat hard ``mask`` (H*W,); pairs (P, 3), edge ends a, b (P, 2)."""
        vertical = pairs[:, 0] == 1
        i, j = pairs[:, 1], pairs[:, 2]
        first = i * width + j
        second = torch.where(vertical, first + width, first + 1)
        along = torch.where(vertical, 1, 0)
        across = 1 - along
        a_along, b_along = a.gather(1, along[:, None])[:, 0], b.gather(1, along[:, None])[:, 0]
        a_across, b_across = a.gather(1, across[:, None])[:, 0], b.gather(1, across[:, None])[:, 0]
        centre = torch.where(vertical, j, i).to(a.dtype) + 0.5
        crossing = a_along + (centre - a_across) * (b_along - a_along) / (b_across - a_across)
        first_centre = torch.where(vertical, i, j).to(a.dtype) + 0.5
        first_covered = covered[first]
        s = torch.where(first_covered, crossing - first_centre, first_centre + 1.0 - crossing)
        d_along, d_across = b_along - a_along, b_across - a_across
        axis_weight = d_across**2 / (d_along**2 + d_across**2)
        shift = (s - 0.5) * axis_weight
        fg_pixel = torch.where(first_covered, first, second)
        bg_pixel = torch.where(first_covered, second, first)
        target = torch.where(shift > 0, bg_pixel, fg_pixel)
        return mask.index_add(0, target, shift).clamp(0.0, 1.0)
