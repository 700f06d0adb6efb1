"""Figure helpers: replicate masking and confidence intervals."""

import numpy as np
import pytest
import xarray as xr

from anglesim.plotting import mean_ci, successful


def test_successful_masks_only_failed_replicates_of_per_replicate_floats():
    ds = xr.Dataset(
        {
            "fisher": (("kappa", "replicate", "angle"), np.ones((2, 3, 4))),
            "per_kappa": ("kappa", np.array([1.0, 2.0])),
            "count": (("kappa", "replicate"), np.ones((2, 3), dtype=int)),
            "failed": (("kappa", "replicate"), np.array([[0, 1, 0], [0, 0, 0]], dtype=bool)),
        }
    )
    out = successful(ds)
    assert np.isnan(out["fisher"].isel(kappa=0, replicate=1)).all()
    assert int(np.isnan(out["fisher"]).sum()) == 4
    assert out["per_kappa"].dims == ("kappa",)
    assert out["count"].dtype == ds["count"].dtype


def test_mean_ci_matches_the_t_interval():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    da = xr.DataArray(values, dims="replicate")
    mean, half = mean_ci(da)
    from scipy import stats

    expected = stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2
    assert float(mean) == pytest.approx(values.mean())
    assert float(half) == pytest.approx(expected)
    _, half_one = mean_ci(da.isel(replicate=[0]))
    assert float(half_one) == 0.0


# figures of any result, drawn from real estimator and training outputs -------------------------

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # this test module writes no window; the package itself never switches

import torch  # noqa: E402

from anglesim.distributions import Uniform, VonMises  # noqa: E402
from anglesim.fisher import (  # noqa: E402
    measure_fisher,
    method_result,
    propagated_fisher,  # noqa: E402
)
from anglesim.models import reference_mlp  # noqa: E402
from anglesim.plotting import plot_error, plot_fisher, plot_history  # noqa: E402
from anglesim.stimuli import GratingSpec  # noqa: E402
from anglesim.training import Phase, evaluate_error, train  # noqa: E402

SPEC8 = GratingSpec(size=8, frequency=2.0, phase=0.0, contrast=1.0, noise_std=1.0)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    net = reference_mlp(image_size=8, hidden=(16, 8))
    phases = [Phase(name, prior, SPEC8, loss="vector_mse", lr=1e-2, epochs=2,
                    steps_per_epoch=3, batch_size=16, eval_angles=4, eval_repeats=1)
              for name, prior in (("pretrain", Uniform()), ("finetune", VonMises(1.0, 4.0)))]
    history = train(net, phases, 0)
    return net, history


