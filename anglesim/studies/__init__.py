"""anglesim studies: one module per study, run with ``anglesim run NAME`` (see anglesim.cli)."""
