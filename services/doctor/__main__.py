"""`python -m services.doctor`: `milo doctor` without the rest of the CLI."""

import sys

from services.doctor.cli import main

sys.exit(main())