def _curves(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


@pytest.mark.parametrize("n_angles", [3, 24])
def test_plot_fisher_of_measure_fisher_draws_every_layer_and_method(trained, n_angles):
    net, _ = trained
    ds = measure_fisher(net, SPEC8, Uniform(), methods=["propagated", "output_gaussian"],
                        angles=n_angles)
    fig = plot_fisher(ds)
    ax = fig.axes[0]
    # propagated measures every layer; the output-noise method adds its own output curve
    n_series = int(np.isfinite(ds["fisher"]).any("angle").sum())
    assert len(_curves(ax)) == n_series
    assert ax.get_yscale() == "log"
    assert f"({ds['fisher'].attrs['units']})" in ax.get_ylabel()  # rad^-2
    assert "Fisher information" in ax.get_ylabel() and "(deg)" in ax.get_xlabel()
    x = _curves(ax)[0].get_xdata()
    np.testing.assert_allclose(x, np.degrees(ds["angle"].values))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("propagated" in t and "output" in t for t in labels)


def test_plot_fisher_of_one_method_and_of_a_bare_dataarray(trained):
    net, _ = trained
    da = method_result(measure_fisher(net, SPEC8, None, angles=6), "propagated")
    ax = plot_fisher(da.sel(layer="output"), log=False).axes[0]
    assert len(_curves(ax)) == 1 and ax.get_yscale() == "linear"
    np.testing.assert_allclose(_curves(ax)[0].get_ydata(), da.sel(layer="output").values)
    fi = propagated_fisher(net, SPEC8, torch.linspace(0, 3, 5), layers=["input", "output"])
    assert len(_curves(plot_fisher(fi).axes[0])) == 2


def test_plot_fisher_over_replicates_draws_the_geometric_mean_and_a_band():
    rng = np.random.default_rng(1)
    values = np.exp(rng.normal(size=(5, 2, 7)))  # replicate, layer, angle
    da = xr.DataArray(values, dims=("replicate", "layer", "angle"),
                      coords={"layer": ["fc", "output"], "angle": np.arange(7) * np.pi / 7})
    ax = plot_fisher(da).axes[0]
    lines = _curves(ax)
    assert len(lines) == 2 and len(ax.collections) == 2  # one band per layer
    np.testing.assert_allclose(lines[0].get_ydata(),
                               np.exp(np.log(values[:, 0]).mean(0)), rtol=1e-12)


def test_plot_error_of_evaluate_error_in_degrees(trained):
    net, _ = trained
    err = evaluate_error(net, SPEC8, 6, repeats=2, generator=torch.Generator().manual_seed(3))
    ax = plot_error(err).axes[0]
    (curve,) = _curves(ax)
    np.testing.assert_allclose(curve.get_ydata(), np.degrees(err.values))
    assert ax.get_ylabel() == "mean |θ̂ − θ| (deg)"
    with pytest.raises(ValueError, match="must be in radians"):
        plot_error(err.assign_attrs(units="deg"))


def test_plot_history_marks_the_phase_boundary(trained):
    _, history = trained
    fig = plot_history(history)
    ax_loss, ax_err = fig.axes
    assert ax_loss.get_xlabel() == "epoch" and "(deg)" in ax_err.get_ylabel()
    boundaries = [line for line in ax_err.get_lines() if len(line.get_xdata()) == 2
                  and line.get_xdata()[0] == line.get_xdata()[1]]
    assert [b.get_xdata()[0] for b in boundaries] == [1.5]  # 2 epochs, then 2 more
    train_line = next(line for line in ax_loss.get_lines() if line.get_label() == "train")
    np.testing.assert_allclose(train_line.get_ydata(), history["train_loss"].values)


def test_plot_helpers_reject_what_they_cannot_draw():
    with pytest.raises(ValueError, match="must hold one of the variables"):
        plot_fisher(xr.Dataset({"x": ("angle", [1.0])}))
    with pytest.raises(ValueError, match="must have a 'angle' dimension"):
        plot_fisher(xr.DataArray([1.0, 2.0], dims="theta"))
    with pytest.raises(ValueError, match="history must be a Dataset with train_loss"):
        plot_history(xr.Dataset({"x": ("t", [1.0])}))


def test_importing_plotting_does_not_switch_the_backend():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('pdf'); import anglesim.plotting, "
            "anglesim.study; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pdf"


# the few-replicate rule (issue 15): bands and bars through anglesim.stats.interval ------------

from matplotlib.collections import PolyCollection  # noqa: E402
from scipy import stats as scipy_stats  # noqa: E402

from anglesim.plotting import (  # noqa: E402
    band,
    band_footnote,
    given_bars,
    interval_bars,
    log_band,
)


def _band_vertices(ax) -> int:
    return sum(len(path.vertices) for coll in ax.collections
               if isinstance(coll, PolyCollection) for path in coll.get_paths())


def _bar_halves(ax) -> np.ndarray:
    """The drawn error bars' lengths (one LineCollection of segments per errorbar call)."""
    segments = [seg for coll in ax.collections if not isinstance(coll, PolyCollection)
                for seg in coll.get_segments()]
    return np.array([abs(s[1][1] - s[0][1]) for s in segments])


@pytest.mark.parametrize("n_rep", [2, 3, 12])
def test_band_follows_the_few_replicate_rule_and_the_footnote_says_so(n_rep):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(n_rep)
    x = np.arange(9) * 20.0
    da = xr.DataArray(rng.normal(30.0, 8.0, (n_rep, 9)), dims=("replicate", "angle"))
    fig, ax = plt.subplots()
    out = band(ax, x, da, "C0", "error", bounds=(0, 90))
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), da.mean("replicate"))
    text = band_footnote(fig)
    if n_rep < 3:
        assert _band_vertices(ax) == 0 and out["low"].isnull().all()
        assert text == "no band: n < 3 replicates (n = 2)"
    else:
        t = scipy_stats.t.ppf(0.975, n_rep - 1)
        half = t * da.std("replicate", ddof=1) / np.sqrt(n_rep)
        np.testing.assert_allclose(out["high"], np.minimum(da.mean("replicate") + half, 90))
        assert _band_vertices(ax) > 2 * 9
        assert text.startswith(f"bands: 95% t intervals over {n_rep} replicates")
    assert fig.texts[-1].get_text() == text
    assert band_footnote(fig) == text and len(fig.texts) == 1  # drawn once
    plt.close(fig)


