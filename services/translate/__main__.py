"""Entry point: `milo serve translate [flags]` or `python -m services.translate [flags]`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.runtime.server import run
from services.translate.config import TranslateSettings
from services.translate.service import TranslateService


def make_service(settings: TranslateSettings) -> TranslateService:
    return TranslateService(settings)


def main(argv: Sequence[str] | None = None, prog: str = "milo serve translate") -> int:
    return run(make_service, TranslateSettings, argv if argv is not None else sys.argv[1:], prog)


if __name__ == "__main__":
    sys.exit(main())
