"""Official PanoHead state-dict names -> our generator, and loading a checkpoint into it.

Our modules carry the official names, so the mapping is: strip a leading ``G_ema.``; drop the
fixed FIR-filter buffers (``*.resample_filter``: we build the [1, 3, 3, 1] filter in code) and the
camera self-adaptation network ``t_mapping.*`` (it only offsets the pose of generated samples;
inversion renders in the given reference camera, as the official projector does). Every remaining
key must match one of ours in name and shape, and every one of ours must be present. The generator is
first built on the meta device (no memory) and compared with the checkpoint, so hyper-parameters that
describe a network larger than the checkpoint's tensors are refused before anything is allocated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from guidance.panohead.convert import read_weights
from guidance.panohead.errors import CheckpointError
from guidance.panohead.generator import GeneratorConfig, PanoHeadGenerator
from guidance.panohead.unpickle import NetworkWeights

DROPPED_PREFIXES = ("t_mapping.",)
DROPPED_SUFFIXES = (".resample_filter",)
PREFIX = "G_ema."


def our_key(official: str) -> Optional[str]:
    """Our parameter name for an official one, or None when we do not use it."""
    key = official[len(PREFIX):] if official.startswith(PREFIX) else official
    if key.startswith(DROPPED_PREFIXES) or key.endswith(DROPPED_SUFFIXES) or key == "resample_filter":
        return None
    return key


def map_state(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {ours: tensor for name, tensor in official.items() if (ours := our_key(name)) is not None}


def check_fit(generator: PanoHeadGenerator, state: dict[str, torch.Tensor]) -> None:
    """A clear error for any missing/extra/mis-shaped key of a (mapped) state dict."""
    own = generator.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or extra or shapes:
        raise CheckpointError(f"checkpoint does not fit the generator built from its hyper-parameters: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}, shape mismatches {shapes[:5]}")


def load_state(generator: PanoHeadGenerator, official: dict[str, torch.Tensor]) -> None:
    """Copy an official state dict into `generator`; a clear error for any missing/extra/mis-shaped key."""
    state = map_state(official)
    check_fit(generator, state)
    generator.load_state_dict({k: v.float() for k, v in state.items()})


def _build_on_meta(cfg: GeneratorConfig) -> PanoHeadGenerator:
    try:
        with torch.device("meta"):
            return PanoHeadGenerator(cfg)
    except (ValueError, TypeError, ArithmeticError, RuntimeError) as exc:  # raised by the checkpoint's hyper-parameters
        raise CheckpointError(f"the checkpoint's hyper-parameters do not describe a generator this engine builds: {exc}") from None


def generator_from_weights(weights: NetworkWeights) -> PanoHeadGenerator:
    cfg = GeneratorConfig.from_init_kwargs(weights.init_kwargs)
    check_fit(_build_on_meta(cfg), map_state(weights.state))
    generator = PanoHeadGenerator(cfg)
    load_state(generator, weights.state)
    return generator.eval().requires_grad_(False)


def load_generator(path: str | Path) -> PanoHeadGenerator:
    """A ready (eval, frozen) generator from the official ``.pkl`` or our ``.safetensors`` conversion."""
    return generator_from_weights(read_weights(path))