def test_log_band_is_the_geometric_mean_and_drops_a_band_only_where_replicates_failed():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(4)
    fi = np.exp(rng.normal(5.0, 2.0, (4, 6)))
    fi[1:, 0] = np.nan  # one valid replicate at the first angle, 4 elsewhere
    da = xr.DataArray(fi, dims=("replicate", "angle"))
    fig, ax = plt.subplots()
    out = log_band(ax, np.arange(6.0), da, "C1", "FI")
    assert np.isnan(out["low"][0]) and out["low"][1:].notnull().all()
    np.testing.assert_allclose(out["mean"][1:], np.exp(np.log(fi[:, 1:]).mean(0)))
    assert (out["low"][1:] > 0).all()
    assert band_footnote(fig) == ("bands: 95% t intervals over 1–4 replicates; no band where "
                                  "n < 3; FI on the log scale (geometric mean)")
    plt.close(fig)


@pytest.mark.parametrize("n_rep", [2, 5])
def test_interval_bars_and_given_bars_draw_no_bar_below_three_replicates(n_rep):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(20 + n_rep)
    da = xr.DataArray(rng.normal(1.0, 1.0, (3, n_rep)), dims=("layer", "replicate"))
    fig, ax = plt.subplots()
    interval_bars(ax, np.arange(3), da, "C2", "ratio")
    halves = _bar_halves(ax)
    expected = (scipy_stats.t.ppf(0.975, n_rep - 1) * da.std("replicate", ddof=1)
                / np.sqrt(n_rep)).values
    np.testing.assert_allclose(halves, 2 * expected if n_rep >= 3 else np.zeros(3),
                               atol=1e-12)
    fig2, ax2 = plt.subplots()
    given_bars(ax2, np.arange(3), [0.0, 1.0, 2.0], [0.5, 0.5, 0.5], [n_rep, n_rep, 3], "C3",
               "welch")
    np.testing.assert_allclose(_bar_halves(ax2), [1.0, 1.0, 1.0] if n_rep >= 3
                               else [0.0, 0.0, 1.0])
    assert ("no band where n < 3" in band_footnote(fig2)) == (n_rep < 3)
    plt.close(fig)
    plt.close(fig2)


@pytest.mark.parametrize("n_rep", [2, 4])
def test_a_study_figure_with_two_replicates_draws_no_band_and_says_so(n_rep):
    """The quickstart's figure from a Dataset of its shape (κ, phase, layer, angle,
    replicate): bands from 3 replicates on, none with 2, and its caption says which."""
    from anglesim.studies.quickstart import figure_caption, plot_quickstart

    rng = np.random.default_rng(n_rep)
    angle = np.arange(8) * np.pi / 8
    layers = ["input", "conv1", "fc", "output"]
    dims = ("kappa", "replicate", "phase", "layer", "angle")
    ds = xr.Dataset(
        {"fisher": (dims, np.exp(rng.normal(4.0, 1.0, (1, n_rep, 2, 4, 8)))),
         "abs_error": (dims[:3] + ("angle",), rng.uniform(0.0, 0.3, (1, n_rep, 2, 8))),
         "prior_density": (dims[:3] + ("angle",),
                           np.broadcast_to(VonMises(np.pi / 2, 4.0).pdf(angle),
                                           (1, n_rep, 2, 8)).copy()),
         "failed": (("kappa", "replicate"), np.zeros((1, n_rep), bool))},
        coords={"kappa": [4.0], "replicate": np.arange(n_rep), "phase": ["pretrain", "finetune"],
                "layer": layers, "angle": angle},
    )
    fig = plot_quickstart(ds)
    vertices = sum(_band_vertices(ax) for ax in fig.axes[1:3])
    said = figure_caption(ds)  # the caption says what the figure drew
    if n_rep == 2:
        assert vertices == 0 and said.endswith("no interval where n < 3.")
    else:
        assert vertices > 0 and "over n = 4 replicates" in said and "n < 3" not in said


# the figure standard: print figures, letters, paired differences, ratios, captions, the checker --

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from anglesim.plotting import (  # noqa: E402
    MAX_PANELS,
    PRINT_DPI,
    RULES,
    Violation,
    caption,
    check_figure,
    letter_of,
    paired_difference,
    panel_letters,
    panels,
    print_figure,
    print_style,
    radius_axis,
    ratio_points,
    save_figure,
)


def _found(fig, width="double") -> set[tuple[str, str]]:
    violations = check_figure(fig, width)
    assert all(isinstance(v, Violation) and v.rule in RULES for v in violations)
    plt.close(fig)
    return {(v.rule, v.where) for v in violations}


def _labelled(ax, x="orientation θ (deg)", y="error (deg)"):
    ax.set_xlabel(x)
    ax.set_ylabel(y)


