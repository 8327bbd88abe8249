"""The PanoHead generator: StyleGAN2 backbone -> tri-grid -> decoder -> volume rendering ->
super-resolution, sized entirely by the checkpoint's constructor keyword arguments.

Submodule names follow the official ``TriPlaneGenerator`` (``backbone.mapping``,
``backbone.synthesis``, ``decoder.net``, ``superresolution.block0/1``, ``torgb``, ``bcg_synthesis``),
so the official state dict loads by name (see `keys.py` for what is dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from guidance.panohead.errors import CheckpointError
from guidance.panohead.layers import ToRGBLayer
from guidance.panohead.networks import Backbone, SynthesisNetwork
from guidance.panohead.render import OSGDecoder, RenderOptions, TriGridRenderer, rays
from guidance.panohead.superres import SuperResolution, layout_for

MAPPING_KEYS = ("num_layers", "lr_multiplier", "embed_features", "layer_features")

# Generous ranges for the hyper-parameters a checkpoint carries: wide enough for any PanoHead/EG3D
# variant, narrow enough that a hostile file cannot make building the network hang or exhaust memory.
INT_RANGES = {"z_dim": (1, 4096), "c_dim": (0, 64), "w_dim": (1, 4096), "img_resolution": (4, 4096), "channel_base": (1, 1 << 20),
              "channel_max": (1, 4096), "sr_num_fp16_res": (0, 64), "plane_features": (1, 1024), "neural_rendering_resolution": (1, 1024)}
MAPPING_INT_RANGES = {"num_layers": (1, 64), "embed_features": (1, 4096), "layer_features": (1, 4096)}
RENDERING_INT_RANGES = {"triplane_size": (4, 2048), "triplane_depth": (1, 64), "depth_resolution": (1, 1024),
                        "depth_resolution_importance": (0, 1024)}
RENDERING_NUMBERS = ("box_warp", "triplane_crop", "decoder_lr_mul", "c_scale")
RENDERING_CHOICES = {"decoder_activation": ("sigmoid", "lrelu", "none", "linear"), "superresolution_noise_mode": ("none", "const", "random")}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_ints(values: dict, ranges: dict, where: str) -> None:
    for key, (low, high) in ranges.items():
        value = values.get(key)
        if value is not None and not (type(value) is int and low <= value <= high):
            raise CheckpointError(f"checkpoint hyper-parameter {where}{key}={value!r:.40} is not an integer in [{low}, {high}]")


def check_hyperparameters(kwargs: dict) -> None:
    """Refuse hyper-parameters of the wrong type or far outside any real generator's."""
    _check_ints(kwargs, INT_RANGES, "")
    for key in ("mapping_kwargs", "rendering_kwargs"):
        if not isinstance(kwargs.get(key) or {}, dict):
            raise CheckpointError(f"checkpoint hyper-parameter {key} is not a dict")
    mapping, rendering = kwargs.get("mapping_kwargs") or {}, kwargs.get("rendering_kwargs") or {}
    _check_ints(mapping, MAPPING_INT_RANGES, "mapping_kwargs.")
    _check_ints(rendering, RENDERING_INT_RANGES, "rendering_kwargs.")
    numbers = [("rendering_kwargs." + k, rendering[k]) for k in RENDERING_NUMBERS if k in rendering]
    numbers += [("rendering_kwargs." + k, rendering[k]) for k in ("ray_start", "ray_end") if rendering.get(k, "auto") != "auto"]
    numbers += [(k, kwargs[k]) for k in ("conv_clamp",) if kwargs.get(k) is not None]
    numbers += [("mapping_kwargs.lr_multiplier", mapping["lr_multiplier"])] if "lr_multiplier" in mapping else []
    for where, value in numbers:
        if not _is_number(value):
            raise CheckpointError(f"checkpoint hyper-parameter {where}={value!r:.40} is not a finite number")
    for key, choices in RENDERING_CHOICES.items():
        if rendering.get(key, choices[0]) not in choices:
            raise CheckpointError(f"checkpoint hyper-parameter rendering_kwargs.{key}={rendering[key]!r:.40} is not one of {choices}")
    channels = kwargs.get("sr_channels")
    if channels is not None and not (isinstance(channels, (list, tuple)) and len(channels) == 2
                                     and all(type(c) is int and 1 <= c <= 4096 for c in channels)):
        raise CheckpointError(f"checkpoint hyper-parameter sr_channels={channels!r:.40} is not two integers in [1, 4096]")
    if not isinstance(rendering.get("superresolution_module", ""), str):
        raise CheckpointError("checkpoint hyper-parameter rendering_kwargs.superresolution_module is not a name")


