"""The rigged head's expression animations (morph-target weights over time, glTF LINEAR keys)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from representations.mesh.gltf_rig import MorphClip

DEMO_KEYS: tuple[tuple[float, dict[str, float]], ...] = (
    (0.0, {}),
    (0.15, {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0, "cheekSquintLeft": 0.4, "cheekSquintRight": 0.4}),
    (0.3, {}),
    (0.45, {"jawOpen": 0.8, "mouthFunnel": 0.2}),
    (0.6, {}),
    (0.68, {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
    (0.76, {}),
    (0.88, {"browInnerUp": 1.0, "eyeWideLeft": 0.6, "eyeWideRight": 0.6}),
    (1.0, {}),
)
"""`expression_demo`: (fraction of the clip, weights) keys: neutral, smile, jaw open, blink, brows up, neutral."""


def weight_row(names: list[str], weights: Mapping[str, float]) -> np.ndarray:
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"unknown facial actions {sorted(unknown)}")
    return np.array([float(weights.get(name, 0.0)) for name in names])


def expression_clips(names: list[str], photo: Mapping[str, float], seconds: float) -> list[MorphClip]:
    """`photo_expression` and `neutral` (held for a second) and `expression_demo` (`seconds` long)."""
    hold = np.array([0.0, 1.0])
    photo_row = weight_row(names, photo)
    demo = MorphClip("expression_demo", np.array([t * seconds for t, _ in DEMO_KEYS]),
                     np.stack([weight_row(names, w) for _, w in DEMO_KEYS]))
    return [MorphClip("photo_expression", hold, np.stack([photo_row, photo_row])),
            MorphClip("neutral", hold, np.zeros((2, len(names)))), demo]
