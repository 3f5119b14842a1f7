"""`milo serve llm` / `python -m services.llm`: the entry point, nothing else."""

import sys

from services.llm.config import LlmSettings
from services.llm.service import make_service
from services.runtime.server import entry_point

main = entry_point(make_service, LlmSettings, "milo serve llm")

if __name__ == "__main__":
    sys.exit(main())
