"""The built-in studies: one module (or small package) per study, each declaring
``STUDY = anglesim.study.Study(...)`` with its replicate function, derived measures, figure and
summary. Run one with ``anglesim run NAME [key=value …]``; ``anglesim list`` names them all
(with any user studies from ``$ANGLESIM_STUDIES``). ``_common`` holds what they share: the
standard stimulus and CNN, and :func:`~anglesim.studies._common.resolve_size`.
"""
