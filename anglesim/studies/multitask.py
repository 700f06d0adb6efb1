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

**Design.** The regimes are paired (``pair_axes=("regime",)``): replicate r of every regime
gets the same seed, so the regimes start from the same initial network (trunk and both heads)
and draw from the same data streams; a regime's FI relative to ``angle_only`` is then a paired
ratio per replicate. FI is summarised per block as its geometric mean over the angle grid
(``fisher_geomean``; the contrasts are on its log). The declared claims (:data:`CLAIMS`, Holm
over the family of 8, all at the decoded output, per other task):

* ``joint_lowers_w1``, ``joint_lowers_w10``: joint training at w = 1 and at w = 10 lowers FI
  about θ below ``angle_only``'s (paired ratio < 1);
* ``weight_lowers_more``: w = 10 lowers it more than w = 1 (paired ratio < 1);
* ``sequential_changes``: learning the other property first changes FI about θ once θ is
  trained (two-sided, paired ratio);
* exploratory: the same ratios in ``fc``, the sequential trunk after its other-task phase
  against ``angle_only`` in ``fc``, and each regime's angle error against ``angle_only``'s.

**Sizes.** Full: 2 other tasks × 4 regimes × 8 replicates (8 pairs for every contrast), 10 + 10
epochs of 50 batches of 64 at lr 2·10⁻³, 24 angles; one replicate of the four regimes costs
about 54 CPU s per other task (angle only and each joint regime ~11 s, sequential ~22 s;
measured at 65 s with w = 0.1 too), so the run takes about 7.3 min on 2 workers. The previous
run's w = 0.1 (output FI ×1.03 and ×1.08 of angle only's, within its intervals) is dropped to
fit that budget. FI is measured at ``conv2``, ``fc``, ``head`` and the output: the pixels' FI
does not depend on the network, and ``conv1`` (2,048 units on 1,024 pixels) kept all of it in
every regime of the previous run, so neither is measured. No learning rate is selected (one
rate, 2·10⁻³, for every regime). Quick: one other task, three regimes, 2 replicates of a few
steps (a smoke test; its claims are unresolved or "not in this run").

Run: ``anglesim run multitask [--quick]``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import xarray as xr

