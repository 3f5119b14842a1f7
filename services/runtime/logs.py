"""Logging, configured once at the entry point."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr at `level` ("DEBUG", "INFO", ...) as "time level logger: message"; replaces
    any earlier configuration."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
