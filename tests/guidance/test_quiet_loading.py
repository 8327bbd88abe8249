"""Model loading keeps diffusers/transformers advisories and progress bars out of a fit's output."""

from __future__ import annotations

import logging

from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from guidance.models.quiet import quiet_loading


def test_quiet_loading_silences_advisories_and_restores_settings() -> None:
    diffusers_logging.set_verbosity_warning()
    loggers = (diffusers_logging.get_logger("diffusers.models.modeling_utils"), transformers_logging.get_logger("transformers.modeling_utils"))
    before = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    assert all(logger.isEnabledFor(logging.WARNING) for logger in loggers)
    with quiet_loading():
        assert not any(logger.isEnabledFor(logging.WARNING) for logger in loggers)
        assert all(logger.isEnabledFor(logging.ERROR) for logger in loggers)
        assert not transformers_logging.is_progress_bar_enabled()
    after = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    assert after == before
    assert all(logger.isEnabledFor(logging.WARNING) for logger in loggers)
