"""Silence diffusers/transformers while models load.

Loading prints per-file progress bars and advisory warnings (e.g. diffusers' "modules that should be kept in
float32: []" when an IP-Adapter casts the UNet) that say nothing a user can act on; the stage log already
says which model loaded from where. Errors still raise and become one line upstream.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Within the block: diffusers and transformers log errors only, transformers shows no progress bars."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(saved[0])
        transformers_logging.set_verbosity(saved[1])
        if bars:
            transformers_logging.enable_progress_bar()
