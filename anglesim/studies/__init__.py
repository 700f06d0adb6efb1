"""The built-in studies: one module (or small package) per study, each declaring
``STUDY = anglesim.study.Study(...)`` with its replicate function, derived measures, figure and
summary; ``anglesim list`` names them, ``anglesim run NAME`` runs one. What they share lives in
``_recipes`` (and the law studies' band caption in ``_laws_common``); no study imports another.
"""
