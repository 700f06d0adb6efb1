"""Training targets other than θ: per-image contrast/frequency, scalar heads, multitask phases."""

import copy
import math

import numpy as np
import pytest
import torch
import xarray as xr

from anglesim.data import draw, draw_varied
from anglesim.distributions import Uniform
from anglesim.evaluate import evaluate_target_error, standardise
from anglesim.losses import get_loss
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec, render
from anglesim.training import Phase, Task, train


def gen(seed):
    return torch.Generator().manual_seed(seed)


SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)
CONFIG = CNNConfig(image_size=16, channels=(4,), kernel_size=3, fc_units=16, readout="cossin")
CONTRAST = {"contrast": (0.2, 1.0)}


def small_model(seed=0, head="contrast"):
    torch.manual_seed(seed)
    model = build_model(CONFIG)
    model.add_head(head, readout="scalar")
    return model


def phase(name="p", **kw):
    base = dict(prior=Uniform(), spec=SPEC, epochs=2, steps_per_epoch=3, batch_size=8,
                eval_angles=8, eval_repeats=1, vary=dict(CONTRAST))
    base.update(kw)
    return Phase(name, **base)


# ---- rendering with per-image contrast and frequency ---------------------------------------


@pytest.mark.parametrize("spec", [
    GratingSpec(noise_std=1.0),
    GratingSpec(frequency=3.7, contrast=0.77, phase=None, noise_std=0.5, shot_prob=0.1,
                extent=2.3),
    GratingSpec.reference(),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_image_values_equal_to_the_spec_reproduce_render_bit_for_bit(spec, dtype):
    theta = torch.linspace(0, math.pi, 13, dtype=dtype)
    a = render(theta, spec, gen(1))
    same = dict(contrasts=torch.full((13,), spec.contrast, dtype=torch.float64),
                frequencies=np.full(13, spec.frequency))
    b = render(theta, spec, gen(1), **same)
    c = render(theta, spec, gen(1), contrasts=spec.contrast,
               frequencies=spec.frequency)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_per_image_values_match_single_renders_with_that_spec():
    theta = torch.tensor([0.1, 1.0, 2.0, 3.0], dtype=torch.float64)
    contrasts = [0.0, 0.3, 1.0, 2.5]
    frequencies = [1.5, 3.0, 4.25, 6.0]
    batch = render(theta, SPEC, noise=False, contrasts=contrasts, frequencies=frequencies)
    for i in range(4):
        one = render(theta[i:i + 1], SPEC.replace(contrast=contrasts[i],
                                                  frequency=frequencies[i]), noise=False)
        torch.testing.assert_close(batch[i:i + 1], one, rtol=0, atol=1e-12)


def test_shot_noise_uses_each_images_own_contrast():
    spec = GratingSpec(size=16, shot_prob=1.0)
    img = render(torch.zeros(2), spec, gen(0), contrasts=[0.25, 2.0])
    assert set(img[0].abs().unique().tolist()) == {0.25}
    assert set(img[1].abs().unique().tolist()) == {2.0}


def test_render_stays_differentiable_in_theta_with_per_image_values():
    theta = torch.tensor([0.3, 1.2], dtype=torch.float64, requires_grad=True)
    kw = dict(contrasts=[0.5, 1.5], frequencies=[2.0, 5.0], noise=False)
    img = render(theta, SPEC, **kw)
    (grad,) = torch.autograd.grad(img.sum(), theta)
    h = 1e-6
    fd = (render(theta.detach() + h, SPEC, **kw) - render(theta.detach() - h, SPEC, **kw))
    fd = fd.sum(dim=(1, 2, 3)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kw, name", [
    (dict(contrasts=[-0.1, 1.0]), "contrasts"),
    (dict(contrasts=[1.0, float("nan")]), "contrasts"),
    (dict(contrasts=[1.0, 1.0, 1.0]), "contrasts"),
    (dict(frequencies=[0.0, 1.0]), "frequencies"),
    (dict(frequencies="high"), "frequencies"),
])
def test_render_validates_per_image_values(kw, name):
    with pytest.raises(ValueError, match=name):
        render(torch.zeros(2), SPEC, **kw)


# ---- targets and losses --------------------------------------------------------------------


def test_standardised_target_has_zero_mean_unit_variance_under_its_uniform():
    y = 0.2 + 0.8 * torch.rand(200_000, generator=gen(3), dtype=torch.float64)
    z = standardise(y, 0.2, 1.0)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.var()) - 1.0) < 0.01


