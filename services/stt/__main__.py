"""`milo serve stt` / `python -m services.stt`: the entry point, nothing else."""

import sys

from services.runtime.server import entry_point
from services.stt.config import SttSettings
from services.stt.service import make_service

main = entry_point(make_service, SttSettings, "milo serve stt")

if __name__ == "__main__":
    sys.exit(main())
