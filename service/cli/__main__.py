"""`python -m service.cli ...` is the `lethe` command (used to start child processes)."""

import sys

from service.cli import main

sys.exit(main())
