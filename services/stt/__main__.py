"""`milo serve stt` / `python -m services.stt`: wiring only."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.runtime.server import run
from services.stt.config import SttSettings
from services.stt.service import make_service


def main(argv: Sequence[str] | None = None, prog: str = "milo serve stt") -> int:
    return run(make_service, SttSettings, argv if argv is not None else sys.argv[1:], prog)


if __name__ == "__main__":
    sys.exit(main())
