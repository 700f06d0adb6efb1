"""Bias and discriminability: does a network's bias follow b(θ) = c·d/dθ[1/J(θ)] of its encoding?

Wei & Stocker (2017, PNAS 114:10244) showed that an observer with an efficient encoding and a
Bayesian decoder has an estimation bias proportional to the slope of its discrimination
threshold squared, b(θ) = c·d/dθ[1/J(θ)] with c > 0 — a repulsion from where the *encoding's*
Fisher information J is high. The encoding here is the layer the network's readout decodes:
``fc``, the head's input. (The decoded angle θ̂ is not an encoding of it: its FI is
(1 + b′)²/Var θ̂, which couples b to itself.)

**Which decoder obeys the law.** For any encoding, the posterior mean under a flat prior has
b = d/dθ[1/J] to first order in 1/J, so c = 1; with the training prior p and J ∝ p^α,
c = 1 − 1/α (½ for efficient coding, α = 2; negative, an attraction, for α < 1); the
derivation is in :mod:`anglesim.laws` (``_bias``). The **positive control** is therefore the
flat-prior posterior-mean decoder of each network's own fc encoding
(:func:`anglesim.laws.layer_encoding`: r | θ ~ N(f(θ), Σ̄), f the fc response to the
noiseless grating, Σ̄ the propagated pixel-noise covariance averaged over angles;
:func:`anglesim.laws.posterior_mean_decode` on a grid of ``n_grid`` angles), measured and
fitted exactly as the network is, against its own J = f′ᵀΣ̄⁻¹f′.

**Arms (grid).** The training prior, a von Mises prior on 2θ at 90° with κ ∈ {0, 1, 2, 4}
(κ = 0 the uniform prior) × the loss (L2 on the wrapped error ``wrapped_mse``, ``cosine``,
``vonmises_nll``). Each replicate trains the studies' standard CNN from scratch (8 × 50
steps of 32 fresh images, Adam 2e-3) and on a grid of ``n_angles`` angles measures

* ``fisher`` — the propagated FI of ``fc`` (pixel noise σ = 1), and ``output_fisher``, that
  of θ̂, for comparison;
* ``bias``, ``bias_stderr``, ``squared_error`` — the network's decoded-angle bias over
  ``n_trials`` noisy images per angle (:func:`anglesim.laws.decoded_bias`);
* ``slope`` — d/dθ[1/J] from a ``n_harmonics``-harmonic Fourier fit of 1/J
  (:func:`anglesim.laws.inverse_fisher_slope`, ``fit="inverse"``: the projection of the law's
  slope, so rough J between harmonics does not move c);
* the fit (:func:`anglesim.laws.fit_bias_law`) over every angle whose mean squared error is
  at most :data:`CRB_FACTOR` times its Cramér–Rao bound 1/J (efficiency ≥ ½; the law is a
  small-noise result): ``law_constant`` c, ``law_constant_stderr`` (its trial-noise part),
  ``law_correlation``, ``law_explained``, ``law_n_angles``;
* the same for the control: ``control_fisher``, ``control_slope``, ``control_bias``, …,
  ``control_constant``.

**Declared claims** (Holm over 24 members): ``network_law`` — c > 0 in each κ × loss cell;
``positive_control`` — the control's c > 0 in each cell. Replicates are independent networks
(no pairing).

**Sizes and why.** 12 replicates per cell (issue 23): 144 networks, sized for ≤ 10 minutes
on 2 workers (~7–8 CPU s each, half of it training). 400 steps of 32 images rather than 200 of
64 (the same images): on a pilot more angles passed the efficiency test (42 against 29 of 48
at κ = 0, cosine). ``n_harmonics`` = 12 (periods down to 15°) was fixed on a pilot of the
control, which recovered c = 0.9–1.2 with it and 0.3–1.3 from a 6-harmonic fit of log J.
``n_trials`` = 300 per angle at 48 angles: the trial noise of c is ±0.1–0.5 (95%) per
network (``law_constant_stderr``) where J varies, more where it is nearly flat (±1.8 on a
pilot's uniform-prior von Mises NLL network, whose d/dθ[1/J] is 0.015° rms); per angle the
bias's standard error (0.07–0.5°) is above the rms bias c = 1 predicts under the uniform
prior (0.015–0.08° on the pilot), so the law's shape is resolved only through the fit over
angles, not angle by angle. The control is cheap (no network pass), so it gets
``control_trials`` = 1000 per angle, decoded on ``n_grid`` = 1024 angles (≥ 5 grid points
per posterior s.d. at the J seen, J ≲ 3000 rad⁻²), with Σ̄ averaged over ``moment_angles`` =
24 angles. **Power** (a 4-replicate pilot at κ = 2, cosine, these sizes): the networks' c
spread with s.d. 1.0 between networks (−2.2 to +0.2), the control's with s.d. 0.19 (0.46 to
0.92), so at 12 replicates and Holm's strictest level (α/24) the MDE is ≈ 1.3 for the
networks, above the O(1) c the law predicts (a cell's claim resolves only if its c is large
or the spread smaller elsewhere), and ≈ 0.25 for the control, well below its c ≈ 0.7–1.

Run: ``anglesim run bias_law [--quick]``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import FuncFormatter, NullFormatter

from anglesim.claims import Contrast
from anglesim.distributions import AnglePrior, Uniform, VonMises
from anglesim.fisher import measure_fisher, method_result
from anglesim.laws import (
    bias_from_decoded,
    decoded_bias,
    fit_bias_law,
    inverse_fisher_slope,
    law_agreement,
    layer_encoding,
    posterior_mean_decode,
)
from anglesim.models import build_model
from anglesim.plotting import (
    RatioLocator,
    band,
    interval_bars,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.stats import mean_ci
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, train

from ._recipes import CNN, SPEC, describe_variables, expects_aperture_ties

NAME = "bias_law"
KAPPAS = (0.0, 1.0, 2.0, 4.0)
LOSSES = ("wrapped_mse", "cosine", "vonmises_nll")
PRIOR_LOC = math.pi / 2
LAYER = "fc"
"""The encoding: the layer the network's readout (``head``) decodes."""
CRB_FACTOR = 2.0
"""The fit uses the angles whose mean squared error is at most this many times 1/J."""

