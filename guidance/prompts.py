"""View-dependent prompts and cached text embeddings."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

VIEW_SUFFIXES = {"front": "front view", "side": "side view", "back": "back view"}


def view_direction(azimuth_deg: float, front_deg: float = 45.0, back_deg: float = 45.0) -> str:
    """``front`` for |azimuth| < front_deg, ``back`` beyond 180 − back_deg, else ``side``."""
    a = abs((float(azimuth_deg) + 180.0) % 360.0 - 180.0)
    if a < front_deg:
        return "front"
    if a > 180.0 - back_deg:
        return "back"
    return "side"


def with_view(prompt: str, direction: str) -> str:
    return f"{prompt}, {VIEW_SUFFIXES[direction]}"


class TextEncoder:
    """CLIP text embeddings (n, 77, D) of prompts, each encoded once and then cached."""

    def __init__(self, tokenizer: Any, text_encoder: Any) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self._cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def _encode_one(self, prompt: str) -> Tensor:
        ids = self.tokenizer([prompt], padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0][0]

    def __call__(self, prompts: list[str]) -> Tensor:
        for prompt in prompts:
            if prompt not in self._cache:
                self._cache[prompt] = self._encode_one(prompt)
        return torch.stack([self._cache[p] for p in prompts])
