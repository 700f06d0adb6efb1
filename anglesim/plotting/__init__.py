"""Figures: the style and tools of the figure standard, the primitives studies draw with, and
figures of any result (FI, error, training history).

The figure standard (:doc:`/user_guide/figures`) and its tools: :func:`print_figure` makes a
figure at its printed width (``"single"`` 3.5 in or ``"double"`` 7.2 in) with text ≥ 7 pt
(:func:`print_style`); :func:`panel_letters` letters its panels a, b, c … in reading order;
:func:`paired_difference` draws a paired contrast (per-replicate differences, their mean and
95% paired t interval, the zero line); :func:`ratio_points` draws ratios on a log axis as
points with intervals; :func:`caption` says what the intervals are and over how many
replicates; :func:`check_figure` lists what breaks the standard.

The primitives (:func:`band`, :func:`log_band`, :func:`interval_bars`, :func:`given_bars`)
draw means with 95% t intervals over replicates (:func:`anglesim.stats.interval`), none from
fewer than :data:`MIN_BAND_N`; :func:`plot_fisher`, :func:`plot_error` and
:func:`plot_history` draw an estimator's result, a training history or a study's Dataset.
Angles are shown in degrees, orientation wrapping at 180°; FI is averaged on a log scale.

Importing this package does not select a matplotlib backend (a notebook keeps ``inline``); the
command line selects Agg where it writes figures to files.
"""

from ..stats import mean_ci  # noqa: F401 (re-exported: studies import it from here)
from ._axes import angle_axis, fi_vs_angle_axis, mark_angle, radius_axis
from ._check import MAX_PANELS, RULES, Violation, check_figure
from ._contrasts import RatioLocator, paired_difference, ratio_points
from ._intervals import (
    MIN_BAND_N,
    band,
    band_footnote,
    caption,
    given_bars,
    interval_bars,
    log_band,
    replicate_count,
    successful,
)
from ._panels import letter_of, panel_letters, panels
from ._results import plot_activation_projection, plot_error, plot_fisher, plot_history
from ._save import save_figure
from ._style import (
    DOUBLE_COLUMN,
    MIN_TEXT_PT,
    PHASE_COLOURS,
    PRINT_DPI,
    PRINT_STYLE,
    SINGLE_COLUMN,
    STYLE,
    print_figure,
    print_style,
    print_width,
)

__all__ = ["DOUBLE_COLUMN", "MAX_PANELS", "MIN_BAND_N", "MIN_TEXT_PT", "PHASE_COLOURS",
           "PRINT_DPI", "PRINT_STYLE", "RULES", "RatioLocator", "SINGLE_COLUMN", "STYLE",
           "Violation",
           "angle_axis", "band", "band_footnote", "caption", "check_figure",
           "fi_vs_angle_axis", "given_bars", "interval_bars", "letter_of", "log_band",
           "mark_angle", "paired_difference", "panel_letters", "panels",
           "plot_activation_projection", "plot_error", "plot_fisher", "plot_history",
           "print_figure", "print_style", "print_width", "radius_axis", "ratio_points",
           "replicate_count",
           "save_figure", "successful"]
