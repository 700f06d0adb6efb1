"""Declared studies: declare one, run it, ask its cache, redraw its figures.

A study module defines ``STUDY = Study(...)``: its question, grid, sizes and a replicate
function ``replicate(ctx) -> xr.Dataset`` that gets a :class:`ReplicateContext` (condition,
named seed streams, resolved configuration, device, angle grid). :func:`run` plans once, runs
the replicates, saves the Dataset and draws its figure (a :class:`RunResult`); :func:`plan`,
:func:`status` and :func:`dry_run` run nothing; :func:`available` and :func:`load` find
studies (built-in, ``$ANGLESIM_STUDIES`` folders, a file by path); :func:`parse_overrides`
reads ``key=value`` overrides; :func:`redraw` redraws saved Datasets' figures and
:func:`claims_tables` prints (or writes as RST) the claims stored with them.
:data:`PLAN_PARAMETERS` and :data:`RUN_PARAMETERS` declare what :func:`plan` and :func:`run`
accept (the command line checks its options with them).
"""

from ._context import ReplicateContext
from ._declaration import Study
from ._finder import available, code_version, load
from ._overrides import parse_overrides, parse_value
from ._plan import PLAN_PARAMETERS, Plan, plan
from ._runner import (
    RUN_PARAMETERS,
    RunResult,
    claims_tables,
    draw_figure,
    dry_run,
    redraw,
    run,
    status,
)

__all__ = ["PLAN_PARAMETERS", "RUN_PARAMETERS", "Plan", "ReplicateContext", "RunResult",
           "Study", "available", "claims_tables", "code_version", "draw_figure", "dry_run", "load",
           "parse_overrides", "parse_value", "plan", "redraw", "run", "status"]