SIZES = {
    "full": dict(epochs=8, steps=50, batch=32, n_angles=48, n_trials=300, n_harmonics=12,
                 control_trials=1000, n_grid=1024, moment_angles=24, replicates=12),
    "quick": dict(epochs=1, steps=3, batch=16, n_angles=12, n_trials=8, n_harmonics=2,
                  control_trials=8, n_grid=256, moment_angles=2, replicates=2),
}
"""Full: 400 steps of 32 images per network, FI and bias on 48 angles, 300 trials per angle
for the network and 1000 for the control (decoded on 1024 angles), Σ̄ from 24 angles, 12
replicates of 12 cells (see the module text for why)."""

CLAIMS = [
    Contrast(
        name="network_law",
        statement="the networks' decoded-angle bias follows b = c d/dtheta[1/J] of their fc "
                  "encoding with c > 0 (Wei & Stocker 2017)",
        measure="law_constant", against=0.0, direction="greater", over=["kappa", "loss"]),
    Contrast(
        name="positive_control",
        statement="the flat-prior posterior-mean decoder of each network's fc encoding obeys "
                  "the law with c > 0 (theory: c = 1)",
        measure="control_constant", against=0.0, direction="greater", over=["kappa", "loss"]),
]


def training_prior(kappa: float) -> AnglePrior:
    """κ = 0: uniform; else von Mises on 2θ at :data:`PRIOR_LOC` with concentration κ."""
    return Uniform() if kappa == 0 else VonMises(PRIOR_LOC, kappa)


def phase(kappa: float, loss: str, sz: dict) -> Phase:
    """Training from scratch on the prior with ``loss`` (fresh images every batch)."""
    return Phase(f"kappa{kappa:g}", training_prior(kappa), SPEC, loss=loss, lr=2e-3,
                 epochs=sz["epochs"], steps_per_epoch=sz["steps"], batch_size=sz["batch"],
                 eval_angles=8, eval_repeats=1)


def law_fit(prefix: str, bias: xr.Dataset, fisher: xr.DataArray, sz: dict) -> xr.Dataset:
    """The slope of 1/J and the law's fit over the angles with MSE ≤ CRB_FACTOR / J."""
    slope = inverse_fisher_slope(fisher, sz["n_harmonics"], fit="inverse")
    efficient = bias["squared_error"] <= CRB_FACTOR / fisher
    fit = fit_bias_law(bias["bias"], slope, where=efficient, stderr=bias["bias_stderr"])
    fit = fit.assign(slope=slope)
    if prefix:
        fit = fit.rename({v: prefix + v.removeprefix("law_") for v in fit.data_vars})
        for var in fit.data_vars.values():
            var.attrs["long_name"] = "control: " + var.attrs["long_name"]
    return fit


