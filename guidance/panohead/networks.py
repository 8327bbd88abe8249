"""StyleGAN2 mapping and synthesis networks (the PanoHead backbone), official parameter names."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from guidance.panohead.layers import FullyConnectedLayer, SynthesisBlock, normalize_2nd_moment


class MappingNetwork(nn.Module):
    """z (N, z_dim) and camera label c (N, c_dim) -> ws (N, num_ws, w_dim).

    Both inputs are normalised to unit second moment (c after the `embed` layer), concatenated and
    sent through `num_layers` lrelu layers with learning-rate multiplier `lr_multiplier`."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None):
        super().__init__()
        self.z_dim, self.c_dim, self.num_ws, self.num_layers = z_dim, c_dim, num_ws, num_layers
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], "lrelu", lr_multiplier))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x[:, None].repeat(1, self.num_ws, 1)


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image (N, img_channels, R, R) by 'skip' blocks b4 ... bR."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768, channel_max: int = 512,
                 conv_clamp: Optional[float] = 256.0):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"synthesis resolution must be a power of two >= 4, got {img_resolution}")
        self.resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        self.num_ws = 0
        for res in self.resolutions:
            in_channels = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            block = SynthesisBlock(in_channels, channels_at(res, channel_base, channel_max), w_dim, res, img_channels, conv_clamp)
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last block's ToRGB

    def forward(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        x = img = None
        start = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, start:start + block.num_conv + 1], noise_mode)
            start += block.num_conv
        assert img is not None  # there is at least one block
        return img


class Backbone(nn.Module):
    """The StyleGAN2 generator that outputs the tri-grid: `mapping` and `synthesis`."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int, mapping_kwargs: dict,
                 channel_base: int, channel_max: int, conv_clamp: Optional[float]):
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp)
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.synthesis.num_ws, **mapping_kwargs)
