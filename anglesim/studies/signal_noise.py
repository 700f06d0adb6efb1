"""Signal or noise: does fine-tuning raise a layer's FI through its tuning or its covariance?

Cheng et al. (2025, Nat Hum Behav 9:1023) found that perceptual learning in a CNN raised
discriminability mainly by shrinking trial-to-trial variability, not by sharpening tuning.
Here a parent CNN is pretrained on the uniform prior (the fine-tuning-under-shift study's
parent) and copies of it are fine-tuned on the prior shift (angles from a von Mises prior at
90°, κ = 4: practice concentrated around one orientation) with several strategies
(:mod:`anglesim.finetune`; the shift study's phases, at one n_train and one learning rate, the
same for every strategy: no rate is selected per run).
At each block and angle the linear FI J = f′ᵀ(Σ + ridge)⁻¹f′ of the propagated pixel noise
(f′ = A ẋ, Σ = A Σ_x Aᵀ) is split (:func:`anglesim.laws.signal_noise_split`) into
``delta_signal`` = log₂ J(f′_ft, Σ_pre)/J_pre (tuning changed, covariance kept),
``delta_noise`` = log₂ J(f′_pre, Σ_ft)/J_pre and the ``delta_interaction`` that the two leave
of ``delta_total``; ``*_prior`` weights each by the fine-tuning prior over the split's angles.

The ridge (relative, :data:`EPS`) is what keeps J(f′_ft, Σ_pre) finite where Σ is singular: a
block with at least as many units as pixels (conv1: 2,048 units on 1,024 pixels; conv2 1,024)
has rank(Σ) < N, and a fine-tuned f′ need not lie in the pretrained Σ's range; there the two
one-sided terms are set by the ridge, and only their sum (the total) is not. fc's covariance is
singular too (the previous run's one-sided terms there were +1 to +6 log₂ with intervals up to
±12), so the split is identified in the 2-unit ``head`` only.

**Design.** Every strategy fine-tunes a copy of each replicate's parent on the same data and
batches, and the four terms are computed on the same networks, so every comparison between
strategies or terms is paired by replicate. The declared claims (:data:`CLAIMS`, Holm over the
family of 7):

* ``fi_rises`` (fc and head, full fine-tuning): the prior-weighted total change of FI is > 0
  (one-sample t test of the log₂ ratio against 0);
* ``noise_over_signal`` (head, each of the five strategies): Cheng et al.'s finding, the
  covariance (Σ) term exceeds the tuning (f′) term (paired by replicate; a verdict
  "contradicted" says the tuning term is the larger);
* exploratory: the same comparison in fc, where the ridge sets both terms.

**Sizes.** Full: 12 replicates (≥ 8 pairs for the contrasts between terms; 45 CPU s each, so
about 4.5 min on 2 workers), the shift study's pretraining and fine-tuning phases at n_train 256
and lr 10⁻³, the split on 8 angles (every 22.5°, which holds the prior's peak at 90°). Quick: 2
replicates, 3 strategies, 2 angles (a smoke test; its claims are unresolved, two strategies
"not in this run").

Run: ``anglesim run signal_noise [--quick]``.
"""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from anglesim.claims import Contrast
from anglesim.data import evaluation_grid
from anglesim.laws import signal_noise_split
from anglesim.plotting import (
    caption,
    interval_bars,
    mean_ci,
    paired_difference,
    panel_letters,
    print_figure,
    print_style,
    successful,
)
from anglesim.study import ReplicateContext, Study
from anglesim.training import evaluate_error, train

from ._recipes import (
    CNN,
    PRIOR_SHIFT,
    SHIFT_SIZES,
    SPEC,
    finetune_phase,
    labelled,
    pretrain_phase,
    pretrained_parent,
    shifted_task,
)
from ._recipes import (
    STRATEGIES as SHIFT_STRATEGIES,
)

NAME = "signal_noise"
STRATEGIES = ("full", "linear_probe", "lp_ft", "surgical", "l2_sp")
"""Strategies from the shift study's table (its parameters; ``surgical`` tunes conv1)."""
LAYERS = ("conv1", "conv2", "fc", "head")
TERMS = ("delta_total", "delta_signal", "delta_noise", "delta_interaction")
PARTS = ("total", "signal", "noise", "interaction")
"""The terms' short names (the ``part`` dim of :func:`prior_split`)."""
EPS = 1e-3
"""Relative ridge of every J: ε · tr(Σ)/N added to Σ's diagonal."""

