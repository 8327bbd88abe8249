"""How a camera-frame normal map is written as an RGB image, per consumer: the one table.

Our normals are in the OpenGL camera frame of `representations.cameras` (x right, y up, z towards the
viewer; the renderer's ``normal_cam`` pass). An encoding multiplies them by per-axis signs, maps
``[-1, 1] → [0, 1]`` with ``(1 + s·n) / 2`` and fills the pixels outside the mask with a background
colour. A head seen head-on is (0.5, 0.5, 1) (lavender) in all three.

=================  ==========  ===============  ==============================================================
encoding           signs       background       consumer, and why
=================  ==========  ===============  ==============================================================
NORMAL_ADAPTED_SD  (1, 1, 1)   (0.5, 0.5, 1)    the ISD prior on the normal-adapted SD1.5 (HumanNorm,
                                                ``models.normal_sd``), the seed paper's geometry setting
                                                (`ISDConfig.normal_encoding` ``normal_adapted_sd``). Source:
                                                jinkun-hao/ID-Sculpt (the authors' code)
                                                threestudio/models/renderers/nvdiff_rasterizer.py l. 143–158
                                                (``comp_normal_viewspace``: w2c·n, ``(n + 1) / 2``, background
                                                normal (0, 0, 1)), which threestudio/systems/IDsculpt_geo.py
                                                l. 170–171 hands to the guidance; the view frame is
                                                threestudio's c2w = (right, up, −lookat)
                                                (threestudio/data/coarse2fine_data.py l. 301–302), i.e. ours.
                                                The same signs decode the model's generated reference normal
                                                maps (fitter/stages/reference/maps.py): HumanNorm trained it
                                                on ``normal_type: camera`` renders, ``(n + 1) / 2`` on black
                                                (xhuangcv/humannorm configs/humannorm-geometry-head.yaml l. 63,
                                                threestudio/models/renderers/nvdiff_rasterizer.py l. 71–80).
NORMAL_CONTROLNET  (−1, 1, 1)  (0, 0, 0)        the normal ControlNet (lllyasviel/control_v11p_sd15_normalbae),
                                                used by the texture stage's inpainting and refinement
                                                (`guidance.control.normal_control`). Bae et al.'s annotator
                                                writes red = image-left, green = up, blue = front; the
                                                authors flip x for it ("align with normalbae: blue = front,
                                                red = left, green = top", ID-Sculpt
                                                threestudio/systems/IDsculpt_tex.py l. 206–208), as does
                                                HumanNorm's ``normal_type: controlnet`` (nvdiff_rasterizer.py
                                                l. 81–93). The BAE network could not be run offline to
                                                confirm it. `ISDConfig.normal_encoding` ``normal_controlnet``
                                                gives the prior this encoding too (the pre-issue-16 hero).
REFERENCE_FILES    (1, 1, 1)   (0, 0, 0)        our ``reference/normal.png`` files (fitter/stages/reference/
                                                view.py reads them, maps.py writes them) and the user's maps
                                                in that convention: HumanNorm's camera encoding, 8-bit.
=================  ==========  ===============  ==============================================================

`encode` is differentiable (the ISD input image); `decode` inverts it inside the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class NormalEncoding:
    """``rgb = (1 + axes · n) / 2`` inside the mask, ``background`` outside (see the module's table)."""

    name: str
    axes: tuple[float, float, float]
    background: tuple[float, float, float]


NORMAL_ADAPTED_SD = NormalEncoding("normal_adapted_sd", (1.0, 1.0, 1.0), (0.5, 0.5, 1.0))
NORMAL_CONTROLNET = NormalEncoding("normal_controlnet", (-1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
REFERENCE_FILES = NormalEncoding("reference_files", (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
ENCODINGS = {e.name: e for e in (NORMAL_ADAPTED_SD, NORMAL_CONTROLNET, REFERENCE_FILES)}
"""Every encoding by name (the names `ISDConfig.normal_encoding` offers are among them)."""


def _batched(x: Tensor) -> Tensor:
    return x if x.dim() == 4 else x.unsqueeze(0)


def encode(normal_cam: Tensor, mask: Tensor | None, encoding: NormalEncoding) -> Tensor:
    """(B, 3, H, W) image in [0, 1] of camera-frame normals.

    Args:
        normal_cam: (H, W, 3) or (B, H, W, 3), OpenGL camera frame (e.g. the renderer's ``normal_cam``).
        mask: (H, W, 1) or (B, H, W, 1) coverage in [0, 1] (blended with the background), or None.
        encoding: an entry of the table (module docstring).
    Differentiable in both ``normal_cam`` and ``mask``.
    """
    normal = _batched(normal_cam)
    image = (normal * normal.new_tensor(encoding.axes) + 1.0) * 0.5
    if mask is not None:
        mask = _batched(mask)
        image = image * mask + normal.new_tensor(encoding.background) * (1.0 - mask)
    return image.permute(0, 3, 1, 2).clamp(0.0, 1.0)


def decode(image: Tensor, encoding: NormalEncoding) -> Tensor:
    """(B, H, W, 3) unit camera-frame normals of a (3, H, W) or (B, 3, H, W) image in [0, 1].

    Meaningful inside the mask only: the background decodes to whatever normal its colour spells."""
    rgb = _batched(image).permute(0, 2, 3, 1)
    normal = (rgb * 2.0 - 1.0) * rgb.new_tensor(encoding.axes)
    return torch.nn.functional.normalize(normal, dim=-1)
