"""`milo serve tts` / `python -m services.tts`: the entry point, nothing else."""

import sys

from services.runtime.server import entry_point
from services.tts.config import TtsSettings
from services.tts.service import make_service

main = entry_point(make_service, TtsSettings, "milo serve tts")

if __name__ == "__main__":
    sys.exit(main())