def _good_figure(width="double", rows=1, cols=3):
    """A figure that meets every checked rule: print size, letters, labels, legend beside."""
    rng = np.random.default_rng(0)
    with print_style():
        fig, axes = print_figure(rows, cols, width=width, squeeze=False)
        for ax in axes.ravel():
            ax.plot(np.arange(10.0), rng.normal(size=10), label="curve")
            _labelled(ax)
        axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        panel_letters(fig)
    return fig


@pytest.mark.parametrize("width,rows,cols", [("double", 1, 3), ("double", 2, 4),
                                             ("single", 1, 2), (5.0, 2, 1)])
def test_a_figure_made_to_the_standard_has_no_violation(width, rows, cols):
    assert _found(_good_figure(width, rows, cols), width) == set()


def test_the_standard_tools_together_meet_the_standard():
    """Paired differences, ratios on a log axis, a polar panel with its radius labelled, a
    colorbar with its label, a twin axis: all drawn with the tools, no violation."""
    rng = np.random.default_rng(1)
    reps = xr.DataArray(rng.lognormal(0.0, 0.3, (3, 6)), dims=("strategy", "replicate"),
                        coords={"strategy": ["full", "head", "lora"]})
    with print_style():
        fig, axes = print_figure(mosaic="abc;dde", width="double", height=4.0,
                                 per_subplot_kw={"c": {"projection": "polar"}})
        paired_difference(axes["a"], reps, reps * rng.lognormal(0.2, 0.1, reps.shape),
                          label="after − before")
        axes["a"].set(xlabel="strategy", ylabel="Δ error (deg)")
        ratio_points(axes["b"], reps, label="ratio")
        axes["b"].set(xlabel="strategy", ylabel="error ratio to full")
        theta = np.linspace(0, np.pi, 19)
        axes["c"].plot(theta, 1 + np.cos(2 * theta) ** 2)
        radius_axis(axes["c"], "linear FI (rad⁻²)")
        image = axes["d"].imshow(rng.normal(size=(4, 12)), aspect="auto")
        fig.colorbar(image, ax=axes["d"], label="log₂ FI ratio")
        axes["d"].set(xlabel="angle index", ylabel="layer index")
        axes["e"].plot([0, 1], [0, 1], color="C0")
        axes["e"].set(xlabel="epoch", ylabel="loss (nats)")
        twin = axes["e"].twinx()
        twin.plot([0, 1], [1, 0], color="C1")
        twin.set_ylabel("error (deg)")
        panel_letters(fig)
    assert [letter_of(ax.get_title(loc="left")) for ax in panels(fig)] == list("abcde")
    assert _found(fig) == set()


def test_text_size_is_measured_at_the_printed_width():
    """A print figure is measured at its own width: 7 pt passes at 7.2 in and fails at 3.5 in
    (×0.49); one 6-pt tick label fails alone."""
    assert _found(_good_figure("double", 1, 2), "single") == {
        ("text-size", "panel 1 (a)"), ("text-size", "panel 2 (b)")}
    fig = _good_figure("double", 1, 2)
    fig.axes[1].tick_params(axis="y", labelsize=6)
    assert _found(fig) == {("text-size", "panel 2 (b)")}


@pytest.mark.parametrize("size,too_small", [(4.8, True), (4.9, False)])
def test_text_size_scale_is_printed_width_over_figure_width(size, too_small):
    """A 5-in print figure printed at 7.2 in grows ×1.44: 4.9 pt → 7.06 pt, 4.8 pt → 6.9 pt."""
    fig, ax = print_figure(width=5.0)
    ax.plot([0, 1], [0, 1])
    _labelled(ax)
    ax.tick_params(labelsize=size)
    ax.xaxis.label.set_size(size)
    assert _found(fig, 7.2) == ({("text-size", "panel 1")} if too_small else set())


def test_a_figure_saved_cropped_is_measured_at_its_cropped_width():
    """A 12-in figure whose content spans ~5 in is saved (and printed) at that width: 6-pt
    text stays ≥ 7 pt at 7.2 in, though it would not at 12 in."""
    fig = plt.figure(figsize=(12, 3))
    ax = fig.add_axes((0.35, 0.25, 0.3, 0.6))
    ax.plot([0, 1], [0, 1])
    _labelled(ax)
    for text in [ax.xaxis.label, ax.yaxis.label]:
        text.set_size(6)
    ax.tick_params(labelsize=6)
    renderer = fig.canvas.get_renderer()
    saved = fig.get_tightbbox(renderer).width + 2 * plt.rcParams["savefig.pad_inches"]
    assert saved < 6.0 and 6 * 7.2 / saved >= 7
    assert _found(fig, 7.2) == set()


