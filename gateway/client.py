"""Deprecated: the client is `milo.client` now (`pip install ./gateway/milo_client`).

`gateway.client` keeps working for one release (0.2), with a DeprecationWarning.
"""

import warnings

from milo.client import Event, MiloClient, Reply

__all__ = ["Event", "MiloClient", "Reply"]

warnings.warn(
    "gateway.client is deprecated and goes away in Milo 0.3: import milo.client instead "
    "(pip install ./gateway/milo_client installs it alone)",
    DeprecationWarning,
    stacklevel=2,
)