@dataclass
class GeneratorConfig:
    """The hyper-parameters the official pickle stores as ``G_ema``'s init kwargs (plus sizes
    that the official code fixes and tiny test instances change: ``plane_features``, ``sr_channels``)."""

    z_dim: int = 512
    c_dim: int = 25
    w_dim: int = 512
    img_resolution: int = 512
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: Optional[float] = None
    sr_num_fp16_res: int = 0
    mapping_kwargs: dict = field(default_factory=dict)
    rendering_kwargs: dict = field(default_factory=dict)
    plane_features: int = 32
    sr_channels: Optional[tuple[int, int]] = None
    neural_rendering_resolution: int = 64

    @classmethod
    def from_init_kwargs(cls, kwargs: dict) -> "GeneratorConfig":
        check_hyperparameters(kwargs)
        if kwargs.get("architecture", "skip") != "skip":
            raise CheckpointError(f"only the 'skip' synthesis architecture is implemented, checkpoint has {kwargs['architecture']!r}")
        names = set(cls.__dataclass_fields__)
        known = {k: v for k, v in kwargs.items() if k in names}
        known["mapping_kwargs"] = {k: v for k, v in dict(kwargs.get("mapping_kwargs") or {}).items() if k in MAPPING_KEYS}
        if known.get("sr_channels") is not None:
            known["sr_channels"] = tuple(known["sr_channels"])
        return cls(**known)

    def rendering(self, key: str, default=None):
        return self.rendering_kwargs.get(key, default)

    def render_options(self) -> RenderOptions:
        r = self.rendering_kwargs
        return RenderOptions(r.get("box_warp", 1.0), r.get("ray_start", 2.25), r.get("ray_end", 3.3), r.get("depth_resolution", 48),
                             r.get("depth_resolution_importance", 48), r.get("triplane_crop", 0.1), bool(r.get("white_back", False)))