@pytest.mark.parametrize("orientation", ["vertical", "horizontal"])
def test_bars_on_a_log_axis_are_a_violation_and_ratio_points_are_not(orientation):
    values = [1.0, 10.0, 100.0]
    fig, ax = print_figure(width="single")
    if orientation == "vertical":
        ax.bar([0, 1, 2], values)
        ax.set_yscale("log")
    else:
        ax.barh([0, 1, 2], values)
        ax.set_xscale("log")
    _labelled(ax, "ratio" if orientation == "horizontal" else "condition index",
              "ratio" if orientation == "vertical" else "condition index")
    assert _found(fig, "single") == {("bars-on-log-axis", "panel 1")}
    fig, ax = print_figure(width="single")
    ax.bar([0, 1, 2], values)  # bars on a linear axis are fine
    _labelled(ax, "condition index", "count")
    assert _found(fig, "single") == set()
    fig, ax = print_figure(width="single")
    ratio_points(ax, xr.DataArray(np.outer(values, [0.8, 1.0, 1.25]),
                                  dims=("condition", "replicate"),
                                  coords={"condition": ["x", "y", "z"]}))
    _labelled(ax, "condition", "ratio")
    assert _found(fig, "single") == set()


def _legend_figure(draw, loc="center", **legend):
    fig, ax = print_figure(width="single")
    draw(ax)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    _labelled(ax, "x (m)", "y (m)")
    ax.legend(handles=[plt.Line2D([], [], color="k", label="a label")], loc=loc, **legend)
    return fig


@pytest.mark.parametrize("name,draw", [
    ("points", lambda ax: ax.plot([5.0], [5.0], "o")),
    # a segment crossing the legend with both ends outside it
    ("line", lambda ax: ax.plot([0.0, 10.0], [5.0, 5.0], "-")),
    ("band", lambda ax: ax.fill_between([0, 10], [4, 4], [6, 6], alpha=0.3)),
    ("bars", lambda ax: ax.bar([5.0], [8.0])),
    ("error bars", lambda ax: ax.errorbar([5.0], [1.0], yerr=[[0.0], [8.0]], fmt="none")),
    ("scatter", lambda ax: ax.scatter([5.0], [5.0])),
])
def test_a_legend_over_data_is_a_violation(name, draw):
    assert _found(_legend_figure(draw), "single") == {("legend-on-data", "panel 1")}, name


@pytest.mark.parametrize("name,draw,legend", [
    ("data elsewhere", lambda ax: ax.plot([1.0, 2.0], [1.0, 1.5], "o-"), {}),
    ("a reference line (axes coordinates)", lambda ax: ax.axhline(5.0), {}),
    ("beside the axes", lambda ax: ax.plot([0.0, 10.0], [5.0, 5.0]),
     {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)}),
])
def test_a_legend_off_the_data_is_not(name, draw, legend):
    assert _found(_legend_figure(draw, **legend), "single") == set(), name


def test_a_figure_legend_over_data_is_a_violation_of_the_figure():
    fig, ax = print_figure(width="single")
    ax.fill_between([0.0, 1.0], [0.2, 0.2], [0.8, 0.8], label="band")
    ax.set_ylim(0, 1)
    _labelled(ax)
    fig.legend(loc="center")
    assert _found(fig, "single") == {("legend-on-data", "figure")}


@pytest.mark.parametrize("rows,cols", [(2, 4), (3, 3)])
def test_more_than_eight_panels_is_a_violation(rows, cols):
    fig = _good_figure("double", rows, cols)
    expected = {("too-many-panels", "figure")} if rows * cols > MAX_PANELS else set()
    assert _found(fig) == expected


def test_missing_duplicate_and_disordered_letters():
    fig = _good_figure("double", 1, 3)
    for ax in fig.axes:
        ax.set_title("", loc="left")
    assert _found(fig) == {("missing-panel-letter", "figure")}  # none at all: one line
    fig = _good_figure("double", 1, 3)
    fig.axes[1].set_title("", loc="left")
    assert _found(fig) == {("missing-panel-letter", "panel 2")}
    fig = _good_figure("double", 2, 2)  # lettered per row: a b / a b, as multitask was
    for ax, title in zip(fig.axes, ["a  x", "b  y", "a  x", "b  y"], strict=True):
        ax.set_title(title, loc="left")
    assert _found(fig) == {("duplicate-panel-letter", "figure")}
    assert {v.detail for v in check_figure(fig)} == {"letter 'a' on panels 1, 3",
                                                    "letter 'b' on panels 2, 4"}
    plt.close(fig)
    fig = _good_figure("double", 1, 2)
    fig.axes[0].set_title("(b)", loc="left")
    fig.axes[1].set_title("(a)", loc="left")
    assert _found(fig) == {("panel-letter-order", "figure")}


