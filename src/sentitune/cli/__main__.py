"""`python -m sentitune.cli VERB ...`, as the `sentitune` script."""

import sys

from sentitune.cli import main

sys.exit(main())