@expects_aperture_ties
def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Train one network; measure its fc FI and bias, and its control's; fit the law to both."""
    sz = ctx.params
    kappa, loss = float(ctx.condition["kappa"]), str(ctx.condition["loss"])
    model = build_model(CNN, generator=ctx.generator("init", device="cpu"))
    history = train(model, [phase(kappa, loss, sz)], ctx.stream_seed("data"))
    model.eval()
    grid = ctx.angles.double().numpy()
    measured = measure_fisher(model, SPEC, training_prior(kappa), ["propagated"],
                              layers=[LAYER, "output"], angles=grid, sigma=SPEC.noise_std)
    fi = method_result(measured, "propagated")
    fisher = fi.sel(layer=LAYER, drop=True)
    network = decoded_bias(model, SPEC, grid, sz["n_trials"], ctx.generator("eval"))
    moment_grid = np.arange(sz["moment_angles"]) * (math.pi / sz["moment_angles"])
    encoding = layer_encoding(model, SPEC, LAYER, moment_grid, sigma=SPEC.noise_std)
    decoded = posterior_mean_decode(encoding, grid, sz["control_trials"],
                                    ctx.numpy_generator("control"), n_grid=sz["n_grid"])
    control = bias_from_decoded(decoded, grid)
    control_fisher = xr.DataArray(encoding.fisher(grid), dims="angle",
                                  coords={"angle": grid})
    ds = xr.Dataset({
        "fisher": fisher.assign_attrs(units="rad^-2", long_name=f"propagated FI of the "
                                      f"{LAYER} encoding, pixel noise sigma = 1"),
        "output_fisher": fi.sel(layer="output", drop=True).assign_attrs(
            units="rad^-2", long_name="propagated FI of the decoded angle"),
        "control_fisher": control_fisher.assign_attrs(
            units="rad^-2", long_name=f"FI f'^T Sigma^-1 f' of the control's Gaussian "
            f"{LAYER} encoding"),
        "prior_density": measured["prior_density"],
        **network[["bias", "bias_stderr", "abs_error", "squared_error"]].data_vars,
        **law_fit("", network, fisher, sz).data_vars,
        **{f"control_{k}": v.assign_attrs(long_name="control: " + v.attrs["long_name"])
           for k, v in control[["bias", "bias_stderr", "squared_error"]].data_vars.items()},
        **law_fit("control_", control, control_fisher, sz).data_vars,
    })
    return xr.merge([ds, history], combine_attrs="drop_conflicts")


ATTRS = {
    "kappa": {"units": "1", "long_name": "concentration kappa of the training prior (von Mises "
                                         "on 2 theta at 90 degrees; 0: uniform)"},
    "loss": {"units": "1", "long_name": "training loss (registered name)"},
    "train_loss": {"units": "rad^2 | 1 | nat",
                   "long_name": "training loss per epoch (wrapped_mse in rad^2, cosine "
                                "dimensionless, vonmises_nll in nat)"},
    "val_loss": {"units": "rad^2 | 1 | nat",
                 "long_name": "validation loss per epoch (NaN: fresh images, no validation "
                              "split)"},
}
"""Units and long names of the grid axes and training's variables (the rest carry their own;
:func:`anglesim.studies._recipes.describe_variables` adds the runner's)."""


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """``law_agreement`` per cell and angle (+1 holds, −1 flips, 0 unresolved); units and
    long names on every variable and coordinate."""
    ok = successful(ds)
    out = ds.assign(law_agreement=law_agreement(ok["bias"], ok["slope"]))
    return describe_variables(out, ATTRS)


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    return {"spec": SPEC.to_config(), "model": CNN.to_config(), "layer": LAYER,
            "priors": {f"{k:g}": training_prior(k).to_config() for k in grid["kappa"]},
            "phases": [phase(k, ls, params).to_config() for k in grid["kappa"]
                       for ls in grid["loss"]],
            "crb_factor": CRB_FACTOR, "slope_fit": "inverse"}


def rms_deg(da: xr.DataArray, where: xr.DataArray) -> xr.DataArray:
    """√(mean over fitted angles of da²) in degrees, per replicate."""
    return np.degrees(np.sqrt((da.where(where) ** 2).mean("angle")))