def test_a_letter_as_figure_text_or_axes_text_counts_and_one_panel_needs_none():
    fig = _good_figure("double", 1, 2)
    for ax in fig.axes:
        ax.set_title("", loc="left")
    fig.axes[0].text(-0.2, 1.05, "a", transform=fig.axes[0].transAxes, fontweight="bold")
    box = fig.axes[1].get_position()
    fig.text(box.x0 - 0.02, box.y1 + 0.02, "b", fontweight="bold")
    assert _found(fig) == set()
    fig, ax = print_figure(width="single")
    ax.plot([0, 1])
    _labelled(ax)
    assert _found(fig, "single") == set()


def test_axes_with_tick_labels_need_labels():
    fig = _good_figure("double", 1, 2)
    fig.axes[1].set_ylabel("")
    assert _found(fig) == {("unlabelled-axis", "panel 2 (b)")}
    # shared axes with inner tick labels hidden need a label only where ticks are labelled
    fig, axes = print_figure(2, 2, sharex=True, sharey=True)
    for ax in axes.ravel():
        ax.plot([0, 1], [0, 1])
        ax.label_outer()
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (nats)")
    panel_letters(fig)
    assert _found(fig) == set()
    fig, ax = print_figure(width="single", subplot_kw={"projection": "polar"})
    ax.plot(np.linspace(0, np.pi, 9), np.arange(9.0))
    assert _found(fig, "single") == {("unlabelled-axis", "panel 1")}  # the radius
    fig, ax = print_figure(width="single")
    image = ax.imshow(np.eye(3))
    fig.colorbar(image, ax=ax)
    _labelled(ax, "column", "row")
    assert _found(fig, "single") == {("unlabelled-axis", "colorbar 1")}


def test_colliding_texts_are_a_violation_even_when_turned():
    fig = _good_figure("double", 1, 2)
    fig.axes[0].text(0.5, 0.5, "one label", transform=fig.axes[0].transAxes)
    fig.axes[0].text(0.52, 0.51, "another", transform=fig.axes[0].transAxes)
    assert _found(fig) == {("text-overlap", "panel 1 (a)")}
    # tick labels turned 45°: their upright boxes overlap, the turned ones do not
    fig, ax = print_figure(width="single")
    ax.plot(np.arange(8.0), np.arange(8.0))
    ax.set_xticks(np.arange(8.0), [f"strategy_{i}" for i in range(8)], rotation=45,
                  ha="right", rotation_mode="anchor")
    _labelled(ax, "strategy", "error (deg)")
    assert _found(fig, "single") == set()
    fig, ax = print_figure(width="single")
    ax.plot(np.arange(8.0), np.arange(8.0))
    ax.set_xticks(np.arange(8.0), [f"strategy_{i}" for i in range(8)])  # upright: collide
    _labelled(ax, "strategy", "error (deg)")
    assert _found(fig, "single") == {("text-overlap", "panel 1")}


def test_radius_axis_labels_a_polar_panel_clear_of_its_angles():
    def polar(label):
        fig, ax = print_figure(width="single", subplot_kw={"projection": "polar"})
        ax.plot(np.linspace(0, 2 * np.pi, 37), 1000 + 5000 * np.cos(np.linspace(0, 4, 37)) ** 2)
        label(ax)
        return fig

    # the published reference_replication panels: default radius ticks, a plain y label
    assert _found(polar(lambda ax: ax.set_ylabel("linear FI (rad⁻²)")), "single") == {
        ("text-overlap", "panel 1")}
    assert _found(polar(lambda ax: radius_axis(ax, "linear FI (rad⁻²)")), "single") == set()


def test_text_cut_off_by_a_print_figure_edge():
    """Constrained layout makes room for an axes' own text; a label that leaves the layout
    (here a figure text at the right edge) is cut off when the figure is saved at its size."""
    fig = _good_figure("double", 1, 2)
    fig.axes[1].text(1.1, 0.5, "outside the axes", transform=fig.axes[1].transAxes)
    assert _found(fig) == set()
    fig = _good_figure("double", 1, 2)
    fig.text(0.97, 0.5, "past the edge")
    assert _found(fig) == {("text-outside-figure", "figure")}
    fig = _good_figure("double", 1, 2)
    note = fig.axes[1].text(1.1, 0.5, "outside the axes", transform=fig.axes[1].transAxes)
    note.set_in_layout(False)
    assert _found(fig) == {("text-outside-figure", "panel 2 (b)")}


