"""The `Rasterizer`: one interface over two backends, and the render passes built on it."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from representations.cameras import DEFAULT_FAR, DEFAULT_NEAR, Camera
from representations.render.fragments import Fragments, interpolate_packed, scatter_image
from representations.render.nvdiffrast_backend import NvdiffrastBackend, nvdiffrast_available
from representations.render.texture import sample_texture
from representations.render.torch_backend import TorchRasterBackend

BACKENDS = ("auto", "torch", "nvdiffrast")
PASSES = ("mask", "normal", "normal_cam", "depth", "rgb", "uv", "triangle_id")


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """'torch' or 'nvdiffrast' for a requested backend name on a device."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")
    on_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        return "nvdiffrast" if on_cuda and nvdiffrast_available() else "torch"
    if backend == "nvdiffrast" and not (on_cuda and nvdiffrast_available()):
        raise RuntimeError("render backend 'nvdiffrast' needs a CUDA device and an importable nvdiffrast.torch (pip install .[gpu])")
    return backend


def world_to_clip(vertices: Tensor, camera: Camera, near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR) -> Tensor:
    """(V, 4) clip-space positions of world vertices (V, 3) (differentiable)."""
    mvp = torch.as_tensor(camera.mvp(near, far), dtype=vertices.dtype, device=vertices.device)
    return vertices @ mvp[:, :3].T + mvp[:, 3]


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(V, 3) unit area-weighted vertex normals (counter-clockwise faces point outwards)."""
    corner_index = faces.long().T  # (3, F)
    a, b, c = (vertices.index_select(0, corner) for corner in corner_index)
    face_normals = torch.cross(b - a, c - a, dim=1)  # length = twice the area
    summed = torch.zeros_like(vertices)
    for corner in corner_index:
        summed = summed.index_add(0, corner, face_normals)
    return torch.nn.functional.normalize(summed, dim=1, eps=1e-12)


class Rasterizer:
    """Renders plain tensors (vertices (V, 3) in world space, faces (F, 3)) seen by a `Camera`.

    ``backend``: 'auto' (nvdiffrast on CUDA when it imports, else torch), 'torch' (ours, CPU and
    CUDA) or 'nvdiffrast'. The backend is resolved per device on first use.
    """

    def __init__(self, backend: str = "auto", near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.near, self.far = near, far
        self._backends: dict[str, TorchRasterBackend | NvdiffrastBackend] = {}

    def backend_for(self, device: torch.device | str) -> TorchRasterBackend | NvdiffrastBackend:
        name = resolve_backend(self.backend, device)
        key = f"{name}:{torch.device(device)}"
        if key not in self._backends:
            self._backends[key] = NvdiffrastBackend(device) if name == "nvdiffrast" else TorchRasterBackend()
        return self._backends[key]

    def rasterize(self, vertices: Tensor, faces: Tensor, camera: Camera) -> Fragments:
        """Fragments of the mesh at ``camera`` (its width x height)."""
        clip = world_to_clip(vertices, camera, self.near, self.far)
        return self.rasterize_clip(clip, faces, camera.height, camera.width)

    def rasterize_clip(self, clip: Tensor, faces: Tensor, height: int, width: int) -> Fragments:
        """Fragments of clip-space positions (V, 4) (e.g. UV-space rasterisation)."""
        return self.backend_for(clip.device).rasterize(clip, faces.to(clip.device), height, width)

    def antialias_mask(self, frags: Fragments) -> Tensor:
        """(H, W, 1) antialiased coverage, differentiable w.r.t. vertex positions at silhouettes."""
        return self.backend_for(frags.clip.device).antialias_mask(frags)

    def render(
        self,
        vertices: Tensor,
        faces: Tensor,
        camera: Camera,
        passes: Sequence[str] = ("mask",),
        *,
        normals: Tensor | None = None,
        uv: Tensor | None = None,
        uv_faces: Tensor | None = None,
        texture: Tensor | None = None,
        background: float | Sequence[float] | Tensor = 0.0,
        depth_background: float = 0.0,
        mipmap: bool = True,
    ) -> dict[str, Tensor]:
        """Render the requested passes at one camera (for several cameras, call once per camera).

        Args:
            vertices: (V, 3) world positions; faces: (F, 3) vertex indices.
            passes: any of 'mask', 'normal', 'normal_cam', 'depth', 'rgb', 'uv', 'triangle_id'.
            normals: (V, 3) shading normals; area-weighted vertex normals when None.
            uv: (V, 2) per-vertex UVs, or (A, 2) indexed by uv_faces (F, 3). v grows upwards.
            texture: (Th, Tw, C) for 'rgb' (row 0 at the top, see `texture.py`).
            background: rgb where nothing is drawn (scalar or (C,)); depth_background for depth.
        Returns:
            mask (H, W, 1) antialiased coverage; normal (H, W, 3) unit world-space normal (0 on the
            background); normal_cam (H, W, 3) the same in the OpenGL camera frame; depth (H, W, 1)
            view-axis distance; rgb (H, W, C); uv (H, W, 2); triangle_id (H, W) long, -1 background.
            All but triangle_id are differentiable.
        """
        unknown = set(passes) - set(PASSES)
        if unknown:
            raise ValueError(f"unknown render passes {sorted(unknown)}; choose from {PASSES}")
        faces = faces.to(vertices.device).long()
        frags = self.rasterize(vertices, faces, camera)
        out: dict[str, Tensor] = {}
        if "triangle_id" in passes:
            out["triangle_id"] = frags.triangle_id
        if "mask" in passes:
            out["mask"] = self.antialias_mask(frags)
        if "depth" in passes:
            depth = interpolate_packed(frags.clip[:, 3:4], frags)
            out["depth"] = scatter_image(depth, frags, depth_background)
        if "normal" in passes or "normal_cam" in passes:
            out.update(_normal_passes(vertices, faces, frags, camera, normals, passes))
        if "rgb" in passes or "uv" in passes:
            out.update(_uv_passes(frags, uv, uv_faces, texture, background, mipmap, passes))
        return out


def _normal_passes(vertices: Tensor, faces: Tensor, frags: Fragments, camera: Camera, normals: Tensor | None, passes: Sequence[str]) -> dict[str, Tensor]:
    normals = vertex_normals(vertices, faces) if normals is None else normals
    world = torch.nn.functional.normalize(interpolate_packed(normals, frags), dim=1, eps=1e-12)
    out = {}
    if "normal" in passes:
        out["normal"] = scatter_image(world, frags)
    if "normal_cam" in passes:
        rotation = torch.as_tensor(np.asarray(camera.w2c)[:3, :3], dtype=world.dtype, device=world.device)
        out["normal_cam"] = scatter_image(world @ rotation.T, frags)
    return out


def _uv_passes(frags: Fragments, uv: Tensor | None, uv_faces: Tensor | None, texture: Tensor | None, background, mipmap: bool, passes: Sequence[str]) -> dict[str, Tensor]:
    if uv is None:
        raise ValueError("the 'rgb' and 'uv' passes need uv")
    uv_faces = frags.faces if uv_faces is None else uv_faces.to(frags.faces.device).long()
    uv_at_pixels = interpolate_packed(uv, frags, uv_faces)
    out = {}
    if "uv" in passes:
        out["uv"] = scatter_image(uv_at_pixels, frags)
    if "rgb" in passes:
        if texture is None:
            raise ValueError("the 'rgb' pass needs a texture (Th, Tw, C)")
        colour = sample_texture(texture, uv, uv_faces, frags, uv_at_pixels, mipmap)
        out["rgb"] = scatter_image(colour, frags, torch.as_tensor(background, dtype=colour.dtype, device=colour.device))
    return out


_DEFAULT_RASTERIZERS: dict[str, Rasterizer] = {}


def default_rasterizer(backend: str = "auto") -> Rasterizer:
    """A shared `Rasterizer` per backend name (keeps backend contexts and topology caches)."""
    if backend not in _DEFAULT_RASTERIZERS:
        _DEFAULT_RASTERIZERS[backend] = Rasterizer(backend)
    return _DEFAULT_RASTERIZERS[backend]


def render(vertices: Tensor, faces: Tensor, camera: Camera, passes: Sequence[str] = ("mask",), *, backend: str = "auto", **kwargs) -> dict[str, Tensor]:
    """`Rasterizer.render` with a shared rasterizer for ``backend`` (see there for arguments)."""
    return default_rasterizer(backend).render(vertices, faces, camera, passes, **kwargs)
