"""``python -m anglesim`` runs the command line (see anglesim.cli)."""

import sys

from .cli import main

if __name__ == "__main__":  # not on import (the documentation's API scan imports every module)
    sys.exit(main())
