"""The fine-tuning-under-shift study's own pieces: the ID/OOD split, the measures of one
network, the rate choice, the derived measures and the declared claims."""

import math

import numpy as np
import pytest
import torch
import xarray as xr

from anglesim import study as st
from anglesim.claims import evaluate_claims
from anglesim.data import evaluation_grid
from anglesim.models import build_model
from anglesim.studies import finetune_shift as fs
from anglesim.studies.finetune_shift import analysis, measures


@pytest.mark.parametrize("n", [2, 8, 24, 48, 360])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_region_masks_split_any_even_grid_into_equal_halves(n, dtype):
    grid = evaluation_grid(n).to(dtype)
    masks = measures.region_masks(grid.numpy())
    assert masks["id"].sum() == masks["ood"].sum() == n // 2
    assert not (masks["id"] & masks["ood"]).any()
    assert masks["id"][0] and masks["ood"][n // 2]  # 0 is ID; π/2 itself is OOD
    # the same split whichever precision the grid was made in
    np.testing.assert_array_equal(masks["id"], measures.region_masks(
        grid.double().numpy())["id"])


def test_region_masks_put_pi_over_2_in_ood_at_float32_and_float64():
    for half in (np.float32(math.pi / 2), np.float64(math.pi / 2),
                 np.float64(np.float32(math.pi / 2))):
        theta = np.array([0.0, np.nextafter(half, 0, dtype=half.dtype) - 1e-3, half],
                         dtype=half.dtype)
        masks = measures.region_masks(theta)
        assert list(masks["ood"]) == [False, False, True]


def test_split_task_fine_tunes_on_the_id_half_only():
    for shift in measures.SHIFTS:
        task = measures.split_task(shift, 5.0)
        theta = np.linspace(0, math.pi, 181, endpoint=False)
        pdf = task.prior.pdf(theta)
        assert (pdf[theta < math.pi / 2] > 0).all() and (pdf[theta >= math.pi / 2] == 0).all()
        sample = task.prior.sample(2000, generator=torch.Generator().manual_seed(0))
        assert float(sample.max()) < math.pi / 2
    assert measures.split_task("input", 5.0).spec.frequency == 5.0
    assert measures.split_task("prior").offset == 0.0
    assert measures.split_task("output").offset == pytest.approx(math.pi / 4)
    with pytest.raises(ValueError, match="frequency"):
        measures.split_task("input")
    with pytest.raises(ValueError, match="shift must be one of"):
        measures.split_task("label")


def _net(seed=0):
    return build_model(fs.CNN, generator=torch.Generator().manual_seed(seed)).eval()


def test_feature_change_is_zero_for_the_parent_and_exact_for_a_scaled_block():
    parent = _net()
    images = torch.randn(32, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(measures.feature_change(parent, parent, images, fs.BLOCKS), 0)
    scaled = _net()
    with torch.no_grad():  # conv1's convolution, ReLU and pooling are positively homogeneous
        for p in scaled.blocks["conv1"].parameters():
            p.mul_(3.0)
    change = measures.feature_change(parent, scaled, images, ["conv1"])
    assert change[0] == pytest.approx(2.0, rel=1e-6)
    other = measures.feature_change(parent, _net(1), images, fs.BLOCKS)
    assert (other > 0.1).all()  # an unrelated network moved every block


class _Features:
    """A stand-in network whose fc features carry (cos 2θ, sin 2θ) or only noise, and whose
    head decodes θ + ``bias``."""

    def __init__(self, informative=True, bias=0.0):
        self.informative, self.bias = informative, bias

    def eval(self):
        return self

    def run_blocks(self, images, stop):
        theta = images[:, 0, 0, 0]
        noise = torch.randn(len(theta), 6, generator=torch.Generator().manual_seed(0))
        if not self.informative:
            return noise
        return torch.cat([torch.cos(2 * theta)[:, None], torch.sin(2 * theta)[:, None],
                          0.01 * noise], 1)

    def __call__(self, images):
        return images[:, 0, 0, 0]

    def decode(self, output):
        return torch.remainder(output + self.bias, math.pi)


def test_probe_and_decoding_error_know_the_answer():
    theta = torch.rand(400, generator=torch.Generator().manual_seed(1)) * math.pi
    images = theta[:, None, None, None].expand(400, 1, 2, 2)
    assert measures.probe_error(_Features(True), images, theta) < math.radians(1)
    assert measures.probe_error(_Features(False), images, theta) > math.radians(30)
    assert measures.decoding_error(_Features(bias=0.0), images, theta) == pytest.approx(0)
    # 0.1 rad off everywhere, wrapped at π: |θ̂ − y| = 0.1
    assert measures.decoding_error(_Features(bias=0.1), images, theta) == pytest.approx(
        0.1, abs=1e-6)
    assert measures.decoding_error(_Features(bias=math.pi - 0.1), images,
                                   theta) == pytest.approx(0.1, abs=1e-6)


def test_region_mean_and_interior_share():
    angle = evaluation_grid(8).double().numpy()
    inside = xr.DataArray(measures.region_masks(angle)["id"], dims="angle")
    error = xr.DataArray(np.r_[np.full(4, 1.0), np.full(4, 3.0)], dims="angle")
    out = analysis.region_mean(error, inside)
    assert float(out["id"]) == 1.0 and float(out["ood"]) == 3.0
    grid = np.array(fs.LRS)
    assert analysis.interior_share(np.array([grid[1], grid[2], grid[0], np.nan]),
                                   grid) == pytest.approx(2 / 3)
    assert analysis.interior_share(np.array([grid[0], grid[-1]]), grid) == 0.0
    assert math.isnan(analysis.interior_share(np.array([np.nan]), grid))


def test_rate_grid_and_sizes():
    grid = np.array(fs.SIZES["full"]["lrs"])
    assert len(grid) >= 5 and grid.max() / grid.min() >= 10 ** 2.5  # 2.5 decades
    assert fs.SIZES["full"]["replicates"] >= 10
    for size in fs.SIZES.values():
        assert size["n_angles"] % 2 == 0
        assert all(n % 8 == 0 for n in size["n_train"])


def test_finetune_phases_share_one_step_budget():
    sz = fs.SIZES["full"]
    for n in sz["n_train"]:
        ph = fs.finetune_phase(measures.split_task("output"), "lp_ft", n, 1e-3, sz)
        assert ph.dataset_size * 8 == n
        assert ph.epochs * n // sz["batch"] == sz["steps"] and ph.patience == ph.epochs
        assert ph.strategy_params["probe_epochs"] == ph.epochs // 2
        assert ph.task_list()[0].target_offset == pytest.approx(math.pi / 4)
        assert ph.prior.to_config() == measures.ID_PRIOR.to_config()


def test_fine_tune_reports_a_diverged_rate_as_nan(monkeypatch):
    def diverge(*args, **kwargs):
        raise FloatingPointError("loss became nan")

    monkeypatch.setattr(fs, "train", diverge)
    val, held, net, strategy = fs.fine_tune(
        _net(), (measures.split_task("prior"), "full", 16, 1.0, fs.SIZES["quick"]), 0,
        lambda n: 0.0, {})
    assert math.isnan(val) and math.isnan(held) and net is None and strategy is None


def test_choose_frequency_takes_the_first_rung_that_doubles_the_error(monkeypatch):
    def fake_error(slope):
        def fn(net, spec, *args, **kwargs):
            return xr.DataArray([0.01 * (1 + slope * (spec.frequency - 4.0))], dims="angle")
        return fn

    ctx = st.ReplicateContext({"shift": "input"}, 0, 0, fs.SIZES["full"])
    monkeypatch.setattr(fs, "evaluate_error", fake_error(1.0))  # doubles at f = 5
    f, errors, base, reached = fs.choose_frequency(None, ctx)
    assert (f, reached) == (5.0, True) and base == pytest.approx(0.01)
    assert np.isfinite(errors[:4]).all() and np.isnan(errors[4:]).all()
    monkeypatch.setattr(fs, "evaluate_error", fake_error(0.1))  # never doubles
    f, errors, _, reached = fs.choose_frequency(None, ctx)
    assert (f, reached) == (fs.FREQUENCY_LADDER[-1], False) and np.isfinite(errors).all()


# ---- the declared claims ----------------------------------------------------------------------


def test_every_strategy_is_compared_with_full_id_and_ood():
    primary = [c for c in fs.STUDY.claims if not c.exploratory]
    others = [s for s in fs.STRATEGIES if s != "full"]
    assert len(primary) == 2 * len(others)
    for c in primary:
        assert c.against == {"strategy": "full"} and c.paired and c.scale == "ratio"
        assert set(c.over) == {"shift", "n_train"}
        kumar = c.arm["strategy"] in ("linear_probe", "lp_ft") and c.measure == "ood_error"
        assert c.direction == ("less" if kumar else "differs")
    assert {(c.arm["strategy"], c.measure) for c in primary} == {
        (s, m) for s in others for m in ("id_error", "ood_error")}
    assert all(c.exploratory for c in fs.STUDY.claims if c not in primary)
    assert fs.STUDY.pair_axes == ("shift",)


def _synthetic(lp_factor, n=10, seed=0):
    """A Dataset shaped like the study's measures: full's OOD error log-normal around 0.5
    rad, linear_probe's ``lp_factor`` times it (with small paired noise), every other strategy
    equal to full."""
    rng = np.random.default_rng(seed)
    strategies = list(fs.STRATEGIES)
    base = 0.5 * np.exp(rng.normal(0, 0.3, size=(3, n, 1, 3)))
    ood = np.repeat(base, len(strategies), axis=2) * np.exp(
        rng.normal(0, 0.02, size=(3, n, len(strategies), 3)))
    ood[:, :, strategies.index("linear_probe")] *= lp_factor
    coords = {"shift": list(measures.SHIFTS), "replicate": np.arange(n),
              "strategy": strategies, "n_train": [16, 64, 256]}
    dims = ("shift", "replicate", "strategy", "n_train")
    ds = xr.Dataset({"ood_error": (dims, ood), "id_error": (dims, ood.copy()),
                     "failed": (("shift", "replicate"), np.zeros((3, n), bool))}, coords=coords)
    ds["ood_error"].attrs["units"] = ds["id_error"].attrs["units"] = "rad"
    return ds


def _records(ds, name):
    primary = [c for c in fs.STUDY.claims if not c.exploratory]
    return [r for r in evaluate_claims(ds, primary) if r.contrast == name]


def test_kumar_claim_is_supported_when_the_probe_errs_less_ood_and_contradicted_otherwise():
    better = _records(_synthetic(0.5), "linear_probe_vs_full_ood")
    assert len(better) == 9 and {r.verdict for r in better} == {"supported"}
    assert all(0.45 < r.estimate < 0.55 for r in better)
    assert better[0].family_size == 2 * 9 * 9
    worse = _records(_synthetic(2.0), "linear_probe_vs_full_ood")
    assert {r.verdict for r in worse} == {"contradicted"}
    same = _records(_synthetic(1.0), "linear_probe_vs_full_ood")
    assert {r.verdict for r in same} == {"unresolved"}
    # a strategy equal to full is not declared different
    assert {r.verdict for r in _records(_synthetic(0.5), "l2_sp_vs_full_ood")} == {
        "unresolved"}


# ---- the figure and the metadata ---------------------------------------------------------------


def full_shaped(seed=0):
    """A Dataset shaped like the full size's (3 shifts, its replicates, every strategy, its
    n_train and rates) with the variables the figure and summary read: the errors log-normal
    around the parent's, linear_probe's OOD error a third of full's, rates drawn from the
    grid's interior."""
    rng = np.random.default_rng(seed)
    sz = fs.SIZES["full"]
    strategies, sizes, lrs = list(fs.STRATEGIES), list(sz["n_train"]), list(sz["lrs"])
    n = sz["replicates"]
    cell = (len(measures.SHIFTS), n, len(strategies), len(sizes))
    dims = ("shift", "replicate", "strategy", "n_train")
    ood = 0.3 * np.exp(rng.normal(0, 0.4, cell))
    ood[:, :, strategies.index("linear_probe")] /= 3
    change = np.exp(rng.normal(-2, 0.3, cell + (len(measures.REGIONS), len(fs.BLOCKS))))
    change[:, :, strategies.index("linear_probe")] = 0.0  # a probe moves no feature
    ds = xr.Dataset(
        {"id_error": (dims, 0.03 * np.exp(rng.normal(0, 0.3, cell))),
         "ood_error": (dims, ood),
         "chosen_lr": (dims, rng.choice(lrs[1:-1], cell)),
         "feature_change": (dims + ("region", "block"), change),
         "shift_value": (("shift", "replicate"), np.full(cell[:2], 4.75)),
         "failed": (("shift", "replicate"), np.zeros(cell[:2], bool))},
        coords={"shift": list(measures.SHIFTS), "replicate": np.arange(n),
                "strategy": strategies, "n_train": sizes, "lr": lrs,
                "region": list(measures.REGIONS), "block": list(fs.BLOCKS)})
    for name in ("id_error", "ood_error"):
        ds[name].attrs["units"] = "rad"
    return ds


def test_the_figure_meets_the_standard_on_a_full_shaped_dataset(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anglesim.plotting import check_figure

    ds = full_shaped()
    fig = fs.plot_finetune_shift(ds)
    try:
        assert check_figure(fig, "double") == []
        titled = [ax for ax in fig.axes
                  if ax.get_visible() and (ax.get_title() or ax.get_title(loc="left"))]
        assert len(titled) == 8  # 6 contrasts, the rates, the mechanism (the colour bar has none)
        fig.savefig(tmp_path / "full.png")  # drawable at its printed size
    finally:
        plt.close(fig)
    n = fs.SIZES["full"]["replicates"]
    assert f"n = {n}" in fs.figure_caption(ds)
    rates = analysis.interior_share(ds["chosen_lr"], ds["lr"].values)
    assert rates == 1.0  # every synthetic choice is interior, and the panel's title says so


def test_every_variable_and_coordinate_has_units_and_a_long_name():
    ctx = st.ReplicateContext({"shift": "output"}, 0, 0, fs.SIZES["quick"])
    ds = fs.replicate(ctx)
    ds = ds.expand_dims(shift=["output"], replicate=[0]).assign(
        failed=(("shift", "replicate"), np.zeros((1, 1), bool)))
    ds = fs.STUDY.postprocess(ds)
    for name, var in ds.variables.items():
        assert var.attrs.get("units") is not None, name
        assert var.attrs.get("long_name"), name
    assert ds["chosen_lr"].attrs["long_name"].startswith("Adam learning rate")
    # the chosen rate is the one with the lowest validation loss, where the loss was finite
    best = ds["val_loss"].fillna(np.inf).argmin("lr")
    np.testing.assert_array_equal(ds["lr"].values[best.values], ds["chosen_lr"].values)
    assert {"id_error", "ood_error", "chosen_lr_interior"} <= set(ds.data_vars)
