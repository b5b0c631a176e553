"""`python -m sentitune ...` is the `sentitune` command."""

import sys

from sentitune.cli import main

sys.exit(main())
