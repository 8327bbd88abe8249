"""nvdiffrast backend (CUDA only; research/evaluation licence). Imported lazily: CPU machines never
touch nvdiffrast.

nvdiffrast writes image row 0 at NDC y = -1 (the bottom); our images have row 0 at the top (NDC
y = +1), so every image it returns is flipped vertically here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from representations.render.fragments import Fragments


def nvdiffrast_available() -> bool:
    """True when CUDA is up and ``nvdiffrast.torch`` imports."""
    if not torch.cuda.is_available():
        return False
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception:  # a broken build raises more than ImportError
        return False
    return True


class NvdiffrastBackend:
    name = "nvdiffrast"

    def __init__(self, device: torch.device | str = "cuda") -> None:
        import nvdiffrast.torch as dr

        self._dr = dr
        self._context = dr.RasterizeCudaContext(device=torch.device(device))
        self._topology: tuple[Tensor, Tensor] | None = None  # (faces, hash) of the last mesh

    def rasterize(self, clip: Tensor, faces: Tensor, height: int, width: int) -> Fragments:
        """Fragments of clip-space triangles (clip (V, 4) on CUDA, faces (F, 3))."""
        faces_i32 = faces.to(device=clip.device, dtype=torch.int32).contiguous()
        pos = clip.float().contiguous()[None]
        rast, _ = self._dr.rasterize(self._context, pos, faces_i32, resolution=[height, width])
        rast_top = rast[0].flip(0)  # (H, W, 4): u, v, z/w, triangle id + 1
        triangle_id = rast_top[..., 3].long() - 1
        flat = triangle_id.view(-1)
        pixel = torch.nonzero(flat >= 0).squeeze(1)
        uv = rast_top.view(-1, 4)[pixel, :2].to(clip.dtype)
        bary = torch.cat([uv, 1.0 - uv.sum(dim=1, keepdim=True)], dim=1)  # u weights corner 0, v corner 1
        face = flat[pixel]
        with torch.no_grad():
            corner_w = clip[:, 3][faces.long()[face]]
            depth = torch.zeros(height * width, dtype=clip.dtype, device=clip.device)
            depth[pixel] = (bary.detach() * corner_w).sum(dim=1)
        extra = {"rast": rast, "pos": pos, "faces_i32": faces_i32}
        return Fragments(triangle_id, depth.view(height, width), pixel, face, bary, clip, faces.long(), extra)

    def antialias_mask(self, frags: Fragments) -> Tensor:
        """(H, W, 1) nvdiffrast-antialiased coverage."""
        rast, pos, faces_i32 = frags.extra["rast"], frags.extra["pos"], frags.extra["faces_i32"]
        hard = (rast[..., 3:4] > 0).float()
        aa = self._dr.antialias(hard, rast, pos, faces_i32, topology_hash=self._topology_hash(faces_i32))
        return aa[0].flip(0).to(frags.clip.dtype)

    def _topology_hash(self, faces_i32: Tensor) -> Tensor:
        cached = self._topology
        if cached is None or cached[0].shape != faces_i32.shape or not torch.equal(cached[0], faces_i32):
            cached = self._topology = (faces_i32.clone(), self._dr.antialias_construct_topology_hash(faces_i32))
        return cached[1]
