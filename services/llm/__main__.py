"""`milo serve llm` / `python -m services.llm`: wiring only."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.llm.config import LlmSettings
from services.llm.service import LlmService
from services.runtime.server import run


def make_service(settings: LlmSettings) -> LlmService:
    return LlmService(settings)


def main(argv: Sequence[str] | None = None, prog: str = "milo serve llm") -> int:
    return run(make_service, LlmSettings, argv if argv is not None else sys.argv[1:], prog)


if __name__ == "__main__":
    sys.exit(main())
