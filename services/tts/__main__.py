"""`milo serve tts` / `python -m services.tts`: wiring only."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.runtime.server import run
from services.tts.config import TtsSettings
from services.tts.service import make_service


def main(argv: Sequence[str] | None = None, prog: str = "milo serve tts") -> int:
    return run(make_service, TtsSettings, argv if argv is not None else sys.argv[1:], prog)


if __name__ == "__main__":
    sys.exit(main())
