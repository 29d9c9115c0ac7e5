"""Silence start-up messages of optional packages that read like missing install steps.

transformers says that its image processors "require torchvision (not installed)" when diffusers
imports the pipeline classes; RSEdit never uses an image processor, so torchvision is not needed and
a new user should not chase it. Entry points call :func:`quiet_optional_messages`; nothing is
changed at import, and every other message of those packages still shows.
"""

from __future__ import annotations

import logging

_NOISY = {
    # logger name -> text of the message to drop
    "transformers.utils.import_utils": "requires torchvision (not installed)",
}


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_optional_messages() -> None:
    """Drop the messages in :data:`_NOISY` (once per process; the filters live on those loggers)."""
    for name, text in _NOISY.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.text == text for f in logger.filters):
            logger.addFilter(_DropMessage(text))