SIZES = {
    "full": dict(SHIFT_SIZES["full"], n_train=256, lr=1e-3, n_split_angles=8,
                 strategies=list(STRATEGIES), replicates=12),
    "quick": dict(SHIFT_SIZES["quick"], n_train=16, lr=1e-3, n_split_angles=2,
                  strategies=["full", "linear_probe", "surgical"], replicates=2),
}
"""The shift study's sizes (pretraining, steps, batch) with one n_train and one rate; the
split's angle grid (8: every 22.5°, which holds the prior's peak at 90°) and 12 replicates (the
split is about 0.5 s per network and angle, mostly conv1's 2,048 × 2,048 covariance)."""


def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Pretrain a parent, fine-tune a copy with each strategy, split each block's FI change."""
    sz = ctx.params
    task = shifted_task(str(ctx.condition["shift"]))
    parent = pretrained_parent(ctx, sz, ctx.stream_seed("data"))
    nets = {}
    for name in sz["strategies"]:
        net = copy.deepcopy(parent)
        train(net, [finetune_phase(task, name, sz["n_train"], sz["lr"], sz)],
              ctx.stream_seed("data", 1))  # the same data and batches for every strategy
        nets[name] = net.eval()
    grid = evaluation_grid(sz["n_split_angles"]).double().numpy()
    split = signal_noise_split(parent, nets, task.spec, grid, list(LAYERS),
                               sigma=task.spec.noise_std, eps=EPS, dim="strategy")
    n_eval = sz["n_angles"]

    def error(net) -> np.ndarray:
        return evaluate_error(net, task.spec, n_eval, sz["error_repeats"],
                              ctx.generator("eval")).values

    errs = np.stack([error(nets[s]) for s in nets])
    w = task.prior.pdf(ctx.angles.double().numpy())
    ds = split.rename(angle="split_angle")
    ds["id_error"] = (("strategy",), (errs * w).sum(1) / w.sum(),
                      {"units": "rad", "long_name": "error on the fine-tuning task, weighted "
                       "by its prior"})
    ds["parent_id_error"] = ((), float((error(parent) * w).sum() / w.sum()),
                             {"units": "rad", "long_name": "the parent's error there"})
    ds["prior_density"] = (("split_angle",), task.prior.pdf(grid),
                           {"units": "1/rad", "long_name": "fine-tuning prior density"})
    return ds


# ---- derived measures ------------------------------------------------------------------------

LABELS = {
    "shift": ("1", "kind of distribution shift fine-tuned on (the prior shift)"),
    "strategy": ("1", "fine-tuning strategy (anglesim.finetune)"),
    "split_angle": ("rad", "orientation θ at which the FI change is split"),
    "term": ("1", "which J: pretrained, fine-tuned, f' changed only (signal_only) or Sigma "
                  "changed only (noise_only)"),
    "delta_total": ("1", "log2 ratio of the fine-tuned to the pretrained linear FI, "
                         "J_ft / J_pre"),
    "delta_signal": ("1", "log2 ratio J(f'_ft, Sigma_pre) / J_pre (tuning changed, "
                          "covariance kept)"),
    "delta_noise": ("1", "log2 ratio J(f'_pre, Sigma_ft) / J_pre (covariance changed, "
                         "tuning kept)"),
    "delta_interaction": ("1", "log2 interaction: delta_total - delta_signal - delta_noise"),
}
"""Units and long names of the study's variables and coordinates (each ``*_prior`` takes its
term's, weighted by the fine-tuning prior)."""


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """Each term weighted by the fine-tuning prior over the split's angles (``*_prior``), and
    units and long names on every variable."""
    ok = successful(ds)
    w = xr.DataArray(PRIOR_SHIFT.pdf(ok["split_angle"].values), dims="split_angle",
                     coords={"split_angle": ok["split_angle"]})
    out = ds.assign({f"{t}_prior": (ok[t] * w).sum("split_angle") / w.sum() for t in TERMS})
    for name, (units, long_name) in LABELS.items():
        out[name].attrs.update(units=units, long_name=long_name)
        if name in TERMS:
            out[f"{name}_prior"].attrs = {
                "units": units,
                "long_name": f"{long_name}, mean over the split's angles weighted by the "
                             "fine-tuning prior"}
    return labelled(out, {})