from anglesim.claims import Contrast
from anglesim.distributions import Uniform
from anglesim.fisher import propagated_fisher
from anglesim.models import AngleNet, build_model
from anglesim.plotting import (
    PHASE_COLOURS,
    caption,
    fi_vs_angle_axis,
    interval_bars,
    log_band,
    mean_ci,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.probe import ridge_readout
from anglesim.seeding import drawing_from
from anglesim.study import ReplicateContext, Study
from anglesim.training import (
    Phase,
    Task,
    draw_varied,
    evaluate_error,
    evaluate_target_error,
    train,
)

from ._recipes import CNN, SPEC, expects_aperture_ties, fisher_variables, labelled

NAME = "multitask"
OTHER_HEAD = "other"
RANGES = {"contrast": (0.5, 1.5), "frequency": (3.0, 5.0)}
"""Per-image ranges of the other property, centred on SPEC's contrast 1 and frequency 4."""
UNITS = {"contrast": "contrast units", "frequency": "cycles per image"}

SIZES = {
    "full": dict(epochs=10, other_epochs=10, steps=50, batch=64, lr=2e-3, n_angles=24,
                 layers=["conv2", "fc", "head", "output"], error_repeats=16,
                 target_repeats=8, probe_train=2048, probe_test=1024, replicates=8,
                 others=["contrast", "frequency"],
                 weights=[1.0, 10.0]),
    "quick": dict(epochs=1, other_epochs=1, steps=3, batch=16, lr=2e-3, n_angles=4,
                  layers=["input", "fc", "output"], error_repeats=2, target_repeats=2,
                  probe_train=96, probe_test=48, replicates=2, others=["contrast"],
                  weights=[1.0]),
}
"""``layers``: the blocks whose FI about θ is measured (the module docstring says why not the
input and conv1); the quick size skips the convolutions, whose Jacobians are most of the
cost."""


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

LABELS = {
    "other": ("1", "the other property of the images (varied per image, learned by the other "
                   "head)"),
    "regime": ("1", "training regime: angle only, sequential (other property, then θ), or "
                    "joint at the other task's loss weight w"),
    "other_low": ("1", "lower end of the other property's per-image range (its units: "
                       "contrast, or cycles per image)"),
    "other_high": ("1", "upper end of the other property's per-image range"),
    "train_loss": ("1", "training loss, sum of the phase's task losses, mean over the epoch"),
    "val_loss": ("1", "validation loss (finite-dataset phases only)"),
    "eval_error": ("rad", "mean absolute angle error on the phase's evaluation grid"),
}
"""Units and long names of the replicate's variables and coordinates that lack them."""


def measures(ds: xr.Dataset) -> xr.Dataset:
    """Per-block FI summaries and errors relative to chance (see :func:`add_measures`).

    ``fisher_geomean`` = 2^(mean over angles of log₂ J), the FI the claims compare;
    ``fisher_log2_ratio`` and its paired 95% t half-width: the mean over replicates of each
    replicate's log₂ geometric-mean FI minus its ``angle_only`` twin's (paired by seed)."""
    ok = successful(ds)
    log2fi = np.log2(ok["fisher"]).mean("angle")
    log2fi_first = np.log2(ok["fisher_other_only"]).mean("angle")
    ref = log2fi.sel(regime="angle_only", drop=True)
    ratio, half = mean_ci(log2fi - ref)
    ratio = ratio.where(ok["regime"] != "angle_only", 0.0)
    half = half.where(ok["regime"] != "angle_only")
    first_ratio, first_half = mean_ci(log2fi_first.sel(regime="sequential", drop=True) - ref)
    chance = ok["other_chance"]
    out = xr.Dataset(
        {
            "log2_fisher": log2fi,
            "fisher_geomean": 2.0 ** log2fi,
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
    out["log2_fisher"].attrs = {"units": "1", "long_name": (
        "mean over angles of log2 of FI about θ (FI in rad^-2), per block")}
    out["fisher_geomean"].attrs = {"units": "rad^-2", "long_name": (
        "geometric mean over angles of FI about θ, per block")}
    out["fisher_log2_ratio"].attrs = {"units": "1", "long_name": (
        "log2 ratio of the regime's FI about θ to the angle_only regime's (geometric means "
        "over angles), mean over replicates paired by seed; 0 for angle_only itself")}
    out["fisher_log2_ratio_ci"].attrs = {"units": "1", "long_name": (
        "half-width of the paired 95% t interval of fisher_log2_ratio (NaN for angle_only)")}
    out["other_only_log2_ratio"].attrs = {"units": "1", "long_name": (
        "log2 ratio of FI about θ of the sequential regime's trunk after its first phase "
        "(trained on the other property only) to the angle_only regime's, mean over "
        "replicates paired by seed")}
    out["other_only_log2_ratio_ci"].attrs = {"units": "1", "long_name": (
        "half-width of the paired 95% t interval of other_only_log2_ratio")}
    out["angle_error"].attrs = {"units": "rad", "long_name": "mean absolute angular error"}
    for name in ("other_error_rel", "other_error_other_only_rel", "probe_error_rel"):
        out[name].attrs = {"units": "1", "long_name": "RMSE over the RMSE of predicting the mean"}
    out["other_error_other_only_rel"].attrs["long_name"] += (
        " (the other head after the sequential regime's first phase)")
    out["probe_error_rel"].attrs["long_name"] += " (linear ridge probe of the last trunk block)"
    return out


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added, each other property's training range as
    coordinates ``other_low``/``other_high`` on ``other``, and units and long names on every
    variable."""
    others = [str(o) for o in ds["other"].values]
    ds = ds.assign_coords(other_low=("other", [RANGES[o][0] for o in others]),
                          other_high=("other", [RANGES[o][1] for o in others]))
    out = ds.assign(measures(ds).data_vars)
    for name, (units, long_name) in LABELS.items():
        if name in out.variables:
            out[name].attrs.update(units=units, long_name=long_name)
    for name in ("other_error", "other_error_other_only", "other_chance", "probe_error"):
        out[name].attrs["units"] = "1"  # contrast, or cycles per image (long_name says which)
        note = " (in the other property's units: " + ", ".join(
            f"{o}: {UNITS[o]}" for o in others) + ")"
        long_name = out[name].attrs.get("long_name", name.replace("_", " "))
        if note not in long_name:
            out[name].attrs["long_name"] = long_name + note
    return labelled(out, {})


# ---- the declared claims ---------------------------------------------------------------------


def _against_angle_only(name: str, statement: str, regime: str, direction: str,
                        layer: str | None, exploratory: bool = False,
                        measure: str = "fisher_geomean") -> Contrast:
    """A regime's FI (or error) over ``angle_only``'s at one block (None: a measure without
    blocks), paired by seed, per other task."""
    return Contrast(name=name, statement=statement, measure=measure, arm={"regime": regime},
                    against={"regime": "angle_only"}, paired=True,
                    where={} if layer is None else {"layer": layer}, over=["other"],
                    scale="ratio", direction=direction, exploratory=exploratory)


WEIGHTS = ("1", "10")
"""The joint regimes' loss weights the claims name (``joint_<w>``)."""


def _other_only(ds: xr.Dataset) -> xr.DataArray:
    """``fisher_geomean``, with the sequential regime's trunk after its other-task phase in
    place of the sequential regime's final FI."""
    first = 2.0 ** np.log2(ds["fisher_other_only"]).mean("angle")
    out = ds["fisher_geomean"].where(ds["regime"] != "sequential", first)
    out.attrs = {"units": "rad^-2", "long_name": "geometric mean over angles of FI about θ "
                 "(sequential: after its other-task phase)"}
    return out


CLAIMS = [
    *(_against_angle_only(f"joint_lowers_w{w}", f"joint training with the other task at loss "
                          f"weight w = {w} lowers the FI about θ of the decoded angle below "
                          "angle-only training's", f"joint_{w}", "less", "output")
      for w in WEIGHTS),
    Contrast(name="weight_lowers_more", statement="a larger weight of the other task (w = 10 "
             "against w = 1) lowers the output's FI about θ more", measure="fisher_geomean",
             arm={"regime": "joint_10"}, against={"regime": "joint_1"}, paired=True,
             where={"layer": "output"}, over=["other"], scale="ratio", direction="less"),
    _against_angle_only("sequential_changes", "learning the other property first changes the "
                        "output's FI about θ once θ is trained", "sequential", "differs",
                        "output"),
    *(_against_angle_only(f"joint_fc_w{w}", f"joint training at w = {w} against angle only, "
                          "FI about θ in fc", f"joint_{w}", "differs", "fc", exploratory=True)
      for w in WEIGHTS),
    _against_angle_only("sequential_fc", "learning the other property first against angle "
                        "only, FI about θ in fc", "sequential", "differs", "fc",
                        exploratory=True),
    Contrast(name="other_only_fc", statement="the sequential trunk after its other-task phase "
             "against angle-only training, FI about θ in fc", measure=_other_only,
             arm={"regime": "sequential"}, against={"regime": "angle_only"}, paired=True,
             where={"layer": "fc"}, over=["other"], scale="ratio", direction="differs",
             exploratory=True),
    *(_against_angle_only(f"angle_error_{r}", f"the angle error of {r} against angle only's",
                          r, "differs", None, exploratory=True, measure="angle_error")
      for r in ("sequential", *(f"joint_{w}" for w in WEIGHTS))),
]
"""The planned contrasts (module docstring); the family is the first four (8 members)."""


# ---- summary -------------------------------------------------------------------------------


def summarise(ds: xr.Dataset) -> str:
    """The run's findings in numbers: per other task and regime, mean and 95% t interval over
    replicates (FI ratios paired by seed against angle_only), then the caption."""
    if "fisher_geomean" not in ds:
        ds = add_measures(ds)
    n = int(successful(ds)["angle_error"].count("replicate").min())
    lines = [f"mean ± 95% t interval half-width over {n} replicates per regime; FI ratios "
             "against angle_only paired by seed:"]
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
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(),
            "ranges": {k: list(v) for k, v in RANGES.items()},
            "phases": {f"{o}/{r}": [p.to_config() for p in phases(r, o, params)]
                       for o in grid["other"] for r in grid["regime"]}}


# ---- figure ----------------------------------------------------------------------------------


OTHER_ONLY_COLOUR = "#e08214"
"""Colour of the sequential regime's trunk after its first (other-task-only) phase."""
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


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and n
    (:func:`anglesim.plotting.caption`)."""
    fig = plot_multitask(ds)
    try:
        rows = " and ".join(f"{o} (row {k + 1})" for k, o in enumerate(ds["other"].values))
        ranges = " and ".join(f"{RANGES[str(o)][0]:g}–{RANGES[str(o)][1]:g} {UNITS[str(o)]}"
                              for o in ds["other"].values)
        return caption(fig, (
            "Multitask: CNNs learning θ alone, after another property of the images, or "
            f"jointly with it at loss weight w; other property {rows}, varied per image over "
            f"{ranges}. FI about θ at the "
            "standard stimulus (contrast 1, 4 cycles per image). Per row: FI of the decoded "
            "angle against θ; FI per block over the angle-only network of the same seed "
            "(geometric mean over angles; orange: the sequential trunk after its other-task "
            "phase); mean absolute angle error; the other property's RMSE over "
            "that of predicting its mean."))
    finally:
        plt.close(fig)


def _short(regime: str) -> str:
    """A regime's tick label."""
    return {"angle_only": "angle\nonly", "sequential": "seq."}.get(
        regime, regime.replace("joint_", "w="))


def plot_multitask(ds: xr.Dataset) -> plt.Figure:
    """Multitask: angle estimation alone, after another task, and jointly with it.

    One row per other task (contrast or spatial-frequency estimation). Panels per row: FI of
    the decoded angle against θ per regime (geometric mean and 95% t band of log FI over
    replicates), at the fixed standard stimulus; per block, each regime's FI (geometric mean
    over angles) over the angle-only network of the same seed (paired ratios: one dot per
    replicate, the geometric mean and its paired 95% t interval), and the sequential regime's
    trunk after its first, other-task-only phase; mean absolute angle error per regime; the
    other property's RMSE relative to always predicting its mean: its head after training,
    the head after the first sequential phase, and a linear probe of the last trunk block.
    """
    if "fisher_geomean" not in ds:
        ds = add_measures(ds)
    ds = successful(ds)
    others = [str(o) for o in ds["other"].values]
    regimes = [str(r) for r in ds["regime"].values]
    style = _mt_regime_style(regimes)
    ticks = [_short(r) for r in regimes]
    theta_deg = np.degrees(ds["angle"].values)
    layers = [str(v) for v in ds["layer"].values if str(v) != "input"]
    trunk = [layer for layer in layers if layer not in ("head", "output")]
    x_reg = np.arange(len(regimes), dtype=float)
    with print_style():
        fig, axes = print_figure(len(others), 4, width="double", aspect=1.15, squeeze=False)
        for row, other in zip(axes, others, strict=True):
            d = ds.sel(other=other)
            ax = row[0]
            for r in regimes:
                log_band(ax, theta_deg, d["fisher"].sel(regime=r, layer="output"),
                         style[r][0], style[r][1], alpha=0.12)
            fi_vs_angle_axis(ax)
            ax.set_ylabel("FI of θ̂ (rad⁻²)")
            ax.set_title(f"{other}: output FI")

            ax = row[1]
            x = np.arange(len(layers), dtype=float)
            shown = [r for r in regimes if r != "angle_only"]
            width = 0.8 / (len(shown) + 1)
            ref = d["fisher_geomean"].sel(regime="angle_only", layer=layers)
            for k, r in enumerate(shown):
                paired_difference(ax, ref, d["fisher_geomean"].sel(regime=r, layer=layers),
                                  ratio=True, x=x + (k - len(shown) / 2) * width,
                                  colour=style[r][0], connect=False, spread=width / 3)
            first = 2.0 ** np.log2(d["fisher_other_only"].sel(regime="sequential",
                                                                layer=trunk)).mean("angle")
            paired_difference(ax, d["fisher_geomean"].sel(regime="angle_only", layer=trunk),
                              first, ratio=True,
                              x=np.arange(len(trunk)) + (len(shown) / 2) * width,
                              colour=OTHER_ONLY_COLOUR, connect=False,
                              spread=width / 3, label="sequential after its 1st phase")
            ax.set_xticks(x, layers, rotation=30)
            ax.set_xlim(-0.6, len(layers) - 0.4)
            ax.set_xlabel("block")
            ax.set_ylabel("FI / angle only (1)")
            ax.set_title("per block, paired")

            ax = row[2]
            for k, r in enumerate(regimes):
                interval_bars(ax, [k], np.degrees(d["angle_error"].sel(regime=r)),
                              style[r][0], None, bounds=(0, 90), ms=3, capsize=2)
            ax.set_xticks(x_reg, ticks)
            ax.set_xlabel("regime")
            ax.set_ylabel("mean |θ̂ − θ| (deg)")
            ax.set_ylim(0, 1.15 * ax.get_ylim()[1])
            ax.set_title("angle error")

            ax = row[3]
            for offset, (var, marker, label) in enumerate([
                ("other_error_rel", "o", "other head"),
                ("probe_error_rel", "s", "linear probe of fc"),
            ]):
                ok = d[var].count("replicate").values > 0
                interval_bars(ax, x_reg[ok] + (offset - 0.5) * 0.25,
                              d[var].isel(regime=np.flatnonzero(ok)),
                              "0.2" if offset == 0 else "0.55", label, bounds=(0, None),
                              fmt=marker, ms=3)
            if "other_error_other_only_rel" in d:
                k = regimes.index("sequential")
                interval_bars(ax, [k + 0.38], d["other_error_other_only_rel"],
                              style["sequential"][0], "head after 1st phase",
                              bounds=(0, None), fmt="^", mfc="white", ms=3)
            ax.axhline(1, color="0.6", lw=0.8, ls=":", label="chance (predict the mean)")
            ax.set_xticks(x_reg, ticks)
            ax.set_xlabel("regime")
            ax.set_ylabel("RMSE / chance RMSE (1)")
            ax.set_ylim(0, 1.15 * ax.get_ylim()[1])
            ax.set_title(f"{other} error")
        handles, labels = [], []
        for ax in axes[0, [0, 1, 3]]:
            more, more_labels = ax.get_legend_handles_labels()
            handles += more
            labels += more_labels
        fig.legend(handles, labels, loc="outside lower center", ncols=4)
        panel_letters(fig)
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
    pair_axes=("regime",),  # replicate r of every regime starts from the same network
    claims=CLAIMS,
    # NaN by design: stream phases have no validation loss, the history is padded to the
    # sequential regime's epochs, and the other task's measures are NaN where a regime has none
    allow_nan=("val_loss", "train_loss", "eval_error", "fisher_other_only",
               "fisher_other_only_error", "fisher_other_only_iterations", "other_error",
               "other_error_other_only"),
)
