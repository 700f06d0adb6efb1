"""A stand-in studies folder for the command-line tests (point ANGLESIM_STUDIES here)."""
