"""``python -m anglesim.bench``: the benchmark's command line."""

import sys

from .run import main

sys.exit(main())
