"""Progressive UV inpainting: walk a camera trajectory and let a generator fill what is still unknown.

Per view: render the partial texture, its coverage and the normals in a camera cropped to the
silhouette box × ``crop_scale`` at ``gen_size``²; pixels whose texel coverage is below
``coverage_threshold`` (and inside the silhouette) are generated; new pixels are back-projected
into the texels that are still below the threshold, only where the eroded silhouette sees them with
a view cosine above ``min_view_cosine``. Updated texels take the view cosine as their coverage, so a
texel first seen at a grazing angle is painted again by a later, better view.

Coverage (T, T) in [0, 1]: photo-projection confidence for the reference, view cosine for generated texels.
Textures are (T, T, 3) with row 0 = v 1 (see representations/render/texture.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from fitter.config import InpaintSettings
from guidance.control import camera_azimuth, normal_control
from representations.cameras import Camera, OrbitView
from representations.mesh import Mesh
from representations.render import TexelSurface, back_project, render, texel_visibility


@dataclass
class InpaintView:
    """What the generator is given for one view (all (1, C, S, S), S = gen_size)."""

    camera: Camera
    azimuth: float
    image: Tensor
    """(1, 3, S, S) render of the partial texture on ``background``."""
    keep: Tensor
    """(1, 1, S, S) {0, 1}: pixels to keep (covered texels and background)."""
    control: Tensor
    """(1, 3, S, S) normal-ControlNet image."""
    mask: Tensor
    """(1, 1, S, S) silhouette coverage."""


Generator = Callable[[InpaintView], Tensor]
"""Returns the completed view image (1, 3, S, S) in [0, 1]."""


@dataclass
class InpaintResult:
    texture: Tensor
    coverage: Tensor
    views: list[dict] = field(default_factory=list)
    """Per view: azimuth, elevation, generated pixels, texels written."""


def crop_camera(view: OrbitView, gen_size: int, crop_scale: float, mesh: Mesh, probe_size: int = 128) -> Camera | None:
    """The view's camera cropped to its silhouette box × ``crop_scale`` (square), at gen_size²; None when the mesh is unseen."""
    probe = view.camera(probe_size)
    with torch.no_grad():
        mask = render(mesh.verts.float(), mesh.faces, probe, ("mask",), backend="auto")["mask"][..., 0].cpu().numpy()
    rows, cols = np.nonzero(mask > 0.01)
    if len(rows) == 0:
        return None
    cy, cx = 0.5 * (rows.min() + rows.max() + 1), 0.5 * (cols.min() + cols.max() + 1)
    side = crop_scale * max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min())
    return probe.cropped(cx - side / 2, cy - side / 2, side, side, gen_size)


def render_view(mesh: Mesh, camera: Camera, texture: Tensor, coverage: Tensor, settings: InpaintSettings) -> dict[str, Tensor]:
    """rgb (H, W, 3) on the background, coverage (H, W) (0 on the background), mask (H, W, 1), normal_cam (H, W, 3)."""
    with torch.no_grad():
        layers = torch.cat([texture, coverage[..., None]], dim=-1).float()
        out = render(mesh.verts.float(), mesh.faces, camera, ("rgb", "mask", "normal_cam"), uv=mesh.uv.float(), uv_faces=mesh.uv_faces,
                     texture=layers, background=0.0, mipmap=False, backend="auto")
    mask = out["mask"]
    rgb = out["rgb"][..., :3] * mask + settings.background * (1.0 - mask)
    return {"rgb": rgb, "coverage": out["rgb"][..., 3], "mask": mask, "normal_cam": out["normal_cam"]}


def view_inputs(mesh: Mesh, camera: Camera, texture: Tensor, coverage: Tensor, settings: InpaintSettings) -> InpaintView:
    out = render_view(mesh, camera, texture, coverage, settings)
    inside = out["mask"][..., 0] > 0.5
    generate = inside & (out["coverage"] < settings.coverage_threshold)
    return InpaintView(
        camera=camera,
        azimuth=camera_azimuth(camera),
        image=out["rgb"].permute(2, 0, 1)[None],
        keep=(~generate).float()[None, None],
        control=normal_control(out["normal_cam"], out["mask"]),
        mask=out["mask"].permute(2, 0, 1)[None],
    )


def eroded(mask: Tensor, pixels: int) -> Tensor:
    """(H, W) bool silhouette shrunk by ``pixels``."""
    m = mask.cpu().numpy() > 0.5
    if pixels > 0:
        m = ndimage.binary_erosion(m, iterations=pixels)
    return torch.from_numpy(m).to(mask.device)


def write_new_pixels(texture: Tensor, coverage: Tensor, surface: TexelSurface, view: InpaintView, generated: Tensor,
                     settings: InpaintSettings) -> int:
    """Back-project generated pixels into still-uncovered texels (in place); returns texels written."""
    new = eroded(view.mask[0, 0], settings.erode_px) & (view.keep[0, 0] < 0.5)
    image = generated[0].permute(1, 2, 0).to(texture)
    colour, cosine = back_project(image, view.camera, surface, new.float(), min_cosine=settings.min_view_cosine,
                                  depth_tolerance=settings.depth_tolerance)
    update = (cosine > settings.min_view_cosine) & (coverage < settings.coverage_threshold)
    texture[update] = colour[update]
    coverage[update] = cosine[update].to(coverage)
    return int(update.sum())


def progressive_inpaint(mesh: Mesh, surface: TexelSurface, texture: Tensor, coverage: Tensor, views: Sequence[OrbitView],
                        generate: Generator, settings: InpaintSettings) -> InpaintResult:
    """Walk ``views`` in order (see module docstring). texture (T, T, 3), coverage (T, T); returns new tensors."""
    texture, coverage = texture.clone().float(), coverage.clone().float()
    result = InpaintResult(texture, coverage)
    for view in views:
        camera = crop_camera(view, settings.gen_size, settings.crop_scale, mesh)
        record = {"azimuth": view.azimuth, "elevation": view.elevation, "generated_px": 0, "texels": 0}
        result.views.append(record)
        if camera is None:
            continue
        inputs = view_inputs(mesh, camera, texture, coverage, settings)
        record["generated_px"] = int((inputs.keep < 0.5).sum())
        if record["generated_px"] < settings.min_new_pixels:
            continue
        generated = generate(inputs).clamp(0.0, 1.0)
        record["texels"] = write_new_pixels(texture, coverage, surface, inputs, generated, settings)
    return result


def visible_texels(surface: TexelSurface, views: Sequence[OrbitView], size: int = 256, min_cosine: float = 0.0) -> Tensor:
    """(T, T) bool: texels that some view sees (unoccluded, facing it with a cosine above ``min_cosine``)."""
    union = torch.zeros_like(surface.valid)
    for view in views:
        union |= texel_visibility(surface, view.camera(size), min_cosine=min_cosine).visible
    return union


def trajectory_coverage(surface: TexelSurface, views: Sequence[OrbitView], probes: Sequence[OrbitView] | Tensor, size: int = 256,
                        min_cosine: float = 0.0) -> float:
    """Fraction of the texels visible from any of ``probes`` (views, or their `visible_texels`) that
    some view of ``views`` sees with a cosine above ``min_cosine``: how much of the seeable surface a
    trajectory can paint."""
    target = probes if isinstance(probes, Tensor) else visible_texels(surface, probes, size)
    return float((visible_texels(surface, views, size, min_cosine) & target).sum()) / max(int(target.sum()), 1)
