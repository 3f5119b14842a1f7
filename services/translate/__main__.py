"""`milo serve translate` / `python -m services.translate`: the entry point, nothing else."""

import sys

from services.runtime.server import entry_point
from services.translate.config import TranslateSettings
from services.translate.service import make_service

main = entry_point(make_service, TranslateSettings, "milo serve translate")

if __name__ == "__main__":
    sys.exit(main())