def prior_split(ds: xr.Dataset) -> xr.DataArray:
    """The four prior-weighted log₂ terms along a ``part`` dim (total, signal, noise,
    interaction): the measure the claims compare terms on."""
    out = xr.concat([ds[f"{t}_prior"] for t in TERMS], dim="part").assign_coords(
        part=list(PARTS))
    out.attrs = {"units": "1", "long_name": "log2 FI change, prior-weighted"}
    return out


# ---- the declared claims ---------------------------------------------------------------------

CLAIMS = [
    Contrast(name="fi_rises", statement="full fine-tuning on the prior shift raises the "
             "prior-weighted linear FI about θ in fc and in the head (log2 ratio > 0)",
             measure="delta_total_prior", against=0.0,
             where={"shift": "prior", "strategy": "full", "layer": ["fc", "head"]},
             over=["layer"], direction="greater"),
    Contrast(name="noise_over_signal", statement="in the head (full-rank covariance), the "
             "covariance (Sigma) term of the FI change exceeds the tuning (f') term, as Cheng "
             "et al. (2025) found for perceptual learning, for every strategy",
             measure=prior_split, label="prior_split", arm={"part": "noise"},
             against={"part": "signal"}, paired=True,
             where={"shift": "prior", "layer": "head"},
             over=["strategy"], direction="greater"),
    Contrast(name="noise_over_signal_fc", statement="in fc, where the ridge sets both "
             "one-sided terms, the covariance term against the tuning term",
             measure=prior_split, label="prior_split", arm={"part": "noise"},
             against={"part": "signal"}, paired=True,
             where={"shift": "prior", "layer": "fc"},
             over=["strategy"], direction="differs", exploratory=True),
]
"""The planned contrasts (module docstring)."""


# ---- summary and figure ----------------------------------------------------------------------


def describe(params: dict, grid: dict) -> dict:
    """What the Dataset's config records besides the sizes."""
    task = shifted_task("prior")
    return {"spec": SPEC.to_config(), "model": CNN.to_config(), "eps": EPS,
            "strategies": {s: SHIFT_STRATEGIES[s] for s in params["strategies"]},
            "pretrain": pretrain_phase(params).to_config(),
            "finetune_example": finetune_phase(
                task, "full", params["n_train"], params["lr"], params).to_config()}


def summarise(ds: xr.Dataset) -> str:
    """Per strategy and block: the four log₂ terms weighted by the fine-tuning prior, mean and
    95% t interval over replicates (the claims table follows, from the runner), and the
    caption."""
    if "delta_total_prior" not in ds:
        ds = add_measures(ds)
    ok = successful(ds).isel(shift=0)
    n = int(ok["id_error"].isel(strategy=0).count())
    lines = [f"log2 FI change after fine-tuning on the prior shift, weighted by its prior "
             f"(mean ± 95% t interval over {n} replicates; ridge eps={EPS:g}):",
             "  strategy       block   total            signal (f')      noise (Σ)        "
             "interaction"]
    pm, ph = mean_ci(np.degrees(ok["parent_id_error"]))
    for s in ok["strategy"].values:
        m, h = mean_ci(np.degrees(ok["id_error"].sel(strategy=s)))
        lines.append(f"  {s}: ID error {float(m):.2f} ± {float(h):.2f}° (parent "
                     f"{float(pm):.2f} ± {float(ph):.2f}°)")
        for layer in ok["layer"].values:
            cells = []
            for t in TERMS:
                m, h = mean_ci(ok[f"{t}_prior"].sel(strategy=s, layer=layer))
                cells.append(f"{float(m):+7.3f} ± {float(h):6.3f}")
            lines.append(f"  {'':14} {layer:>6}  " + "  ".join(cells))
    lines.append("caption: " + figure_caption(ds))
    return "\n".join(lines)


def figure_caption(ds: xr.Dataset) -> str:
    """The figure's caption: what it shows, then its intervals and n
    (:func:`anglesim.plotting.caption`)."""
    fig = figure(ds)
    try:
        return caption(fig, (
            "Signal or noise: CNNs pretrained on uniform orientations, copies fine-tuned on a "
            "von Mises prior at 90° (κ = 4) with each strategy; log₂ change of the linear FI, "
            "weighted by the fine-tuning prior over "
            f"{ds.sizes['split_angle']} angles, split into the tuning (f′, covariance kept), "
            f"covariance (Σ, tuning kept) and interaction terms (ridge ε = {EPS:g}). (a) Head "
            "and (b) fc, per strategy; (c) Σ term minus f′ term in the head, paired by "
            "replicate; (d) the total change per block."))
    finally:
        plt.close(fig)


