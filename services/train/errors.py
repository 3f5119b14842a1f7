"""The one error type of `milo train`: something the user can fix, said in words."""

from __future__ import annotations

INSTALL_HINT = "pip install 'milo[train]'"


class TrainError(RuntimeError):
    """Training cannot start or go on; the message says what is wrong and what to do."""
