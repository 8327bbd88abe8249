"""StyleGAN2 building blocks in plain torch, parameter names as in the official networks (so the
official state dict loads by name): equalised-lr fully connected layers, modulated convolutions
with demodulation, noise inputs, ToRGB, and the 'skip' synthesis block.

Resampling follows the official operators: a [1, 3, 3, 1] low-pass FIR filter (outer product,
normalised, gain 4 when upsampling by 2); an upsampling convolution is "zero-insert, pad (3, 2),
filter, 3x3 true convolution" (the official kernel is flipped for up=2 layers), skip images are
"zero-insert, pad (2, 1), filter".
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: Tensor, gain: float = 1.0, clamp: Optional[float] = None) -> Tensor:
    """StyleGAN's 'lrelu' activation: leaky ReLU (0.2) times sqrt(2)·gain, optionally clamped."""
    x = F.leaky_relu(x, 0.2) * (LRELU_GAIN * gain)
    return x.clamp(-clamp, clamp) if clamp is not None else x


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """x (N, C) scaled to unit mean square per row."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def lowpass_filter() -> Tensor:
    """(4, 4) separable [1, 3, 3, 1] filter normalised to sum 1."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def upsample_fir(x: Tensor, f: Tensor, pad: tuple[int, int]) -> Tensor:
    """Zero-insertion upsampling by 2, padding (before, after) per axis, then the FIR filter × 4.

    x: (N, C, H, W) -> (N, C, 2H + pad[0] + pad[1] - 3, same for W)."""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, h * 2, w * 2)
    up[:, :, ::2, ::2] = x
    up = F.pad(up, (pad[0], pad[1], pad[0], pad[1]))
    kernel = (f * 4.0).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(up, kernel, groups=c)


class FullyConnectedLayer(nn.Module):
    """Equalised learning-rate linear layer (weight ~ N(0, 1)/lr_multiplier, runtime gains)."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        """x (N, in) -> (N, out)."""
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation == "lrelu" else x


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, up: bool = False) -> Tensor:
    """Per-sample modulated convolution (grouped), 'same' output size, or 2× for ``up``.

    x (N, I, H, W), weight (O, I, k, k), styles (N, I) -> (N, O, H', W')."""
    n, in_channels, h, w = x.shape
    out_channels, _, k, _ = weight.shape
    wts = weight[None] * styles[:, None, :, None, None]
    if demodulate:
        wts = wts * (wts.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    wts = wts.reshape(n * out_channels, in_channels, k, k)
    x = x.reshape(1, n * in_channels, h, w)
    if up:
        x = upsample_fir(x, lowpass_filter().to(x.device), (3, 2))
        out = F.conv2d(x, wts.flip([2, 3]), groups=n)
    else:
        out = F.conv2d(x, wts, padding=k // 2, groups=n)
    return out.reshape(n, out_channels, *out.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2× upsampling), noise input, bias, lrelu, clamp."""

    noise_const: Tensor  # buffer (with use_noise)

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv_clamp: Optional[float] = None, use_noise: bool = True, kernel_size: int = 3):
        super().__init__()
        self.up, self.resolution, self.conv_clamp, self.use_noise = up, resolution, conv_clamp, use_noise
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const", gain: float = 1.0) -> Tensor:
        """x (N, I, R/up, R/up), w (N, w_dim) -> (N, O, R, R). noise_mode: const | random | none."""
        x = modulated_conv2d(x, self.weight, self.affine(w), up=self.up == 2)
        if self.use_noise and noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return lrelu(x + self.bias[None, :, None, None], gain, clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation: features (N, I, H, W) -> image (N, O, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: Optional[float] = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        x = x + self.bias[None, :, None, None]
        return x.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' architecture: [const] or conv0 (2× up), conv1, ToRGB added to
    the upsampled image of the previous block.

    in_channels 0 = the first (4×4, learned constant) block; ``up=False`` keeps the resolution
    (the super-resolution 'NoUp' blocks)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: Optional[float] = 256.0, up: bool = True, use_noise: bool = True):
        super().__init__()
        self.in_channels, self.up = in_channels, up
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2 if up else 1, conv_clamp=conv_clamp, use_noise=use_noise)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, use_noise=use_noise)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x: Optional[Tensor], img: Optional[Tensor], ws: Tensor, noise_mode: str = "const") -> tuple[Tensor, Tensor]:
        """ws (N, num_conv + 1, w_dim); returns features (N, C, R, R) and image (N, img_channels, R, R)."""
        if self.in_channels == 0:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        if img is not None and self.up:
            img = upsample_fir(img, lowpass_filter().to(img.device), (2, 1))
        y = self.torgb(x, ws[:, self.num_conv])
        return x, (y if img is None else img + y)
