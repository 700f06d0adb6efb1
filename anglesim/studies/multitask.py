"""Multitask: does learning another property of the same images change the FI about θ?

A CNN learns the orientation θ of gratings whose contrast (or spatial frequency) varies from
image to image, uniformly on a fixed range. Three training regimes see the same image
distribution and the same number of angle-training steps:

* ``angle_only`` — θ estimation alone (the control);
* ``sequential`` — first the other property alone (a scalar head regressing its standardised
  value, :func:`anglesim.training.standardise`), then θ alone, the whole network training;
* ``joint_<w>`` — θ and the other property at once, on a shared trunk, loss
  1 − cos 2(θ̂ − θ) + w · MSE(standardised property), for a few weights w.

After training we measure the decoding error of θ and of the other property (its head's RMSE
and a linear probe read from the last trunk block ``fc``, both relative to chance), and the
propagated Fisher information about θ of every block. The other property varies during
training, but FI about θ is measured at one fixed stimulus, the studies' standard ``SPEC``
(contrast 1, 4 cycles per image — the middle of both ranges): FI about θ is a property of the
image distribution at a given contrast and frequency, and comparing regimes at the same
stimulus is what isolates the effect of the training objective. For ``sequential`` the FI is
also measured after the first phase (the trunk trained on the other property only).

Run: ``anglesim run multitask [--quick]``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import xarray as xr

from anglesim.distributions import Uniform
from anglesim.fisher import propagated_fisher
from anglesim.models import AngleNet, build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    STYLE,
    band_footnote,
    fi_vs_angle_axis,
    given_bars,
    interval_bars,
    log_band,
    replicate_count,
    successful,
)
from anglesim.probe import ridge_readout
from anglesim.seeding import drawing_from
from anglesim.stats import mean_ci, welch_ci
from anglesim.study import ReplicateContext, Study
from anglesim.training import (
    Phase,
    Task,
    draw_varied,
    evaluate_error,
    evaluate_target_error,
    train,
)

from ._recipes import CNN, SPEC, expects_aperture_ties, fisher_variables

NAME = "multitask"
OTHER_HEAD = "other"
RANGES = {"contrast": (0.5, 1.5), "frequency": (3.0, 5.0)}
"""Per-image ranges of the other property, centred on SPEC's contrast 1 and frequency 4."""
UNITS = {"contrast": "contrast units", "frequency": "cycles per image"}

SIZES = {
    "full": dict(epochs=10, other_epochs=10, steps=50, batch=64, lr=2e-3, n_angles=24,
                 layers=None, error_repeats=16, target_repeats=8, probe_train=2048,
                 probe_test=1024, replicates=4, others=["contrast", "frequency"],
                 weights=[0.1, 1.0, 10.0]),
    "quick": dict(epochs=1, other_epochs=1, steps=3, batch=16, lr=2e-3, n_angles=4,
                  layers=["input", "fc", "output"], error_repeats=2, target_repeats=2,
                  probe_train=96, probe_test=48, replicates=2, others=["contrast"],
                  weights=[1.0]),
}
"""``layers`` None measures FI at every block (input, conv1, conv2, fc, output); the quick
size skips the convolutions, whose Jacobians are most of the cost."""


def regimes(weights: list[float]) -> dict[str, float | None]:
    """Regime name -> weight of the other task's loss (None where it is not trained jointly)."""
    out: dict[str, float | None] = {"angle_only": None, "sequential": None}
    for w in weights:
        out[f"joint_{w:g}"] = float(w)
    return out


def phases(regime: str, other: str, sz: dict) -> list[Phase]:
    """The phases of one regime; every one draws the other property per image."""
    if other not in RANGES:
        raise ValueError(f"other must be one of {list(RANGES)}, got {other!r}")
    weights = regimes(sz["weights"])
    if regime not in weights:
        raise ValueError(f"regime must be one of {list(weights)}, got {regime!r}")
    common = dict(spec=SPEC, vary={other: RANGES[other]}, steps_per_epoch=sz["steps"],
                  batch_size=sz["batch"], lr=sz["lr"], eval_angles=sz["n_angles"])
    angle = Task(head="head", loss="cosine")
    scalar = Task(head=OTHER_HEAD, target=other, loss="mse")
    if regime == "angle_only":
        return [Phase("angle", Uniform(), epochs=sz["epochs"], tasks=[angle], **common)]
    if regime == "sequential":
        return [Phase("other", Uniform(), epochs=sz["other_epochs"], tasks=[scalar], **common),
                Phase("angle", Uniform(), epochs=sz["epochs"], tasks=[angle], **common)]
    joint = Task(head=OTHER_HEAD, target=other, loss="mse", weight=weights[regime])
    return [Phase("joint", Uniform(), epochs=sz["epochs"], tasks=[angle, joint], **common)]


