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
    replicate): bands from 3 replicates on, none and a footnote saying so with 2."""
    from anglesim.studies.quickstart import plot_quickstart

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
    note = fig.texts[-1].get_text()
    if n_rep == 2:
        assert vertices == 0 and note == "no band: n < 3 replicates (n = 2)"
        assert np.all(_bar_halves(fig.axes[3]) == 0)
    else:
        assert vertices > 0 and note.startswith("bands: 95% t intervals over 4 replicates")
        assert np.any(_bar_halves(fig.axes[3]) > 0)