def test_check_figure_rejects_a_bad_width():
    fig = _good_figure()
    with pytest.raises(ValueError, match="width must be one of 'single', 'double', got 'a4'"):
        check_figure(fig, "a4")
    with pytest.raises(ValueError, match="width must be .*, got 9"):
        check_figure(fig, 9)
    plt.close(fig)


def test_print_figure_size_style_and_saved_pixels(tmp_path):
    fig, axes = print_figure(2, 3, width="double", aspect=0.5)
    assert tuple(fig.get_size_inches()) == pytest.approx((7.2, 2 * 7.2 / 3 * 0.5))
    assert axes.shape == (2, 3)
    fig, axes = print_figure(mosaic="ab;cc", width="single")
    assert set(axes) == {"a", "b", "c"} and fig.get_size_inches()[0] == 3.5
    assert fig.get_size_inches()[1] == pytest.approx(2 * 3.5 / 2 * 0.75)
    png, _ = save_figure(fig, tmp_path / "small")
    from PIL import Image

    assert Image.open(png).size[0] == round(3.5 * PRINT_DPI)  # exactly its printed width
    with pytest.raises(ValueError, match="rows must be an integer >= 1, got 0"):
        print_figure(0, 2)
    with pytest.raises(ValueError, match="height must be .*, got 12"):
        print_figure(height=12)


def test_panel_letters_follow_reading_order_and_reletter_once():
    fig, axes = print_figure(mosaic="ab;cb;dd")
    axes["a"].set_title("a  first", loc="left", fontsize=9)
    axes["c"].set_title("a  repeated", loc="left")
    assert panel_letters(fig) == ["a", "b", "c", "d"]
    order = [letter_of(ax.get_title(loc="left")) for ax in panels(fig)]
    assert order == ["a", "b", "c", "d"] and panels(fig)[1] is axes["b"]
    assert axes["a"].get_title(loc="left") == r"$\mathbf{a}$  first"
    assert axes["c"].get_title(loc="left") == r"$\mathbf{c}$  repeated"
    panel_letters(fig)  # twice: the same letters, no second prefix
    assert axes["c"].get_title(loc="left") == r"$\mathbf{c}$  repeated"
    assert panel_letters([axes["d"], axes["a"]], start="e") == ["e", "f"]
    assert axes["a"].get_title(loc="left") == r"$\mathbf{f}$  first"
    plt.close(fig)
    assert [letter_of(t) for t in ["a", "(b)", "c. x", "d  title", "e title", "ab", "A"]] == [
        "a", "b", "c", "d", None, None, None]


def test_paired_difference_draws_the_paired_t_interval_and_each_replicate():
    rng = np.random.default_rng(7)
    before = xr.DataArray(rng.normal(10.0, 3.0, (2, 5)), dims=("arm", "replicate"),
                          coords={"arm": ["x", "y"], "replicate": np.arange(5)})
    after = before + rng.normal(1.0, 0.5, before.shape)
    fig, ax = print_figure(width="single")
    out = paired_difference(ax, before, after)
    d = (after - before).values
    half = scipy_stats.t.ppf(0.975, 4) * d.std(axis=1, ddof=1) / np.sqrt(5)
    np.testing.assert_allclose(out["mean"], d.mean(axis=1))
    np.testing.assert_allclose(out["high"] - out["mean"], half)
    dots = next(line for line in ax.get_lines() if line.get_label() == "_replicates")
    np.testing.assert_allclose(np.sort(dots.get_ydata()), np.sort(d.ravel()))
    assert any(line.get_ydata()[0] == 0.0 for line in ax.get_lines())  # the zero line
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    assert "paired t interval over n = 5 pairs" in caption(fig)
    plt.close(fig)
    # as ratios: the geometric mean ratio and the interval of the log ratio, on a log axis
    fig, ax = print_figure(width="single")
    out = paired_difference(ax, before.isel(arm=0), after.isel(arm=0), ratio=True)
    logs = np.log(after.values[0] / before.values[0])
    assert float(out["mean"]) == pytest.approx(np.exp(logs.mean()))
    assert ax.get_yscale() == "log"
    plt.close(fig)
    # one baseline against several arms: the baseline is broadcast over the arms
    fig, ax = print_figure(width="single")
    out = paired_difference(ax, before.isel(arm=0, drop=True), after)
    np.testing.assert_allclose(out["mean"], (after - before.isel(arm=0)).mean("replicate"))
    plt.close(fig)
    with pytest.raises(ValueError, match="b must be paired with a"):
        paired_difference(ax, before, after.assign_coords(replicate=np.arange(1, 6)))