def probe_error(net: AngleNet, other: str, sz: dict, generator: torch.Generator) -> float:
    """RMSE (property units) of a ridge-regression read-out of ``other`` from the last trunk
    block, fitted on ``probe_train`` fresh images and tested on ``probe_test`` others.

    The read-out is :func:`anglesim.probe.ridge_readout` (λ = 10⁻³).
    """
    n_train, n_test = sz["probe_train"], sz["probe_test"]
    on = {} if generator.device.type == "cpu" else {"device": generator.device}  # as the net
    images, _, values = draw_varied(Uniform(), SPEC, n_train + n_test, {other: RANGES[other]},
                                    generator, **on)
    with torch.no_grad():
        net.eval()
        feats = net.run_blocks(images, stop=net.trunk_names[-1]).flatten(1).double()
    y = values[other].double()
    pred = ridge_readout(feats[:n_train], y[:n_train], feats[n_train:], ridge=1e-3)
    y_te = y[n_train:]
    return float(((pred - y_te) ** 2).mean().sqrt())


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network in one regime; measure errors and per-block FI about θ at SPEC."""
    sz, on = ctx.params, ctx.on_device
    other, regime = str(ctx.condition["other"]), str(ctx.condition["regime"])
    lo, hi = RANGES[other]
    plan = phases(regime, other, sz)
    grid = ctx.angles
    angle = grid.double().numpy()

    def fisher(net: AngleNet) -> xr.DataArray:
        return propagated_fisher(net, SPEC, grid, layers=sz["layers"],
                                 sigma=SPEC.noise_std, **on).assign_coords(angle=angle)

    def other_error(net: AngleNet) -> xr.DataArray:
        err = evaluate_target_error(net, SPEC, OTHER_HEAD, other, lo, hi, sz["n_angles"],
                                    sz["target_repeats"],
                                    generator=ctx.generator("targets"))
        return err.assign_coords(angle=angle)

    first: dict[str, xr.DataArray] = {}

    def after_phase(phase: Phase, net: AngleNet) -> None:
        if regime == "sequential" and phase.name == "other":
            first["fisher"] = fisher(net)
            first["other_error"] = other_error(net)

    init = ctx.seed_generator()
    model = build_model(CNN, generator=init)
    with drawing_from(init):  # the other head's weights continue the same draws
        model.add_head(OTHER_HEAD, readout="scalar")
    history = train(model, plan, ctx.seed, on_phase_end=after_phase, **on)

    fi = fisher(model)
    nan_like = xr.full_like
    measured = fisher_variables(fisher=fi, fisher_other_only=first.get("fisher", fi))
    if "fisher" not in first:  # no other-task-only phase: its FI and diagnostics are missing
        measured.update({k: nan_like(v, "") if v.dtype.kind == "O" else
                         nan_like(v, np.nan, dtype=np.float64)
                         for k, v in measured.items() if k.startswith("fisher_other_only")})
    ds = xr.Dataset(
        {
            **measured,
            "abs_error": evaluate_error(model, SPEC, sz["n_angles"], sz["error_repeats"],
                                        generator=ctx.generator("eval")
                                        ).assign_coords(angle=angle),
        }
    )
    err = other_error(model)
    trained = regime != "angle_only"  # angle_only never trains the other head
    ds["other_error"] = err if trained else nan_like(err, np.nan)
    ds["other_error_other_only"] = first.get("other_error", nan_like(err, np.nan))
    ds["other_chance"] = ((), float(err.attrs["chance"]))
    ds["probe_error"] = ((), probe_error(model, other, sz, ctx.generator("probe")))
    ds["fisher_other_only"].attrs = dict(fi.attrs, long_name=(
        "FI about θ after the first (other-task-only) phase of the sequential regime"))
    ds["other_error"].attrs = {"units": UNITS[other], "long_name": (
        f"RMSE of the {other} head at each angle (NaN: head not trained)")}
    ds["other_error_other_only"].attrs = {"units": UNITS[other], "long_name": (
        f"RMSE of the {other} head after the first phase of the sequential regime")}
    ds["other_chance"].attrs = {"units": UNITS[other],
                                "long_name": "RMSE of always predicting the mean"}
    ds["probe_error"].attrs = {"units": UNITS[other], "long_name": (
        f"RMSE of a linear ridge probe of {other} from the last trunk block")}
    # sequential runs two phases: pad every history to the longest regime's length
    history = history.reset_coords(["epoch_phase", "epoch_in_phase"]).reindex(
        epoch=np.arange(sz["other_epochs"] + sz["epochs"]),
        fill_value={"epoch_phase": "", "epoch_in_phase": -1, "train_loss": np.nan,
                    "val_loss": np.nan, "eval_error": np.nan})
    return xr.merge([ds, history], combine_attrs="drop_conflicts")




# ---- derived measures ----------------------------------------------------------------------


def measures(ds: xr.Dataset) -> xr.Dataset:
    """Per-block FI summaries and errors relative to chance (see :func:`add_measures`)."""
    ok = successful(ds)
    log2fi = np.log2(ok["fisher"]).mean("angle")
    log2fi_first = np.log2(ok["fisher_other_only"]).mean("angle")
    ref = log2fi.sel(regime="angle_only")
    ratio, half = welch_ci(log2fi, ref)
    ratio = ratio.where(ok["regime"] != "angle_only", 0.0)
    half = half.where(ok["regime"] != "angle_only")
    first_ratio, first_half = welch_ci(log2fi_first.sel(regime="sequential"), ref)
    chance = ok["other_chance"]
    out = xr.Dataset(
        {
            "log2_fisher": log2fi,
            "fisher_log2_ratio": ratio,
            "fisher_log2_ratio_ci": half,
            "other_only_log2_ratio": first_ratio,
            "other_only_log2_ratio_ci": first_half,
            "angle_error": ok["abs_error"].mean("angle"),
            "other_error_rel": ok["other_error"].mean("angle") / chance,
            "other_error_other_only_rel": (ok["other_error_other_only"].mean("angle")
                                           / chance).sel(regime="sequential", drop=True),
            "probe_error_rel": ok["probe_error"] / chance,
        }
    )
    out["log2_fisher"].attrs = {"units": "log2 rad^-2",
                                "long_name": "mean over angles of log2 FI about θ, per block"}
    out["fisher_log2_ratio"].attrs = {"long_name": (
        "mean log2 FI minus the angle_only regime's mean log2 FI (mean over angles, then "
        "over replicates); 0 for angle_only itself")}
    out["fisher_log2_ratio_ci"].attrs = {"long_name": (
        "half-width of the 95% Welch t interval of fisher_log2_ratio (NaN for angle_only)")}
    out["other_only_log2_ratio"].attrs = {"long_name": (
        "as fisher_log2_ratio, for the sequential regime's trunk after its first phase "
        "(trained on the other property only)")}
    out["angle_error"].attrs = {"units": "rad", "long_name": "mean absolute angular error"}
    for name in ("other_error_rel", "other_error_other_only_rel", "probe_error_rel"):
        out[name].attrs = {"units": "1", "long_name": "RMSE over the RMSE of predicting the mean"}
    return out


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added, and each other property's training range as
    coordinates ``other_low``/``other_high`` on ``other``."""
    others = [str(o) for o in ds["other"].values]
    ds = ds.assign_coords(other_low=("other", [RANGES[o][0] for o in others]),
                          other_high=("other", [RANGES[o][1] for o in others]))
    return ds.assign(measures(ds).data_vars)