def test_target_loss_is_minimal_at_the_truth_and_one_for_the_mean():
    loss = get_loss("mse", "scalar")
    y = 0.2 + 0.8 * torch.rand(4096, generator=gen(4), dtype=torch.float64)
    z = standardise(y, 0.2, 1.0)
    assert float(loss(z[:, None], z)) == 0.0
    shifts = torch.linspace(-1, 1, 21, dtype=torch.float64)
    values = torch.stack([loss(z[:, None] + s, z) for s in shifts])
    assert int(values.argmin()) == 10 and bool((values[[0, -1]] > values[10]).all())
    assert float(loss(torch.zeros(4096, 1, dtype=torch.float64), z)) == pytest.approx(1, abs=0.05)


def test_draw_varied_without_vary_is_draw():
    a = draw(Uniform(), SPEC, 6, gen(5))
    b = draw_varied(Uniform(), SPEC, 6, None, gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and b[2] == {}


def test_draw_varied_renders_with_its_values():
    vary = {"contrast": (0.5, 1.5), "frequency": (2.0, 4.0)}
    images, angles, values = draw_varied(Uniform(), SPEC, 64, vary, gen(6))
    assert set(values) == {"contrast", "frequency"}
    assert bool(((values["contrast"] >= 0.5) & (values["contrast"] <= 1.5)).all())
    assert bool(((values["frequency"] >= 2.0) & (values["frequency"] <= 4.0)).all())
    assert float(values["contrast"].std()) > 0.2  # varies per image
    clean = render(angles, SPEC, noise=False, contrasts=values["contrast"],
                   frequencies=values["frequency"])
    noise = images - clean
    assert abs(float(noise.std()) - SPEC.noise_std) < 0.02  # the rest is the spec's noise


# ---- training ------------------------------------------------------------------------------


def test_scalar_head_learns_contrast_well_above_chance():
    model = small_model()
    before = evaluate_target_error(model, SPEC, "contrast", "contrast", *CONTRAST["contrast"],
                                   n_angles=8, repeats=8, generator=gen(9))
    train(model, [phase(epochs=4, steps_per_epoch=40, batch_size=32, lr=3e-3,
                        tasks=[Task(head="contrast", target="contrast", loss="mse")])], seed=0)
    err = evaluate_target_error(model, SPEC, "contrast", "contrast", *CONTRAST["contrast"],
                                n_angles=8, repeats=8, generator=gen(9))
    chance = err.attrs["chance"]
    assert chance == pytest.approx(0.8 / math.sqrt(12))
    assert float(err.mean()) < 0.4 * chance, (float(err.mean()), chance)
    assert float(err.mean()) < float(before.mean())


def test_scalar_head_learns_frequency_above_chance():
    model = small_model(head="freq")
    vary = {"frequency": (2.0, 4.0)}
    train(model, [phase(epochs=4, steps_per_epoch=40, batch_size=32, lr=3e-3, vary=vary,
                        tasks=[Task(head="freq", target="frequency", loss="mse")])], seed=1)
    err = evaluate_target_error(model, SPEC, "freq", "frequency", 2.0, 4.0, n_angles=8,
                                repeats=8, generator=gen(9))
    assert float(err.mean()) < 0.6 * err.attrs["chance"]


def test_evaluate_target_error_of_a_constant_head_is_the_spread_of_the_levels():
    model = small_model()
    with torch.no_grad():
        for p in model.heads["contrast"].parameters():
            p.zero_()
    err = evaluate_target_error(model, SPEC, "contrast", "contrast", 0.2, 1.0, n_angles=4,
                                repeats=4)
    levels = 0.2 + (np.arange(4) + 0.5) * 0.2
    np.testing.assert_allclose(err.values, np.sqrt(np.mean((levels - 0.6) ** 2)), rtol=1e-6)
    assert err.dims == ("angle",) and err.sizes["angle"] == 4


def test_only_the_scalar_head_trains_when_the_trunk_is_frozen():
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    train(model, [phase(trainable=["contrast"], weight_decay=0.1,
                        tasks=[Task(head="contrast", target="contrast", loss="mse")])], seed=2)
    for key, value in model.state_dict().items():
        if key.startswith("heads.contrast"):
            assert not torch.equal(before[key], value), key
        else:
            assert torch.equal(before[key], value), key


def test_joint_phase_trains_trunk_and_both_heads_and_weight_zero_ignores_the_target():
    tasks = [Task(head="head", loss="cosine"),
             Task(head="contrast", target="contrast", loss="mse", weight=0.5)]
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    hist = train(model, [phase(tasks=tasks)], seed=3)
    assert hist["train_loss"].notnull().all()
    for key, value in model.state_dict().items():
        assert not torch.equal(before[key], value), f"{key} did not train"
    # with weight 0 the contrast head gets no gradient: the trunk and main head train exactly
    # as in an angle-only phase on the same (contrast-varying) images
    zero = [tasks[0], Task(head="contrast", target="contrast", loss="mse", weight=0.0)]
    a, b = small_model(), small_model()
    train(a, [phase(tasks=zero)], seed=3)
    train(b, [phase()], seed=3)
    for key, value in a.state_dict().items():
        if not key.startswith("heads.contrast"):
            assert torch.equal(value, b.state_dict()[key]), key


def test_sequential_phases_with_varied_images_are_deterministic():
    plan = [phase("other", tasks=[Task(head="contrast", target="contrast", loss="mse")]),
            phase("angle")]
    h1 = train(m1 := small_model(), plan, seed=4)
    h2 = train(m2 := small_model(), plan, seed=4)
    assert h1.equals(h2)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_defaults_keep_the_phase_config_unchanged():
    cfg = Phase("p", Uniform(), SPEC, tasks=[Task()]).to_config()
    assert "vary" not in cfg and "target" not in cfg["tasks"][0]
    cfg = phase(tasks=[Task(head="contrast", target="contrast", loss="mse")]).to_config()
    assert cfg["vary"] == {"contrast": [0.2, 1.0]}
    assert cfg["tasks"][0]["target"] == "contrast"


@pytest.mark.parametrize("kwargs, name", [
    (dict(vary={"phase": (0.0, 1.0)}), "vary"),
    (dict(vary={"contrast": (1.0, 0.5)}), "vary"),
    (dict(vary={"contrast": (-0.5, 0.5)}), "vary"),
    (dict(vary={"frequency": (0.0, 2.0)}), "vary"),
    (dict(vary={"contrast": 0.5}), "vary"),
    (dict(vary={}), "vary"),
    (dict(vary={"contrast": (0.2, 1.0)}, dataset_size=4), "dataset_size"),
    (dict(vary=None, tasks=[Task(head="contrast", target="contrast", loss="mse")]), "vary"),
    (dict(tasks=[Task(head="contrast", target="frequency", loss="mse")]), "frequency"),
])
def test_phase_validation_of_targets(kwargs, name):
    with pytest.raises(ValueError, match=name):
        phase(**kwargs)


def test_task_validation_and_head_mismatch():
    with pytest.raises(ValueError, match="'orientation'"):
        Task(target="orientation")
    with pytest.raises(ValueError, match="'scalar'"):
        train(small_model(), [phase(tasks=[Task(head="head", target="contrast",
                                                loss="mse")])], seed=0)
    with pytest.raises(ValueError, match="scalar"):
        evaluate_target_error(small_model(), SPEC, "head", "contrast", 0.2, 1.0)
    with pytest.raises(ValueError, match="'phase'"):
        evaluate_target_error(small_model(), SPEC, "contrast", "phase", 0.2, 1.0)


def test_multitask_study_welch_interval_matches_scipy():
    from scipy import stats

    from anglesim.stats import welch_ci

    a = np.array([1.0, 2.5, 1.7, 3.1])
    b = np.array([0.2, 0.4, 0.1, 0.9, 0.5])
    da = xr.DataArray(a, dims="replicate")
    db = xr.DataArray(b, dims="replicate")
    diff, half = welch_ci(da, db)
    lo, hi = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert float(diff) == pytest.approx(a.mean() - b.mean())
    assert float(diff - half) == pytest.approx(lo) and float(diff + half) == pytest.approx(hi)


def test_multitask_study_regimes_and_phases():
    from anglesim.studies import multitask as mt

    sz = mt.SIZES["quick"]
    assert list(mt.regimes([0.1, 10.0])) == ["angle_only", "sequential", "joint_0.1", "joint_10"]
    seq = mt.phases("sequential", "frequency", sz)
    assert [p.name for p in seq] == ["other", "angle"]
    assert seq[0].tasks[0].target == "frequency" and seq[1].tasks[0].target == "angle"
    assert all(p.vary == {"frequency": mt.RANGES["frequency"]} for p in seq)
    (joint,) = mt.phases("joint_1", "contrast", sz)
    assert [(t.target, t.weight) for t in joint.tasks] == [("angle", 1.0), ("contrast", 1.0)]
    with pytest.raises(ValueError, match="'joint_3'"):
        mt.phases("joint_3", "contrast", sz)
    with pytest.raises(ValueError, match="'phase'"):
        mt.phases("angle_only", "phase", sz)
