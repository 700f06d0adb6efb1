"""Shared figure style and primitives, and figures of any result: FI, error, training history.

Each study draws its own figure (``figure`` of its :class:`anglesim.study.Study`) with the
style and primitives here. :func:`plot_fisher`, :func:`plot_error` and :func:`plot_history`
draw an estimator's result (e.g. :func:`anglesim.fisher.measure_fisher`'s Dataset, one
method's DataArray from :func:`anglesim.fisher.method_result`, :func:`anglesim.fisher.\
propagated_fisher`'s output), a training history from :func:`anglesim.training.train`, or a
study's Dataset, with labelled, unit-bearing axes. Bands are 95% confidence intervals of the
mean over replicates (Student t, :func:`anglesim.stats.interval`), drawn only from
:data:`MIN_BAND_N` valid replicates on (with 2, t = 12.7 and a band spans ±9 SDs), and
:func:`band_footnote` writes under a figure what its bands are; FI is averaged on a log
scale (geometric mean); angles are shown in degrees, orientation wrapping at 180°.

Importing this package does not select a matplotlib backend (a notebook keeps ``inline``); the
command line selects Agg where it writes figures to files.
"""

from ..stats import mean_ci  # noqa: F401 (re-exported: studies import it from here)
from ._axes import angle_axis, fi_vs_angle_axis, mark_angle
from ._intervals import (
    MIN_BAND_N,
    band,
    band_footnote,
    given_bars,
    interval_bars,
    log_band,
    replicate_count,
    successful,
)
from ._results import plot_activation_projection, plot_error, plot_fisher, plot_history
from ._save import save_figure
from ._style import PHASE_COLOURS, STYLE

__all__ = ["MIN_BAND_N", "PHASE_COLOURS", "STYLE", "angle_axis", "band", "band_footnote",
           "fi_vs_angle_axis", "given_bars", "interval_bars", "log_band", "mark_angle",
           "plot_activation_projection", "plot_error", "plot_fisher", "plot_history",
           "replicate_count", "save_figure", "successful"]