def summarise(ds: xr.Dataset) -> str:
    """The run's findings in numbers: per other task and regime, mean ± 95% CI half-width."""

    lines = []
    for other in ds["other"].values:
        d = ds.sel(other=other)
        lines.append(f"other task: {other}")
        for regime in d["regime"].values:
            r = d.sel(regime=regime)
            err_m, err_h = mean_ci(np.degrees(r["angle_error"]))
            cells = [f"angle error {float(err_m):.2f}±{float(err_h):.2f}°"]
            if np.isfinite(r["other_error_rel"]).any():
                m, h = mean_ci(r["other_error_rel"])
                cells.append(f"{other} head RMSE/chance {float(m):.3f}±{float(h):.3f}")
            m, h = mean_ci(r["probe_error_rel"])
            cells.append(f"probe RMSE/chance {float(m):.3f}±{float(h):.3f}")
            ratios = ", ".join(
                f"{layer} {float(r['fisher_log2_ratio'].sel(layer=layer)):+.2f}"
                f"±{float(r['fisher_log2_ratio_ci'].sel(layer=layer)):.2f}"
                for layer in r["layer"].values if layer != "input")
            cells.append(f"log2 FI vs angle_only: {ratios}")
            lines.append(f"  {regime}: " + "; ".join(cells))
        ratios = ", ".join(
            f"{layer} {float(d['other_only_log2_ratio'].sel(layer=layer)):+.2f}"
            f"±{float(d['other_only_log2_ratio_ci'].sel(layer=layer)):.2f}"
            for layer in d["layer"].values if layer not in ("input", "head", "output"))
        lines.append(f"  {other} only (sequential, phase 1): log2 FI vs angle_only: {ratios}")
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "ranges": {k: list(v) for k, v in RANGES.items()},
            "phases": {f"{o}/{r}": [p.to_config() for p in phases(r, o, params)]
                       for o in grid["other"] for r in grid["regime"]}}


