"""A small LoRA for the UNet's attention projections (no peft dependency).

Each ``to_q``/``to_k``/``to_v``/``to_out[0]`` Linear of every diffusers `Attention` is wrapped as
``y = W x + (α/r)·B A x`` with A (r, in) random, B (out, r) zero, so a fresh LoRA changes nothing.
The low-rank path is computed in float32 and can be switched off (`lora_enabled`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, cast

from torch import Tensor, nn


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(base.in_features, rank, bias=False, device=base.weight.device)
        self.up = nn.Linear(rank, base.out_features, bias=False, device=base.weight.device)
        nn.init.normal_(self.down.weight, std=1.0 / rank)
        nn.init.zeros_(self.up.weight)
        self.scale = (alpha if alpha is not None else rank) / rank
        self.enabled = False

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.enabled:
            y = y + (self.up(self.down(x.float())) * self.scale).to(y.dtype)
        return y


def add_lora(unet: nn.Module, rank: int = 4) -> list[LoRALinear]:
    """Wrap every attention projection of ``unet`` in place; returns the LoRA layers."""
    from diffusers.models.attention_processor import Attention

    layers: list[LoRALinear] = []
    for module in unet.modules():
        if not isinstance(module, Attention):
            continue
        for name in ("to_q", "to_k", "to_v"):
            wrapped = LoRALinear(getattr(module, name), rank)
            setattr(module, name, wrapped)
            layers.append(wrapped)
        wrapped = LoRALinear(cast(nn.Linear, module.to_out[0]), rank)  # diffusers' Attention: to_out = [Linear, Dropout]
        module.to_out[0] = wrapped
        layers.append(wrapped)
    return layers


def lora_parameters(layers: list[LoRALinear]) -> list[Tensor]:
    return [p for layer in layers for p in (layer.down.weight, layer.up.weight)]


@contextmanager
def lora_enabled(layers: list[LoRALinear], on: bool = True) -> Iterator[None]:
    previous = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = on
    try:
        yield
    finally:
        for layer, was in zip(layers, previous):
            layer.enabled = was
