"""The surgical sweep's parts: the exact one-block undo of inversion and of the output shift,
the step budget, the phases, the batched test error, the rate choice, the derived measures,
the declared family and its verdicts, and the figure at full size."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
import xarray as xr

from anglesim import angles as ang
from anglesim.claims import evaluate_claims
from anglesim.corruptions import corrupt
from anglesim.models import build_model
from anglesim.plotting import check_figure
from anglesim.stimuli import render
from anglesim.studies import surgical_sweep as ss
from anglesim.studies.surgical_sweep import analysis, figure

matplotlib.use("Agg")


def _net(seed: int = 0):
    return build_model(ss.CNN, generator=torch.Generator().manual_seed(seed)).eval()


# ---- the exact undo ----------------------------------------------------------------------------


def test_negating_conv1_undoes_inversion_exactly():
    net = _net()
    theta = torch.linspace(0, math.pi, 12)
    clean = ss.SPEC.replace(noise_std=0.0)
    source = render(theta, clean)
    inverted = render(theta, corrupt(clean, "invert"))
    torch.testing.assert_close(inverted, -source)
    undone = ss.undo_shift(net, "invert")
    with torch.no_grad():
        torch.testing.assert_close(undone(inverted), net(source))
        # without the undo the parent sees other inputs: its outputs differ
        assert (net(inverted) - net(source)).abs().max() > 1e-3
    # with noise: the undone network on −c + n computes the parent on c − n, exactly
    noisy = render(theta, corrupt(ss.SPEC, "invert"), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(undone(noisy), net(-noisy))
    # the parent itself is untouched
    assert not torch.equal(undone.blocks["conv1"][0].weight, net.blocks["conv1"][0].weight)


def test_turning_the_head_undoes_the_output_shift_exactly():
    net = _net(1)
    images = render(torch.linspace(0, math.pi, 16), ss.SPEC,
                    generator=torch.Generator().manual_seed(0))
    undone = ss.undo_shift(net, "output")
    with torch.no_grad():
        before = net.decode(net(images))
        after = undone.decode(undone(images))
    shifted = ang.difference(after, ang.wrap(before + math.pi / 4))
    assert shifted.abs().max() < 1e-5
    assert ss.undo_shift(net, "blur") is None and ss.undo_shift(net, "noise") is None


# ---- tasks, budget and phases --------------------------------------------------------------------


def test_tasks_at_their_fixed_severities():
    sev = {"blur": 1.5, "noise": 3.0}
    assert ss.shift_task("blur", sev).spec.blur == 1.5
    assert ss.shift_task("noise", sev).spec.noise_std == pytest.approx(3.0 * ss.SPEC.noise_std)
    assert ss.shift_task("invert", sev).spec.phase != ss.SPEC.phase
    out = ss.shift_task("output", sev)
    assert out.spec == ss.SPEC and out.offset == pytest.approx(math.pi / 4)
    with pytest.raises(ValueError, match="shift must be one of"):
        ss.shift_task("contrast", sev)


def test_what_each_shift_leaves_of_the_pixels_information():
    """Inversion keeps the pixels' FI, the noise ×2.5 divides it by 6.25, the blur (the
    grating's amplitude to exp(−2π²σ²/λ²) = 0.29) by about 1/0.29²."""
    from anglesim.fisher import propagated_fisher
    from anglesim.models import reference_mlp

    net = reference_mlp(image_size=32, hidden=(8, 4))
    angles = [0.3, 1.1, 2.0]

    def pixels(spec):
        return propagated_fisher(net, spec, angles, ["input"]).values.ravel()

    source = pixels(ss.SPEC)
    ratio = {s: pixels(ss.shift_task(s, ss.SEVERITY).spec) / source for s in ss.INPUT_SHIFTS}
    np.testing.assert_allclose(ratio["invert"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(ratio["noise"], 1 / 2.5**2, rtol=1e-5)
    amplitude = math.exp(-2 * math.pi**2 * 2.0**2 / 8.0**2)
    assert np.all((ratio["blur"] > 0.5 * amplitude**2) & (ratio["blur"] < 2 * amplitude**2))


@pytest.mark.parametrize("n, steps", [(16, 128), (64, 128), (256, 320), (512, 640), (24, 128)])
def test_budget_is_max_of_128_steps_and_20_epochs(n, steps):
    sz = ss.SIZES["full"]
    assert ss.finetune_steps(n, sz) == steps
    per_epoch = math.ceil(n / sz["batch"])
    assert steps % per_epoch == 0 and steps // per_epoch >= sz["min_epochs"]


@pytest.mark.parametrize("n", [16, 64, 256])
def test_arm_phases(n):
    sz = ss.SIZES["full"]
    task = ss.shift_task("output", sz["severity"])
    epochs = ss.finetune_steps(n, sz) * sz["batch"] // n
    for arm in ss.BLOCKS:
        ph = ss.arm_phase(task, arm, n, 1e-3, sz)
        assert ph.strategy == "surgical" and ph.strategy_params == {"blocks": [arm]}
    ph = ss.arm_phase(task, "lp_ft", n, 3e-3, sz)
    assert ph.strategy_params == {"probe_lr_scale": 10.0, "probe_epochs": epochs // 2}
    assert ph.epochs == epochs and ph.patience == epochs  # no early stop: the best checkpoint
    assert ph.dataset_size * 8 == n  # n training and n/4 validation images
    assert ph.lr == 3e-3 and ph.optimizer == "adam" and ph.eval_angles == 1
    assert ph.task_list()[0].target_offset == pytest.approx(math.pi / 4)
    assert ss.arm_phase(task, "full", n, 1e-3, sz).strategy == "full"
    assert ss.arm_phase(task, "l2_sp", n, 1e-3, sz).strategy_params == {"alpha": 0.01}


def test_rate_grid_spans_three_decades_in_half_decades():
    lrs = ss.SIZES["full"]["lrs"]
    assert max(lrs) / min(lrs) >= 1000 and lrs == sorted(lrs) and len(lrs) >= 7
    steps = np.diff(np.log10(lrs))
    assert np.all((steps > 0.45) & (steps < 0.55))  # no gap wider than half a decade


# ---- test error and the rate choice -------------------------------------------------------


class Shifted(torch.nn.Module):
    """A fake network whose θ̂ is the image's first pixel plus ``delta``."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(len(x))
        return x[:, 0, 0, 0]

    def decode(self, out):
        return ang.wrap(out + self.delta)


@pytest.mark.parametrize("delta", [0.0, 0.1, -0.3, 1.4])
def test_error_on_is_the_batched_mean_absolute_wrapped_error(delta):
    theta = torch.rand(1000, generator=torch.Generator().manual_seed(0)) * math.pi
    images = theta[:, None, None, None].expand(1000, 1, 2, 2)
    net = Shifted(delta)
    expected = min(abs(delta), math.pi - abs(delta))
    assert ss.error_on(net, images, theta, chunk=300) == pytest.approx(expected, abs=1e-5)
    assert net.calls == [300, 300, 300, 100]  # batched, never one image at a time


def test_test_set_targets_carry_the_offset():
    task = ss.shift_task("output", ss.SEVERITY)
    images, targets = ss.render_test_set(task, 8, 3, torch.Generator().manual_seed(0))
    assert images.shape == (24, 1, 32, 32)
    theta = torch.arange(8) * math.pi / 8
    torch.testing.assert_close(targets, ang.wrap(theta.repeat(3) + math.pi / 4))


def test_a_diverging_rate_is_never_chosen(monkeypatch):
    def diverge(*args, **kwargs):
        raise FloatingPointError("loss became nan")

    monkeypatch.setattr(ss, "train", diverge)
    val, where, net = ss.fit(_net(), ss.shift_task("blur", ss.SEVERITY), "full", 16, 1e-2,
                             ss.SIZES["quick"], 0, {})
    assert math.isnan(val) and math.isnan(where) and net is None


def test_fit_returns_the_best_checkpoint_and_where_it_fell():
    sz = ss.SIZES["quick"]
    val, where, net = ss.fit(_net(), ss.shift_task("noise", ss.SEVERITY), "head", 16, 1e-2,
                             sz, 0, {})
    epochs = ss.finetune_steps(16, sz) * sz["batch"] // 16
    assert math.isfinite(val) and 0 < where <= 1 and round(where * epochs) == where * epochs
    assert net is not None


# ---- measures, claims and figure on a full-size-shaped Dataset ----------------------------


def _dataset(effect: dict[str, float] | None = None, replicates: int = 10,
             seed: int = 0, sizes: list[int] | None = None) -> xr.Dataset:
    """A Dataset shaped like the full run (or with the fine-tuning sizes ``sizes``): test
    errors log-normal around 2° with the given per-arm factor under every shift."""
    rng = np.random.default_rng(seed)
    sz = ss.SIZES["full"]
    sizes = sz["n_train"] if sizes is None else sizes
    shifts, arms, lrs = list(ss.SHIFTS), list(ss.STRATEGIES), sz["lrs"]
    shape = (len(shifts), replicates, len(sizes), len(arms))
    base = math.radians(2.0) * np.exp(0.3 * rng.standard_normal(shape[:3]))[..., None]
    error = base * np.exp(0.05 * rng.standard_normal(shape))
    for name, factor in (effect or {}).items():
        error[:, :, :, arms.index(name)] *= factor
    chosen = np.asarray(lrs)[rng.integers(1, len(lrs) - 1, shape)]
    chosen[0, 0, 0, :] = lrs[-1]  # some at the ends
    chosen[1, 0, 0, :] = lrs[0]
    dims = ("shift", "replicate", "n_train", "strategy")
    ds = xr.Dataset(
        {"test_error": (dims, error, {"units": "rad"}),
         "chosen_lr": (dims, chosen),
         "best_step_fraction": (dims, rng.uniform(0.1, 1.0, shape)),
         "parent_error": (("shift", "replicate"), np.full(shape[:2], math.radians(15))),
         "parent_source_error": (("shift", "replicate"), np.full(shape[:2], math.radians(1.3))),
         "undo_error": (("shift", "replicate"),
                        np.where(np.isin(shifts, ["invert", "output"])[:, None],
                                 math.radians(1.3), np.nan) * np.ones(shape[:2])),
         "failed": (("shift", "replicate"), np.zeros(shape[:2], dtype=bool))},
        coords={"shift": shifts, "replicate": np.arange(replicates), "n_train": sizes,
                "strategy": arms, "lr": lrs},
    )
    return analysis.add_measures(ds)


def test_measures_interior_share_and_log_ratio():
    ds = _dataset({"conv1": 0.5})
    ratio = ds["log2_error_ratio"]
    np.testing.assert_allclose(ratio.sel(strategy="full"), 0.0)
    assert float(ratio.sel(strategy="conv1").mean()) == pytest.approx(-1.0, abs=0.05)
    interior = ds["lr_interior"]
    assert float(interior.isel(shift=0, replicate=0, n_train=0).sum()) == 0  # top of the grid
    assert float(interior.isel(shift=1, replicate=0, n_train=0).sum()) == 0  # bottom
    total = interior.size
    assert float(interior.sum()) == total - 2 * len(ss.STRATEGIES)
    report = analysis.rate_report(ds)[0]
    assert f"{total - 14}/{total}" in report and "at the lowest 7, at the highest 7" in report


def test_the_declared_family_has_one_member_per_shift_and_n_and_decides_both_ways():
    primary = [c for c in analysis.CLAIMS if not c.exploratory]
    records = evaluate_claims(_dataset({"conv1": 0.7, "head": 0.7, "l2_sp": 1.3}, sizes=[64]),
                              analysis.CLAIMS)
    family = [r for r in records if r.verdict != "exploratory"]
    assert len(family) == 24 == 3 + 1 + 1 + 3 + 4 + 4 + 4 + 4
    assert {r.family_size for r in family} == {24}  # Holm over the whole family
    assert {c.name for c in primary} == {"conv1_input", "head_output", "conv1_output",
                                         "head_input", "conv2", "fc", "lp_ft", "l2_sp"}
    verdict = {r.name: r.verdict for r in family}
    assert all(verdict[f"conv1_input[shift={s}, n_train=64]"] == "supported"
               for s in ("invert", "blur", "noise"))
    assert verdict["head_output[n_train=64]"] == "supported"
    assert all(verdict[f"l2_sp[shift={s}, n_train=64]"] == "supported" for s in ss.SHIFTS)
    assert verdict["fc[shift=blur, n_train=64]"] == "unresolved"  # no effect
    assert verdict["lp_ft[shift=output, n_train=64]"] == "unresolved"
    # the opposite effect contradicts Lee et al.'s direction
    records = evaluate_claims(_dataset({"conv1": 1.5}, seed=1, sizes=[64]), analysis.CLAIMS)
    verdict = {r.name: r.verdict for r in records}
    assert verdict["conv1_input[shift=noise, n_train=64]"] == "contradicted"
    assert verdict["conv1_output[n_train=64]"] == "supported"  # two-sided: a difference
    # the full size's three fine-tuning sets: one member per shift × n, Holm over all 72
    assert ss.SIZES["full"]["n_train"] == [16, 64, 256]
    records = evaluate_claims(_dataset(), analysis.CLAIMS)
    family = [r for r in records if r.verdict != "exploratory"]
    assert len(family) == 72 and {r.family_size for r in family} == {72}


@pytest.mark.parametrize("replicates, sizes", [(2, None), (10, None), (10, [64])])
def test_figure_meets_the_standard(replicates, sizes):
    import matplotlib.pyplot as plt

    ds = _dataset({"conv1": 0.8}, replicates=replicates, sizes=sizes)
    fig = figure.plot_surgical_sweep(ds)
    assert check_figure(fig, "double") == []
    plt.close(fig)
    text = figure.figure_caption(ds)
    assert f"n = {replicates} pairs" in text and "95%" in text


def test_summary_reports_outliers_and_rates():
    ds = _dataset()
    ds["test_error"].loc[{"shift": "blur", "n_train": 64, "strategy": "full",
                          "replicate": 3}] = math.radians(40)
    text = analysis.summarise(ds)
    assert "full fine-tuning outliers" in text and "chosen rates interior" in text
    assert "shift output" in text and "exactly undone" in text