# ---- figure ----------------------------------------------------------------------------------


_MT_JOINT_BLUES = ("#92c5de", "#4393c3", "#2166ac", "#053061")


def _mt_regime_style(regimes: list[str]) -> dict[str, tuple[str, str]]:
    """Colour and label of each multitask regime: angle only grey, sequential red, joint
    regimes in blues darkening with the weight of the other task."""
    joint = [r for r in regimes if r.startswith("joint_")]
    out = {}
    for r in regimes:
        if r == "angle_only":
            out[r] = (PHASE_COLOURS[0], "angle only")
        elif r == "sequential":
            out[r] = (PHASE_COLOURS[1], "sequential")
        else:
            i = joint.index(r) + max(0, len(_MT_JOINT_BLUES) - 1 - len(joint))
            out[r] = (_MT_JOINT_BLUES[min(i, len(_MT_JOINT_BLUES) - 1)],
                      f"joint, w = {r.removeprefix('joint_')}")
    return out


def plot_multitask(ds: xr.Dataset) -> plt.Figure:
    """Multitask: angle estimation alone, after another task, and jointly with it.

    One row per other task (contrast or spatial-frequency estimation). Panels: (a) FI of the
    decoded angle against θ per regime (geometric mean and 95% CI over replicates), at the
    fixed standard stimulus; (b) per block, mean log₂ FI about θ minus the angle-only
    regime's, with Welch 95% CIs (``fisher_log2_ratio``), and the sequential regime's trunk
    after its first, other-task-only phase; (c) mean absolute angle error per regime (mean ±
    95% CI, replicates as dots); (d) the other property's RMSE relative to always predicting
    its mean: its head after training, the head after the first sequential phase, and a
    linear probe of the last trunk block.
    """
    ds = successful(ds)
    others = [str(o) for o in ds["other"].values]
    regimes = [str(r) for r in ds["regime"].values]
    style = _mt_regime_style(regimes)
    ticks = [style[r][1].replace(", ", "\n").replace("angle only", "angle\nonly")
             for r in regimes]
    theta_deg = np.degrees(ds["angle"].values)
    layers = [str(v) for v in ds["layer"].values if str(v) != "input"]
    x_reg = np.arange(len(regimes))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(others), 4, figsize=(13, 3.2 * len(others)),
                                 constrained_layout=True, squeeze=False)
        for row, other in zip(axes, others, strict=True):
            d = ds.sel(other=other)
            span = ""
            if "other_low" in d.coords:
                span = f" ({float(d['other_low']):g}–{float(d['other_high']):g})"
            ax = row[0]
            for r in regimes:
                log_band(ax, theta_deg, d["fisher"].sel(regime=r, layer="output"),
                          style[r][0], style[r][1], alpha=0.12)
            fi_vs_angle_axis(ax)
            ax.legend(frameon=False, fontsize=7)
            ax.set_title(f"a  other task: {other}{span}; FI at the output", loc="left")

            ax = row[1]
            x = np.arange(len(layers))
            shown = [r for r in regimes if r != "angle_only"]
            width = 0.8 / (len(shown) + 1)
            # the Welch intervals' groups: this regime's and the angle-only regime's replicates
            n_valid = d["log2_fisher"].count("replicate")
            ref_n = n_valid.sel(regime="angle_only")
            for k, r in enumerate(shown):
                given_bars(ax, x + (k - len(shown) / 2) * width,
                           d["fisher_log2_ratio"].sel(regime=r, layer=layers),
                           d["fisher_log2_ratio_ci"].sel(regime=r, layer=layers),
                           np.minimum(n_valid.sel(regime=r), ref_n).sel(layer=layers),
                           style[r][0], style[r][1])
            # after the first sequential phase the angle head is untrained: trunk blocks only
            trunk = [layer for layer in layers if layer not in ("head", "output")]
            first_n = d["fisher_other_only"].sel(regime="sequential").isel(angle=0).count(
                "replicate")
            given_bars(ax, np.arange(len(trunk)) + (len(shown) / 2) * width,
                       d["other_only_log2_ratio"].sel(layer=trunk),
                       d["other_only_log2_ratio_ci"].sel(layer=trunk),
                       np.minimum(first_n, ref_n).sel(layer=trunk), style["sequential"][0],
                       f"{other} only (sequential, 1st phase)", fmt="^", mfc="white")
            ax.axhline(0, color=style["angle_only"][0], lw=0.8, label="angle only")
            ax.set_xticks(x, layers)
            ax.set_xlabel("block")
            ax.set_ylabel("log₂ FI about θ / angle only")
            ax.legend(frameon=False, fontsize=6.5)
            ax.set_title("b  FI per block vs angle only", loc="left")

            ax = row[2]
            for k, r in enumerate(regimes):
                err = np.degrees(d["angle_error"].sel(regime=r))
                interval_bars(ax, [k], err, style[r][0], None, bounds=(0, 90), ms=5,
                              capsize=3)
                ax.plot(np.full(err.sizes["replicate"], k + 0.18), err, ".", ms=3,
                        color=style[r][0], alpha=0.6)
            ax.set_xticks(x_reg, ticks, fontsize=7)
            ax.set_ylabel("mean |θ̂ − θ| (deg)")
            ax.set_ylim(bottom=0)
            ax.set_title("c  angle error", loc="left")

            ax = row[3]
            for offset, (var, marker, label) in enumerate([
                ("other_error_rel", "o", f"{other} head"),
                ("probe_error_rel", "s", "linear probe of fc"),
            ]):
                ok = d[var].count("replicate").values > 0
                interval_bars(ax, x_reg[ok] + (offset - 0.5) * 0.25,
                              d[var].isel(regime=np.flatnonzero(ok)),
                              "0.2" if offset == 0 else "0.55", label, bounds=(0, None),
                              fmt=marker)
            if "other_error_other_only_rel" in d:
                k = regimes.index("sequential")
                interval_bars(ax, [k + 0.38],
                              d["other_error_other_only_rel"],
                              style["sequential"][0], "head after 1st phase",
                              bounds=(0, None), fmt="^", mfc="white")
            ax.axhline(1, color="0.6", lw=0.8, ls=":", label="chance (predict the mean)")
            ax.set_xticks(x_reg, ticks, fontsize=7)
            ax.set_ylabel(f"{other} RMSE / chance RMSE")
            ax.set_ylim(bottom=0)
            ax.legend(frameon=False, fontsize=6.5)
            ax.set_title(f"d  {other} error", loc="left")
        fig.suptitle(f"multitask: {replicate_count(ds)}; FI at contrast 1, 4 cycles/image",
                     fontsize=9)
        band_footnote(fig, "block bars: Welch t intervals against angle only")
    return fig


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimators, generators
    question=("Does learning another property of the image (sequentially or jointly) change FI "
              "about orientation?"),
    replicate=replicate,
    sizes=SIZES,
    grid=lambda params: {"other": list(params["others"]),
                         "regime": list(regimes(params["weights"]))},
    describe=describe,
    postprocess=add_measures,
    figure=plot_multitask,
    summary=summarise,
    pair_axes=(),  # every (other task, regime) trains its own networks from its own seeds
    # NaN by design: stream phases have no validation loss, the history is padded to the
    # sequential regime's epochs, and the other task's measures are NaN where a regime has none
    allow_nan=("val_loss", "train_loss", "eval_error", "fisher_other_only",
               "fisher_other_only_error", "fisher_other_only_iterations", "other_error",
               "other_error_other_only"),
)