def test_ratio_points_are_geometric_means_with_the_log_interval():
    rng = np.random.default_rng(8)
    values = xr.DataArray(rng.lognormal(0.5, 0.4, (3, 6)), dims=("block", "replicate"),
                          coords={"block": ["conv1", "fc", "head"]})
    fig, ax = print_figure(width="single")
    out = ratio_points(ax, values, label="ratio")
    logs = np.log(values.values)
    half = scipy_stats.t.ppf(0.975, 5) * logs.std(axis=1, ddof=1) / np.sqrt(6)
    np.testing.assert_allclose(out["mean"], np.exp(logs.mean(axis=1)))
    np.testing.assert_allclose(out["low"], np.exp(logs.mean(axis=1) - half))
    assert ax.get_yscale() == "log" and ax.containers[0].has_yerr
    assert not any(isinstance(c, BarContainer) for c in ax.containers)
    ratio_points(ax, values * 2, offset=0.2)  # a second series: one reference line only
    assert sum(line.get_gid() == "anglesim-reference" for line in ax.get_lines()) == 1
    assert caption(fig).startswith("Points on log axes: geometric means with the 95% t "
                                   "interval of the log over n = 6 replicates")
    plt.close(fig)


@pytest.mark.parametrize("low,high", [(0.7, 1.6), (0.95, 1.05), (0.3, 2.5), (0.1, 100.0)])
def test_ratio_ticks_read_as_numbers(low, high):
    """At least three ticks inside the range, 1 among them, each a short plain number; over
    a decade or more the 1-2-5 ladder of the decades."""
    from anglesim.plotting import RatioLocator

    ticks = np.asarray(RatioLocator().tick_values(low, high))
    inside = ticks[(ticks >= low * (1 - 1e-9)) & (ticks <= high * (1 + 1e-9))]
    assert len(inside) >= 3 and np.isclose(inside, 1.0).any()
    assert all(len(f"{v:g}") <= 4 for v in inside)
    if high / low >= 8:
        ladder = np.array([0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
        np.testing.assert_allclose(inside, ladder[(ladder >= low) & (ladder <= high)])


def test_caption_states_bands_and_n_and_never_standard_errors():
    rng = np.random.default_rng(9)
    fig, ax = print_figure(width="single")
    assert caption(fig, "Nothing drawn.") == "Nothing drawn."
    band(ax, np.arange(5.0), xr.DataArray(rng.normal(size=(4, 5)), dims=("replicate", "x")),
         "C0", "curve")
    log_band(ax, np.arange(5.0), xr.DataArray(rng.lognormal(size=(4, 5)),
                                              dims=("replicate", "x")), "C1", "FI")
    text = caption(fig, "Error against angle.")
    assert text == ("Error against angle. Lines and points: means; bands and error bars: 95% "
                    "t intervals over n = 4 replicates (on log axes: geometric means and the "
                    "t interval of the log).")
    assert "s.e." not in text and "±" not in text
    few = xr.DataArray(rng.normal(size=(2, 5)), dims=("replicate", "x"))
    interval_bars(ax, np.arange(5.0), few, "C2", "few")
    assert "over n = 2–4 replicates" in caption(fig) and "no interval where n < 3" in caption(fig)
    plt.close(fig)


def test_check_figure_passes_the_redesigned_quickstart_figure():
    """The quickstart's figure, redrawn to the standard (print size, panel letters, paired
    ratios), has nothing the checker flags (it once had small text and an unlabelled axis)."""
    from anglesim.studies.quickstart import plot_quickstart

    rng = np.random.default_rng(3)
    angle = np.arange(8) * np.pi / 8
    dims = ("kappa", "replicate", "phase", "layer", "angle")
    ds = xr.Dataset(
        {"fisher": (dims, np.exp(rng.normal(4.0, 1.0, (1, 4, 2, 4, 8)))),
         "abs_error": (dims[:3] + ("angle",), rng.uniform(0.0, 0.3, (1, 4, 2, 8))),
         "prior_density": (dims[:3] + ("angle",),
                           np.broadcast_to(VonMises(np.pi / 2, 4.0).pdf(angle),
                                           (1, 4, 2, 8)).copy()),
         "failed": (("kappa", "replicate"), np.zeros((1, 4), bool))},
        coords={"kappa": [4.0], "replicate": np.arange(4), "phase": ["pretrain", "finetune"],
                "layer": ["input", "conv1", "fc", "output"], "angle": angle},
    )
    assert _found(plot_quickstart(ds)) == set()
