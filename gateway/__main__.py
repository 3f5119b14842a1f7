"""`python -m gateway` / `milo serve gateway`: the gateway's gRPC server."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gateway.config import GatewaySettings
from gateway.service import GatewayService
from services.runtime.server import run


def main(argv: Sequence[str] | None = None, prog: str = "milo serve gateway") -> int:
    """Serve the gateway until SIGTERM/SIGINT; settings from MILO_GATEWAY_* and `argv`
    (default: sys.argv[1:]). Returns the exit status, 0 after a clean shutdown."""
    return run(GatewayService, GatewaySettings, sys.argv[1:] if argv is None else argv, prog)


if __name__ == "__main__":
    sys.exit(main())