def summarise(ds: xr.Dataset) -> str:
    """Per cell: c with its 95% t interval over replicates, for the network and the control;
    the bias c = 1 predicts against the bias measured, and the trial noise of both."""
    ok = successful(ds)
    lines = [f"b = c·d/dθ[1/J], J the {LAYER} encoding's FI, fitted where MSE ≤ "
             f"{CRB_FACTOR:g}/J; mean [95% CI] over replicates. Network: c, r, angles fitted, "
             "rms bias that c = 1 predicts / rms bias measured / 95% half-width of the trial "
             "noise per angle (deg; ±1.96 s.e. over the trials), the trial noise's 95% "
             "half-width on c; control (flat-prior posterior mean): c, r, angles fitted:"]
    for kappa in ok["kappa"].values:
        for loss in ok["loss"].values:
            c = ok.sel(kappa=kappa, loss=loss)
            fitted = c["squared_error"] <= CRB_FACTOR / c["fisher"]
            m, h = mean_ci(c["law_constant"])
            cm, ch = mean_ci(c["control_constant"])
            predicted = float(rms_deg(c["slope"], fitted).mean())
            measured = float(rms_deg(c["bias"], fitted).mean())
            per_angle = 1.96 * float(np.degrees(c["bias_stderr"]).mean())
            lines.append(
                f"  κ={float(kappa):g} {loss:>12}: c {float(m):+.2f} [{float(m - h):+.2f}, "
                f"{float(m + h):+.2f}], r {float(c['law_correlation'].mean()):+.2f}, "
                f"{float(c['law_n_angles'].mean()):.0f}/{c.sizes['angle']} angles, "
                f"bias {predicted:.3f}/{measured:.3f}/±{per_angle:.3f}°, trial noise on c ±"
                f"{1.96 * float(c['law_constant_stderr'].mean()):.2f}; control c {float(cm):+.2f} "
                f"[{float(cm - ch):+.2f}, {float(cm + ch):+.2f}], r "
                f"{float(c['control_correlation'].mean()):+.2f}, "
                f"{float(c['control_n_angles'].mean()):.0f} angles")
    agree = ok["law_agreement"]
    lines.append(f"angle by angle (descriptive, uncorrected): the bias has the law's sign at "
                 f"{int((agree > 0).sum())}, the opposite at {int((agree < 0).sum())} of "
                 f"{agree.size} cell-angles; the rest cannot be told from 0")
    lines.append("Figure: " + caption(ds))
    return "\n".join(lines)


# ---- figure ----------------------------------------------------------------------------------

KAPPA_COLOURS = {0.0: "0.35", 1.0: "C0", 2.0: "C2", 4.0: "C3"}
LOSS_MARKERS = {"wrapped_mse": "D", "cosine": "s", "vonmises_nll": "^"}


def figure(ds: xr.Dataset) -> plt.Figure:
    """(a) the fc encoding's FI per κ; (b, c) the control's and (d, e) the networks' bias
    against θ with the law's c = 1 prediction, at κ = 0 and the largest κ; (f) the constant c
    per cell, networks and control, with 95% t intervals over replicates."""
    ok = successful(ds)
    kappas = [float(k) for k in ok["kappa"].values]
    losses = [str(v) for v in ok["loss"].values]
    show = [kappas[0], kappas[-1]] if len(kappas) > 1 else kappas
    loss0 = "cosine" if "cosine" in losses else losses[0]
    x = np.degrees(ok["angle"].values)
    with print_style():
        fig, axes = print_figure(2, 3, width="double", aspect=0.78)
        ax = axes[0, 0]
        for kappa in kappas:
            band(ax, x, ok["fisher"].sel(kappa=kappa, loss=loss0), KAPPA_COLOURS.get(kappa, "k"),
                 f"κ = {kappa:g}", log=True)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(RatioLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel="θ (deg)", ylabel=f"{LAYER} FI J (rad⁻²)",
               title=f"encoding FI ({loss0})")
        for ax in [*axes[0, 1 + len(show):], *axes[1, len(show):2]]:
            fig.delaxes(ax)  # a run with one κ has one pair of bias panels
        for ax, kappa in zip(axes[0, 1:], show, strict=False):
            _bias_panel(ax, ok.sel(kappa=kappa, loss=loss0), x, "control_", "k")
            ax.set_title(f"control, κ = {kappa:g} ({loss0})")
        for ax, kappa in zip(axes[1, :2], show, strict=False):
            _bias_panel(ax, ok.sel(kappa=kappa, loss=loss0), x, "", KAPPA_COLOURS.get(kappa))
            ax.set_title(f"network, κ = {kappa:g} ({loss0})")
        ax = axes[1, 2]
        _constants(ax, ok, kappas, losses)
        for a in [axes[0, 0], *axes[0, 1:1 + len(show)], *axes[1, :len(show)]]:
            a.set_xlim(0, 180)
            a.set_xticks([0, 45, 90, 135, 180])
        handles = [plt.Line2D([], [], color=KAPPA_COLOURS.get(k, "k"), label=f"κ = {k:g}")
                   for k in kappas]
        handles += [plt.Line2D([], [], color="0.3", ls="--", label="c = 1 prediction"),
                    plt.Line2D([], [], color="0.3", marker="o", ls="", label="filled: network"),
                    plt.Line2D([], [], color="0.3", marker="o", ls="", mfc="none",
                               label="open: control")]
        handles += [plt.Line2D([], [], color="0.3", marker=m, ls="", label=loss)
                    for loss, m in LOSS_MARKERS.items() if loss in losses]
        fig.legend(handles=handles, loc="outside lower center", ncols=5, frameon=False)
        panel_letters(fig)
    return fig


