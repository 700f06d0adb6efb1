"""``python -m anglesim.bench``: the benchmark's command line."""

import sys

from ._run import main

sys.exit(main())
