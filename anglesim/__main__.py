"""``python -m anglesim`` runs the command line (see anglesim.cli)."""

import sys

from .cli import main

sys.exit(main())