def _bias_panel(ax, cell: xr.Dataset, x: np.ndarray, prefix: str, colour) -> None:
    """The bias against θ (band over replicates) and the c = 1 prediction (dashed), drawn at
    the angles inside the fit in at least half the replicates (MSE ≤ CRB_FACTOR / J); the
    others shaded."""
    fitted = cell[f"{prefix}squared_error"] <= CRB_FACTOR / cell[f"{prefix}fisher"]
    inside = fitted.mean("replicate") >= 0.5
    band(ax, x, np.degrees(cell[f"{prefix}bias"].where(inside)), colour, "bias")
    ax.plot(x, np.degrees(cell[f"{prefix}slope"].mean("replicate")), "--", color="0.3", lw=0.8)
    ax.axhline(0, color="0.6", lw=0.5)
    if not bool(inside.all()):
        ax.fill_between(x, 0, 1, where=~inside.values, transform=ax.get_xaxis_transform(),
                        color="0.9", lw=0, zorder=0)
    ax.set(xlabel="θ (deg)", ylabel="bias θ̂ − θ (deg)")


def _constants(ax, ok: xr.Dataset, kappas: list, losses: list) -> None:
    """c per cell (points, 95% t intervals), the network filled and the control open."""
    width = 0.8 / max(1, len(losses))
    for i, loss in enumerate(losses):
        pos = np.arange(len(kappas)) + (i - (len(losses) - 1) / 2) * width
        marker = LOSS_MARKERS.get(loss, "o")
        interval_bars(ax, pos - 0.06, ok["law_constant"].sel(loss=loss), "0.2", loss,
                      fmt=marker, ms=3.5)
        interval_bars(ax, pos + 0.06, ok["control_constant"].sel(loss=loss), "0.2",
                      f"{loss} control", fmt=marker, mfc="none", ms=3.5)
    ax.axhline(0, color="0.6", lw=0.5)
    ax.axhline(1, color="0.6", lw=0.5, ls=":")
    ax.set_xticks(np.arange(len(kappas)), [f"{k:g}" for k in kappas])
    ax.set(xlabel="prior concentration κ", ylabel="law constant c (1)",
           title="c per cell")


def caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, its bands and n."""
    n = int(ds.sizes["replicate"])
    return (f"Bias against the law b = c·d/dθ[1/J], J the {LAYER} encoding's propagated FI. "
            "(a) J per training-prior concentration κ; (b, c) the flat-prior posterior-mean "
            "decoder of the same encoding (the positive control, against its own J); (d, e) "
            "the networks' decoded-angle bias; dashed: the c = 1 prediction d/dθ[1/J] (mean "
            "over replicates); grey: angles outside the fit (mean squared error above "
            f"{CRB_FACTOR:g}/J in most replicates; bias not drawn); (f) c per cell, filled "
            "the networks, open the control. Lines and points: means; bands and bars: 95% t "
            f"intervals over {n} replicates per cell (FI: geometric).")


STUDY = Study(
    name=NAME,
    question="Does a trained network's decoded-angle bias follow b = c d/dtheta[1/J] of its "
             "encoding's FI (Wei & Stocker 2017), as a posterior-mean decoder of the same "
             "encoding does?",
    replicate=replicate,
    sizes=SIZES,
    grid={"kappa": list(KAPPAS), "loss": list(LOSSES)},
    describe=describe,
    postprocess=add_measures,
    figure=figure,
    summary=summarise,
    claims=CLAIMS,
    allow_nan=("val_loss", "law_constant", "law_correlation", "law_explained",
               "law_constant_stderr", "control_constant", "control_correlation",
               "control_explained", "control_constant_stderr"),
)