class PanoHeadGenerator(nn.Module):
    """ws (N, num_ws, w_dim) + camera label c (N, 25) -> 'image' (N, 3, R, R) in [-1, 1] (roughly),
    'image_raw' (N, 3, r, r), 'image_depth' (N, 1, r, r), 'image_mask' (N, 1, r, r); r is the
    neural rendering resolution."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        depth = int(cfg.rendering("triplane_depth", 1))
        self.plane_shape = (3, cfg.plane_features, depth)
        self.backbone = Backbone(cfg.z_dim, cfg.c_dim, cfg.w_dim, int(cfg.rendering("triplane_size", 256)), 3 * cfg.plane_features * depth,
                                 cfg.mapping_kwargs, cfg.channel_base, cfg.channel_max, cfg.conv_clamp)
        layout = layout_for(cfg.rendering("superresolution_module", "SuperresolutionHybrid8XDC"), cfg.img_resolution, cfg.sr_channels)
        sr_clamp = 256.0 if cfg.sr_num_fp16_res > 0 else None
        self.superresolution = SuperResolution(cfg.plane_features, cfg.img_resolution, cfg.w_dim, layout, sr_clamp, bool(cfg.rendering("sr_antialias", True)))
        self.decoder = OSGDecoder(cfg.plane_features, cfg.plane_features, float(cfg.rendering("decoder_lr_mul", 1.0)), cfg.rendering("decoder_activation", "sigmoid"))
        self.torgb = ToRGBLayer(cfg.plane_features, 3, cfg.w_dim) if cfg.rendering("use_torgb_raw", False) else None
        self.bcg_synthesis = None
        if cfg.rendering("use_background", False):
            self.bcg_synthesis = SynthesisNetwork(cfg.w_dim, layout.input_resolution, cfg.plane_features, cfg.channel_base // 2, cfg.channel_max, cfg.conv_clamp)
        self.renderer = TriGridRenderer(cfg.render_options())
        self.neural_rendering_resolution = cfg.neural_rendering_resolution

    @property
    def num_ws(self) -> int:
        return self.backbone.mapping.num_ws

    def mapping(self, z: Tensor, c: Tensor) -> Tensor:
        """z (N, z_dim), c (N, 25) -> ws (N, num_ws, w_dim), with PanoHead's pose-conditioning rules."""
        if self.cfg.rendering("c_gen_conditioning_zero", False):
            c = torch.zeros_like(c)
        return self.backbone.mapping(z, c * float(self.cfg.rendering("c_scale", 0.0)))

    def planes(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """The tri-grid (N, 3, C, D, H, W)."""
        out = self.backbone.synthesis(ws, noise_mode)
        return out.reshape(out.shape[0], *self.plane_shape, *out.shape[-2:])

    def density(self, planes: Tensor, points: Tensor) -> Tensor:
        """Raw σ (N, M) at PanoHead-world points (N, M, 3) (the official shape-extraction quantity)."""
        sigma, _ = self.renderer.query(planes, self.decoder, points)
        return sigma[..., 0]

    def synthesis(self, ws: Tensor, c: Tensor, noise_mode: str = "const", jitter: bool = False, resolution: Optional[int] = None) -> dict[str, Tensor]:
        r = resolution or self.neural_rendering_resolution
        n = ws.shape[0]
        origins, dirs = rays(c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3), r)
        feats, depth, opacity = self.renderer(self.planes(ws, noise_mode), self.decoder, origins, dirs, jitter)
        feature_image = feats.permute(0, 2, 1).reshape(n, -1, r, r)
        depth_image = depth.permute(0, 2, 1).reshape(n, 1, r, r)
        opacity = opacity.permute(0, 2, 1).reshape(n, 1, r, r)
        if self.decoder.activation == "sigmoid":
            feature_image = feature_image * 2 - 1
        if self.bcg_synthesis is not None:
            feature_image = feature_image + (1 - opacity) * self._background(ws, r, noise_mode)
        rgb = self.torgb(feature_image, ws[:, -1]) if self.torgb is not None else feature_image[:, :3]
        image = self.superresolution(rgb, feature_image, ws, self.cfg.rendering("superresolution_noise_mode", "none"))
        return {"image": image, "image_raw": rgb, "image_depth": depth_image, "image_mask": opacity * (1 + 2 * 0.001) - 0.001}

    def _background(self, ws: Tensor, size: int, noise_mode: str) -> Tensor:
        bcg_synthesis = self.bcg_synthesis
        assert bcg_synthesis is not None  # called only for generators with a background network
        count = bcg_synthesis.num_ws
        ws_bcg = ws[:, :count]
        if ws_bcg.shape[1] < count:
            ws_bcg = torch.cat([ws_bcg, ws_bcg[:, -1:].repeat(1, count - ws_bcg.shape[1], 1)], 1)
        image = bcg_synthesis(ws_bcg, noise_mode)
        return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=bool(self.cfg.rendering("sr_antialias", True)))

    def forward(self, ws: Tensor, c: Tensor, **kwargs) -> dict[str, Tensor]:
        return self.synthesis(ws, c, **kwargs)