TERM_COLOURS = {"total": "0.1", "signal": "#2166ac", "noise": "#b2182b",
                "interaction": "0.6"}
STRATEGY_LABELS = {"full": "full", "linear_probe": "LP", "lp_ft": "LP-FT",
                   "surgical": "surgical", "l2_sp": "L2-SP"}


def _terms(ax, ok: xr.Dataset, layer: str, strategies: list[str]) -> None:
    """The four prior-weighted terms per strategy as points with 95% t intervals."""
    pos = np.arange(len(strategies), dtype=float)
    for k, (part, t) in enumerate(zip(PARTS, TERMS, strict=True)):
        interval_bars(ax, pos + (k - 1.5) * 0.18, ok[f"{t}_prior"].sel(layer=layer),
                      TERM_COLOURS[part], part if part != "total" else "total (J_ft/J_pre)",
                      ms=3, capsize=1.5, fmt="o" if part == "total" else "s")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xticks(pos, [STRATEGY_LABELS.get(s, s) for s in strategies])
    ax.set_xlim(-0.6, len(strategies) - 0.4)
    ax.set_xlabel("strategy")
    ax.set_ylabel("log₂ FI change (1)")


def figure(ds: xr.Dataset) -> plt.Figure:
    """Signal or noise: (a) the head's and (b) fc's prior-weighted log₂ FI change per strategy,
    split into the tuning (f′), covariance (Σ) and interaction terms, with the total (points
    with 95% t intervals over replicates); (c) the Σ term minus the f′ term in the head, per
    replicate (paired) with the mean and its paired 95% t interval (the claim's test); (d) the
    total change per block and strategy."""
    if "delta_total_prior" not in ds:
        ds = add_measures(ds)
    ok = successful(ds).isel(shift=0)
    strategies = [str(s) for s in ok["strategy"].values]
    layers = [str(v) for v in ok["layer"].values]
    with print_style():
        fig, axes = print_figure(2, 2, width="double", aspect=0.62)
        ax = axes[0, 0]
        _terms(ax, ok, "head", strategies)
        ax.set_title("head: split of the FI change")
        ax = axes[0, 1]
        _terms(ax, ok, "fc", strategies)
        if float(np.nanmax(np.abs(ok["delta_signal_prior"].sel(layer="fc")))) > 4:
            ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title("fc (one-sided terms set by the ridge)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="term")

        ax = axes[1, 0]
        split = prior_split(ok).sel(layer="head")
        paired_difference(ax, split.sel(part="signal", drop=True),
                          split.sel(part="noise", drop=True), colour="#b2182b",
                          connect=False)
        ax.set_xticks(np.arange(len(strategies)),
                      [STRATEGY_LABELS.get(s, s) for s in strategies])
        ax.set_xlabel("strategy")
        ax.set_ylabel("Σ term − f′ term (log₂, 1)")
        ax.set_title("head: covariance against tuning (paired)")

        ax = axes[1, 1]
        pos = np.arange(len(layers), dtype=float)
        colours = plt.get_cmap("tab10")
        for k, s in enumerate(strategies):
            interval_bars(ax, pos + (k - (len(strategies) - 1) / 2) * 0.14,
                          ok["delta_total_prior"].sel(strategy=s, layer=layers),
                          colours(k), STRATEGY_LABELS.get(s, s), ms=3, capsize=1.5)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xticks(pos, layers)
        ax.set_xlabel("block")
        ax.set_ylabel("log₂ J_ft / J_pre (1)")
        ax.set_title("total change per block")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="strategy")
        panel_letters(fig)
    return fig


STUDY = Study(
    name=NAME,
    question="Does fine-tuning raise a layer's FI through its tuning f' or its covariance "
             "Sigma (Cheng et al. 2025)?",
    replicate=replicate,
    sizes=SIZES,
    grid={"shift": ["prior"]},
    describe=describe,
    postprocess=add_measures,
    figure=figure,
    summary=summarise,
    claims=CLAIMS,
)
