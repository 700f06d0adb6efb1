"""Fine-tuning strategies: registry, validation, freezing, LoRA, TPGM, Auto-RGN, schedules."""

import copy
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from anglesim import finetune
from anglesim import validation as check
from anglesim.data import draw
from anglesim.distributions import Uniform, VonMises
from anglesim.finetune import (
    LoRAConv2d,
    LoRALinear,
    Strategy,
    apply_lora,
    build_strategy,
    lora_modules,
    make_context,
    merge_lora,
    named_pool,
    register_strategy,
    strategy_generator,
    strategy_names,
    validate_strategy,
)
from anglesim.losses import get_loss
from anglesim.models import CNNConfig, build_model, reference_mlp
from anglesim.stimuli import GratingSpec
from anglesim.training import Phase, Task, train

SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)
CONFIG = CNNConfig(image_size=16, channels=(4, 6), kernel_size=3, fc_units=12, readout="cossin")
BUILTIN = ["auto_rgn", "discriminative", "freeze", "full", "l2_sp", "ldifs", "linear_probe",
           "lora", "lp_ft", "surgical", "tpgm"]
# parameters for the strategies that need some, or to keep the integration runs short
PARAMS = {
    "surgical": {"blocks": ["conv1"]},
    "freeze": {"blocks": ["conv1"]},
    "lp_ft": {"probe_epochs": 1},
    "tpgm": {"update_every": 2, "radius_steps": 2, "val_size": 16},
    "discriminative": {"warmup_steps": 3, "decay": 0.5},
    "lora": {"rank": 2},
    "auto_rgn": {"n_batches": 1},
}


def small_model(seed=0):
    torch.manual_seed(seed)
    return build_model(CONFIG)


def phase(name="p", **kw):
    base = dict(prior=Uniform(), spec=SPEC, epochs=2, steps_per_epoch=3, batch_size=8,
                eval_angles=8, eval_repeats=1)
    base.update(kw)
    return Phase(name, **base)


def run(model, phases, seed=1, **kw):
    """Train; return (history, {phase name: strategy})."""
    strategies = {}
    hist = train(model, phases, seed=seed,
                 on_strategy_end=lambda ph, s: strategies.__setitem__(ph.name, s), **kw)
    return hist, strategies


def changed_blocks(before, after):
    """Blocks (or extra heads) with any parameter changed."""
    return sorted({key.split(".")[1] for key in before if not torch.equal(before[key], after[key])})


def manual_context(model, ph, seed=0):
    """A StrategyContext for driving a strategy by hand with a plain cosine loss."""
    gen = strategy_generator(seed, ph.name)
    loss_fn = get_loss("cosine", "cossin")

    def loss(images, theta, values=None):
        return loss_fn(model(images), theta)

    return make_context(ph, loss, gen, lambda n: (*draw(ph.prior, ph.spec, n, gen), {}))


def drive(model, ph, ctx=None, trainable=None):
    """Set a strategy up by hand as training.train would; return (strategy, optimiser, ctx)."""
    ctx = ctx or manual_context(model, ph)
    strategy = build_strategy(ph.strategy, ph.strategy_params)
    params = [p for name, module in list(model.blocks.items()) + list(model.heads.items())
              if trainable is None or name in trainable for p in module.parameters()]
    groups = strategy.setup(model, named_pool(model, params), ctx)
    opt = torch.optim.Adam(groups, lr=ph.lr)
    strategy.start(opt)
    return strategy, opt, ctx


# --------------------------------------------------------------------------------------------
# registry, validation, integration


def test_builtin_strategies_are_registered():
    assert set(BUILTIN) <= set(strategy_names())


@pytest.mark.parametrize("name", BUILTIN)
def test_every_strategy_trains_end_to_end(name):
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    hist, strategies = run(model, [phase("ft", strategy=name,
                                         strategy_params=PARAMS.get(name, {}))])
    assert np.isfinite(hist["train_loss"].values).all()
    assert np.isfinite(hist["eval_error"].values).all()
    after = model.state_dict()
    assert list(after) == list(before)  # LoRA merged back: same parameter names
    assert all(torch.isfinite(v).all() for v in after.values())
    assert changed_blocks(before, after)  # something trained
    assert all(p.requires_grad for p in model.parameters())
    diag = strategies["ft"].diagnostics()
    assert isinstance(diag, xr.Dataset) and diag.attrs["strategy"] == name


@pytest.mark.parametrize("name", ["auto_rgn", "tpgm", "lp_ft", "l2_sp"])
def test_strategies_train_on_finite_datasets(name):
    model = small_model()
    hist, _ = run(model, [phase(strategy=name, strategy_params=PARAMS.get(name, {}),
                                dataset_size=4, epochs=3, patience=3)])
    assert np.isfinite(hist["val_loss"].values).all()


def test_every_registered_strategy_also_trains_the_reference_mlp():
    """Block names differ (fc1, fc2, head); strategies must not assume conv blocks."""
    params = {**PARAMS, "surgical": {"start": "fc2"}, "freeze": {"blocks": ["fc1"]}}
    spec = GratingSpec(size=8, frequency=2.0, noise_std=0.3)
    for name in BUILTIN:
        torch.manual_seed(0)
        model = reference_mlp(image_size=8, hidden=(6, 5))
        hist, _ = run(model, [phase(spec=spec, epochs=2, steps_per_epoch=2, strategy=name,
                                    strategy_params=params.get(name, {}))])
        assert np.isfinite(hist["train_loss"].values).all(), name


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("nope", {}, "strategy must be one of"),
        ("full", {"lr_scale": 0.0}, "lr_scale.*0.0"),
        ("full", {"lr": 1.0}, r"unknown parameter.*'lr'.*\['lr_scale'\]"),
        ("linear_probe", {"lr_scale": float("nan")}, "lr_scale"),
        ("lp_ft", {"probe_epochs": 0}, "probe_epochs.*0"),
        ("lp_ft", {"probe_tol": -1.0}, "probe_tol.*-1.0"),
        ("surgical", {}, "blocks or start/stop"),
        ("surgical", {"blocks": "conv1"}, "blocks.*'conv1'"),
        ("surgical", {"blocks": ["conv1"], "start": "conv1"}, "not both"),
        ("freeze", {"blocks": []}, r"blocks.*\[\]"),
        ("auto_rgn", {"cadence": "batch"}, "cadence.*'batch'"),
        ("auto_rgn", {"n_batches": 0}, "n_batches.*0"),
        ("discriminative", {"decay": 1.5}, "decay.*1.5"),
        ("discriminative", {"warmup_steps": -1}, "warmup_steps.*-1"),
        ("l2_sp", {"alpha": -0.1}, "alpha.*-0.1"),
        ("l2_sp", {"norm": "l3"}, "norm.*'l3'"),
        ("l2_sp", {"anchor": "init"}, "anchor.*'init'"),
        ("tpgm", {"update_every": 0}, "update_every.*0"),
        ("tpgm", {"radius_lr": -1}, "radius_lr.*-1"),
        ("lora", {"rank": 0}, "rank.*0"),
        ("lora", {"alpha": -2.0}, "alpha.*-2.0"),
        ("lora", {"merge": "yes"}, "merge.*'yes'"),
    ],
)
def test_bad_strategy_or_parameters_raise_naming_them(name, params, match):
    with pytest.raises(ValueError, match=match):
        phase(strategy=name, strategy_params=params)


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("surgical", {"blocks": ["conv9"]}, "conv9"),
        ("surgical", {"start": "fc", "stop": "conv1"}, "comes after"),
        ("freeze", {"blocks": ["conv1", "conv2", "fc", "head"]}, "nothing to train"),
        ("lp_ft", {"probe_epochs": 2}, "probe_epochs=2 leaves no epoch"),
        ("tpgm", {"exclude": ["conv1", "conv2", "fc"]}, "no trunk parameters"),
        ("lora", {"blocks": ["head"]}, "train_head"),
    ],
)
def test_model_dependent_errors_are_raised_at_training(name, params, match):
    with pytest.raises(ValueError, match=match):
        train(small_model(), [phase(strategy=name, strategy_params=params)], seed=0)


def test_default_full_and_lr_scale_are_exact():
    """strategy="full" is the default; lr_scale=0.5 at lr 2e-3 equals lr 1e-3 bit for bit."""
    a, b, c = small_model(), small_model(), small_model()
    train(a, [phase(lr=1e-3)], seed=2)
    train(b, [phase(lr=2e-3, strategy="full", strategy_params={"lr_scale": 0.5})], seed=2)
    train(c, [phase(lr=2e-3)], seed=2)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_to_config_records_non_default_strategies_only():
    assert "strategy" not in phase().to_config()
    cfg = phase(strategy="lora", strategy_params={"rank": 2}).to_config()
    assert cfg["strategy"] == "lora" and cfg["strategy_params"] == {"rank": 2}


def test_diagnostics_before_training_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not been set up"):
        build_strategy("tpgm").diagnostics()


def test_registration_rules():
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("full")(finetune.Full)
    with pytest.raises(ValueError, match="subclass of Strategy"):
        register_strategy("not_a_strategy_for_test")(dict)


def test_readme_example_registers_a_strategy_that_trains_only_biases():
    """Runs the registration example exactly as the user guide (docs/user_guide/training.rst)
    shows it."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "user_guide"
             / "training.rst").read_text()
    start = guide.index("   from anglesim import validation as check")
    end = guide.index("\n\n\n", start)
    code = textwrap.dedent(guide[start:end])
    assert '@register_strategy("bias_only")' in code
    finetune.STRATEGIES.pop("bias_only", None)  # the example registers it afresh
    exec(compile(code, "README.md", "exec"), {})
    assert "bias_only" in strategy_names()
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    train(model, [phase(strategy="bias_only", strategy_params={"lr_scale": 2.0})], seed=0)
    after = model.state_dict()
    for key in before:
        assert torch.equal(before[key], after[key]) != key.endswith(".bias"), key
    with pytest.raises(ValueError, match="rank"):
        phase(strategy="bias_only", strategy_params={"rank": 2})
    with pytest.raises(ValueError, match=r"^strategy 'bias_only': lr_scale must be > 0, got 0"):
        phase(strategy="bias_only", strategy_params={"lr_scale": 0})


def test_strategy_choosing_parameters_outside_the_trainable_blocks_is_an_error():
    @register_strategy("grab_everything_for_test", replace=True)
    class Grab(Strategy):
        def param_groups(self, model, pool, ctx):
            return [{"params": list(model.parameters()), "lr": ctx.lr}]

    with pytest.raises(ValueError, match="outside the phase's trainable blocks"):
        train(small_model(), [phase(trainable=["head"], strategy="grab_everything_for_test")],
              seed=0)


def test_on_strategy_end_sees_each_phase_in_order():
    seen = []
    train(small_model(), [phase("a"), phase("b", strategy="linear_probe")], seed=0,
          on_strategy_end=lambda ph, s: seen.append((ph.name, s.name)))
    assert seen == [("a", "full"), ("b", "linear_probe")]


def test_strategy_draws_do_not_change_the_training_stream():
    """Auto-RGN draws its minibatches from its own generator: training only the head weight
    (one tensor, so its rate is η·RGN/max RGN = η) it equals a plain run bit for bit."""

    def head_weight(pool):
        return [q for q in pool if q.name == "blocks.head.0.weight"]

    @register_strategy("head_weight_for_test", replace=True)
    class HeadWeight(Strategy):
        def param_groups(self, model, pool, ctx):
            return [{"params": [q.param for q in head_weight(pool)], "lr": ctx.lr}]

    @register_strategy("auto_rgn_head_weight_for_test", replace=True)
    class RGNHeadWeight(finetune.AutoRGN):
        def param_groups(self, model, pool, ctx):
            return super().param_groups(model, head_weight(pool), ctx)

    a, b = small_model(), small_model()
    hist_a, _ = run(a, [phase(strategy="head_weight_for_test")], seed=4)
    hist_b, strategies = run(b, [phase(strategy="auto_rgn_head_weight_for_test")], seed=4)
    assert (strategies["p"].diagnostics()["rgn_weight"].values == 1.0).all()
    assert strategies["p"].diagnostics().sizes["rgn_update"] == 2
    assert torch.equal(a.blocks["head"][0].weight, b.blocks["head"][0].weight)
    assert hist_a.equals(hist_b)


# --------------------------------------------------------------------------------------------
# freezing: linear probe, surgical, freeze, LP-FT


def test_linear_probe_changes_only_the_heads():
    model = small_model()
    model.add_head("second", readout="angle")
    before = copy.deepcopy(model.state_dict())
    tasks = [Task(), Task(head="second", loss="wrapped_mse")]
    run(model, [phase(strategy="linear_probe", tasks=tasks, weight_decay=0.1)])
    assert changed_blocks(before, model.state_dict()) == ["head", "second"]


@pytest.mark.parametrize(
    "name, params, expected",
    [
        ("surgical", {"blocks": ["conv1"]}, ["conv1"]),
        ("surgical", {"start": "conv2", "stop": "fc"}, ["conv2", "fc"]),
        ("surgical", {"stop": "conv2"}, ["conv1", "conv2"]),
        ("freeze", {"blocks": ["conv1", "head"]}, ["conv2", "fc"]),
    ],
)
def test_frozen_blocks_stay_bit_for_bit(name, params, expected):
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    run(model, [phase(strategy=name, strategy_params=params, weight_decay=0.1)])
    assert changed_blocks(before, model.state_dict()) == expected


def test_trainable_is_the_pool_strategies_choose_from():
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    run(model, [phase(trainable=["fc", "head"], strategy="freeze",
                      strategy_params={"blocks": ["head"]})])
    assert changed_blocks(before, model.state_dict()) == ["fc"]
    with pytest.raises(ValueError, match=r"\['conv1'\] are outside"):
        train(small_model(), [phase(trainable=["fc", "head"], strategy="surgical",
                                    strategy_params={"blocks": ["conv1"]})], seed=0)


def test_lp_ft_probes_then_fine_tunes_everything():
    model = small_model()
    states = [copy.deepcopy(model.state_dict())]
    _, strategies = run(model, [phase(epochs=3, strategy="lp_ft", weight_decay=0.1,
                                      strategy_params={"probe_epochs": 1})],
                        on_epoch=lambda r, m: states.append(copy.deepcopy(m.state_dict())))
    assert changed_blocks(states[0], states[1]) == ["head"]  # epoch 0: the probe
    assert changed_blocks(states[1], states[2]) == ["conv1", "conv2", "fc", "head"]
    diag = strategies["p"].diagnostics()
    assert int(diag["lp_ft_switch_epoch"]) == 1
    assert diag.sizes["probe_epoch"] == 1


def test_lp_ft_switches_when_the_probe_converges():
    """probe_tol=10: any improvement below 10× the loss counts as converged, so the probe
    stops after its second epoch although probe_epochs allows four."""
    model = small_model()
    _, strategies = run(model, [phase(epochs=5, strategy="lp_ft",
                                      strategy_params={"probe_epochs": 4, "probe_tol": 10.0})])
    assert int(strategies["p"].diagnostics()["lp_ft_switch_epoch"]) == 2
    # probe_tol=0: the probe stops at the first epoch whose loss did not fall
    for seed in range(3):
        _, strategies = run(small_model(), [phase(epochs=5, strategy="lp_ft",
                                                  strategy_params={"probe_epochs": 4,
                                                                   "probe_tol": 0.0})],
                            seed=seed)
        diag = strategies["p"].diagnostics()
        losses = diag["lp_ft_probe_loss"].values
        rises = [e for e in range(1, len(losses)) if losses[e] >= losses[e - 1]]
        expected = rises[0] + 1 if rises else 4
        assert int(diag["lp_ft_switch_epoch"]) == expected == len(losses), (losses, seed)


# --------------------------------------------------------------------------------------------
# LoRA


def test_lora_starts_as_the_base_model_exactly_and_keeps_block_names():
    model = small_model()
    x = torch.randn(5, 1, 16, 16)
    out_before = model(x)
    acts_before = model.activations(x)
    wrapped = apply_lora(model, rank=2, generator=torch.Generator().manual_seed(0))
    assert wrapped == ["blocks.conv1.0", "blocks.conv2.0", "blocks.fc.1"]
    assert model.block_names == ["conv1", "conv2", "fc", "head"]
    for m in lora_modules(model).values():
        assert torch.count_nonzero(m.lora_b) == 0 and torch.count_nonzero(m.lora_a) > 0
    assert torch.equal(model(x), out_before)
    acts = model.activations(x)
    assert all(torch.equal(acts[k], acts_before[k]) for k in acts_before)
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        apply_lora(model, rank=2)


def _randomise_adapters(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_b.copy_(torch.randn(m.lora_b.shape, generator=g))


def test_lora_update_has_rank_at_most_r_and_merge_gives_the_same_outputs():
    model = small_model()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    keys = list(base)
    apply_lora(model, rank=2, alpha=3.0, generator=torch.Generator().manual_seed(1))
    _randomise_adapters(model)
    x = torch.randn(7, 1, 16, 16)
    adapted = model(x).detach()
    assert not torch.allclose(adapted, build_model(CONFIG)(x))  # the adapters do something
    modules = lora_modules(model)
    for name, m in modules.items():
        delta = m.delta_weight().detach()
        matrix = delta.reshape(delta.shape[0], -1)
        assert min(matrix.shape) > 2  # so rank <= 2 is a real constraint
        assert int(torch.linalg.matrix_rank(matrix)) == 2, name
        full = m.base.weight.detach().reshape(matrix.shape)
        assert int(torch.linalg.matrix_rank(full)) > 2  # the base weight itself is not low-rank
    assert merge_lora(model) == 3
    assert not lora_modules(model)
    assert isinstance(model.blocks["conv1"][0], nn.Conv2d)
    assert isinstance(model.blocks["fc"][1], nn.Linear)
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(model(x).detach(), adapted, rtol=1e-5, atol=1e-5)
    for key in ("blocks.conv1.0.weight", "blocks.conv2.0.weight", "blocks.fc.1.weight"):
        change = (model.state_dict()[key] - base[key]).reshape(base[key].shape[0], -1)
        assert int(torch.linalg.matrix_rank(change)) <= 2, key
    for key in ("blocks.conv1.0.bias", "blocks.head.0.weight"):
        assert torch.equal(model.state_dict()[key], base[key])


def test_lora_conv_adapter_is_a_conv_down_to_r_channels_then_1x1_up():
    conv = nn.Conv2d(3, 5, 3, padding=1, stride=2)
    lora = LoRAConv2d(conv, rank=2, alpha=4.0, generator=torch.Generator().manual_seed(0))
    assert lora.lora_a.shape == (2, 3, 3, 3) and lora.lora_b.shape == (5, 2, 1, 1)
    with torch.no_grad():
        lora.lora_b.normal_()
    x = torch.randn(2, 3, 9, 9)
    expected = nn.functional.conv2d(x, conv.weight + lora.delta_weight(), conv.bias,
                                    stride=2, padding=1)
    torch.testing.assert_close(lora(x), expected, rtol=1e-5, atol=1e-5)
    linear = LoRALinear(nn.Linear(6, 4), rank=1, alpha=1.0)
    with torch.no_grad():
        linear.lora_b.normal_()
    y = torch.randn(3, 6)
    torch.testing.assert_close(linear(y), nn.functional.linear(
        y, linear.base.weight + linear.delta_weight(), linear.base.bias))
    with pytest.raises(ValueError, match="groups=1"):
        LoRAConv2d(nn.Conv2d(4, 4, 3, groups=2), rank=1, alpha=1.0)


def test_lora_strategy_freezes_the_base_and_merges_a_rank_r_update():
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    _, strategies = run(model, [phase(strategy="lora", strategy_params={"rank": 2},
                                      weight_decay=0.1)])
    after = model.state_dict()
    assert list(after) == list(before)
    for key in before:
        if key.endswith(".bias") and not key.startswith("blocks.head"):
            assert torch.equal(before[key], after[key]), key  # base frozen: biases untouched
        elif key.endswith(".weight"):
            change = (after[key] - before[key]).reshape(before[key].shape[0], -1)
            assert change.abs().max() > 0, key
            if not key.startswith("blocks.head"):
                # W + ΔW is stored in float32: rounding adds full-rank noise of ~1e-7·|W|,
                # far below ΔW's own singular values
                sv = torch.linalg.svdvals(change.double())
                assert sv[2:].max() < 1e-3 * sv[0] and sv[1] > 1e-2 * sv[0], (key, sv)
    head_change = (after["blocks.head.0.weight"] - before["blocks.head.0.weight"])
    assert int(torch.linalg.matrix_rank(head_change)) == 2  # head trains fully (2 outputs)
    diag = strategies["p"].diagnostics()
    assert list(diag["lora_update_rank"].values) == [2, 2, 2]
    assert (diag["lora_update_norm"] > 0).all()


def test_lora_without_merge_keeps_adapters():
    model = small_model()
    run(model, [phase(strategy="lora", strategy_params={"rank": 1, "merge": False})])
    assert len(lora_modules(model)) == 3
    x = torch.randn(4, 1, 16, 16)
    adapted = model(x).detach()
    merge_lora(model)
    torch.testing.assert_close(model(x).detach(), adapted, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# TPGM


def test_tpgm_projection_holds_after_every_step():
    records = []

    @register_strategy("tpgm_checked_for_test", replace=True)
    class Checked(finetune.TPGM):
        def after_step(self):
            free = self.distances().clone()  # before this step's projection
            super().after_step()
            norms_now = torch.stack([torch.linalg.vector_norm(q.param.detach())
                                     for q in self.projected])
            anchors = torch.stack([torch.linalg.vector_norm(a) for a in self.anchors])
            records.append((self.step, free, self.distances().clone(), self.radii,
                            norms_now + anchors))

    model = small_model()
    before = copy.deepcopy(model.state_dict())
    _, strategies = run(model, [phase(strategy="tpgm_checked_for_test", lr=1e-2, epochs=3,
                                      strategy_params={"update_every": 3, "radius_steps": 2,
                                                       "val_size": 16})])
    assert [r[0] for r in records] == list(range(1, 10))
    # the weights move freely until the first projection update (step update_every = 3)
    assert records[0][3] is None and records[1][3] is None
    projected_something = False
    for _, free, dist, radius, scale in records[2:]:
        # float32 storage of θ₀ + r·(θ − θ₀) can exceed γ by rounding, at most ~ε·(‖θ‖ + ‖θ₀‖)
        assert torch.all(dist <= radius * (1 + 1e-5) + 4e-7 * scale), (dist, radius)
        projected_something |= bool((free > radius * 1.01).any())
    assert projected_something  # the bound is not trivially satisfied
    diag = strategies["p"].diagnostics()
    assert list(diag["tpgm_step"].values) == [3, 6, 9]
    assert "blocks.head.0.weight" not in list(diag["parameter"].values)  # head excluded
    after = model.state_dict()
    assert not torch.equal(before["blocks.head.0.weight"], after["blocks.head.0.weight"])


def test_tpgm_radii_learned_on_validation_shrink_a_harmful_drift_with_weights_fixed():
    """Pretrained weights θ₀ (a briefly trained net) plus large noise on the trunk: the
    validation loss prefers θ₀, so the learned radii fall below the noise's distance and the
    projection lowers the validation loss; learning the radii leaves the weights alone."""
    model = small_model()
    train(model, [phase(epochs=2, steps_per_epoch=15, batch_size=32, lr=1e-2)], seed=0)
    ph = phase(strategy="tpgm", strategy_params={"radius_steps": 20, "radius_lr": 0.2,
                                                 "val_size": 64}, batch_size=64)
    strategy, _, ctx = drive(model, ph)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for q in strategy.projected:
            q.param.add_(0.6 * q.param.std() * torch.randn(q.param.shape, generator=g))
    images, theta, values = ctx.validation_set(64)
    with torch.no_grad():
        loss_before = float(ctx.loss(images, theta, values))
    weights = [q.param.detach().clone() for q in strategy.projected]
    strategy.learn_radii()
    assert all(torch.equal(w, q.param) for w, q in zip(weights, strategy.projected, strict=True))
    dist = strategy.distances()
    assert torch.all(strategy.radii < 0.9 * dist), (strategy.radii, dist)
    strategy.project()
    torch.testing.assert_close(strategy.distances(), strategy.radii, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert float(ctx.loss(images, theta, values)) < loss_before


# --------------------------------------------------------------------------------------------
# Auto-RGN


def test_auto_rgn_rates_are_proportional_to_relative_gradient_norms():
    model = small_model()
    ph = phase(strategy="auto_rgn", strategy_params={"n_batches": 2}, lr=3e-3)
    ctx = manual_context(model, ph)
    batches = [ctx.train_batch() for _ in range(2)]
    replay = iter(batches)
    ctx.train_batch = lambda n=None: next(replay)
    strategy, opt, _ = drive(model, ph, ctx)
    strategy.epoch_start(0)
    params = [q.param for q in strategy.pool]
    loss = sum(ctx.loss(*b) for b in batches) / 2
    grads = torch.autograd.grad(loss, params)
    rgn = torch.tensor([float(g.norm() / p.detach().norm())
                        for g, p in zip(grads, params, strict=True)],
                       dtype=torch.float64)
    rates = torch.tensor([group["lr"] for group in opt.param_groups], dtype=torch.float64)
    torch.testing.assert_close(rates, 3e-3 * rgn / rgn.max(), rtol=1e-5, atol=0)
    assert rates.max() == 3e-3 and rates.min() < 0.5 * 3e-3  # rates really differ
    diag = strategy.diagnostics()
    torch.testing.assert_close(torch.from_numpy(diag["rgn"].values[0]), rgn, rtol=1e-5, atol=0)
    assert list(diag["parameter_block"].values) == [q.block for q in strategy.pool]


def test_auto_rgn_per_step_cadence_uses_that_steps_gradient():
    model = small_model()
    ph = phase(strategy="auto_rgn", strategy_params={"cadence": "step"}, lr=1e-3)
    strategy, opt, ctx = drive(model, ph)
    images, theta, values = ctx.train_batch()
    opt.zero_grad()
    ctx.loss(images, theta, values).backward()
    strategy.pre_step()
    rgn = torch.tensor([float(p.grad.norm() / p.detach().norm()) for p in
                        (q.param for q in strategy.pool)], dtype=torch.float64)
    rates = torch.tensor([group["lr"] for group in opt.param_groups], dtype=torch.float64)
    torch.testing.assert_close(rates, 1e-3 * rgn / rgn.max(), rtol=1e-5, atol=0)


def test_auto_rgn_recomputes_once_per_epoch_in_training():
    _, strategies = run(small_model(), [phase(epochs=3, strategy="auto_rgn")])
    diag = strategies["p"].diagnostics()
    assert list(diag["rgn_epoch"].values) == [0, 1, 2]
    assert list(diag["rgn_step"].values) == [0, 3, 6]
    assert np.allclose(diag["rgn_weight"].max("parameter"), 1.0)
    assert list(diag["block"].values) == ["conv1", "conv2", "fc", "head"]
    assert diag["rgn_weight_block"].shape == (3, 4)


# --------------------------------------------------------------------------------------------
# discriminative rates, L2-SP


def test_discriminative_rates_follow_decay_and_warmup_exactly():
    lr, decay, warmup = 2e-3, 0.5, 4
    _, strategies = run(small_model(), [phase(lr=lr, epochs=2, steps_per_epoch=3,
                                              strategy="discriminative",
                                              strategy_params={"decay": decay,
                                                               "warmup_steps": warmup})])
    diag = strategies["p"].diagnostics()
    depth = {"conv1": 3, "conv2": 2, "fc": 1, "head": 0}
    assert list(diag["block"].values) == list(depth)
    assert list(diag["lr_step"].values) == [1, 2, 3, 4, 5, 6]
    for block, d in depth.items():
        expected = [lr * decay**d * min(1.0, s / warmup) for s in range(1, 7)]
        assert diag["lr"].sel(block=block).values.tolist() == expected, block
    assert diag["lr"].sel(block="conv1").values[0] == lr / 8 / 4
    # without warm-up the base rates apply from the first step; ULMFiT's decay by default
    _, strategies = run(small_model(), [phase(lr=lr, strategy="discriminative")])
    diag = strategies["p"].diagnostics()
    np.testing.assert_allclose(diag["lr"].sel(block="fc").values, lr / 2.6, rtol=1e-15)


def test_l2_sp_penalty_values():
    for params in [{"alpha": 0.3}, {"alpha": 0.3, "norm": "l1"}, {"alpha": 0.3, "anchor": "zero"},
                   {"alpha": 0.3, "anchor": "zero", "norm": "l1"},
                   {"alpha": 0.3, "beta": 2.0, "new_blocks": ["head"]}]:
        model = small_model()
        strategy, _, _ = drive(model, phase(strategy="l2_sp", strategy_params=params))
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        expected = 0.0
        for key, p in model.named_parameters():
            if key.startswith("blocks.head") and "new_blocks" in params:
                expected += params["beta"] * float((p.detach() ** 2).sum())
                continue
            d = p.detach() - (0 if params.get("anchor") == "zero" else start[key])
            expected += 0.3 * float(d.abs().sum() if params.get("norm") == "l1" else (d**2).sum())
        assert float(strategy.penalty().detach()) == pytest.approx(expected, rel=1e-5), params


def test_l2_sp_keeps_weights_closer_to_the_pretrained_ones():
    from anglesim.representation import weight_distance

    distances = {}
    for alpha in (0.0, 50.0):
        model = small_model()
        start = copy.deepcopy(model.state_dict())
        _, strategies = run(model, [phase(lr=1e-2, epochs=2, steps_per_epoch=8,
                                          strategy="l2_sp", strategy_params={"alpha": alpha})])
        distances[alpha] = float(np.sqrt((weight_distance(model, start)["distance"]**2).sum()))
        assert strategies["p"].diagnostics().sizes["penalty_epoch"] == 2
    assert distances[50.0] < 0.5 * distances[0.0], distances


def test_strategies_accept_extra_heads_and_multitask_phases():
    for name in ("discriminative", "tpgm", "auto_rgn", "lp_ft"):
        model = small_model()
        model.add_head("second", readout="angle")
        tasks = [Task(), Task(head="second", loss="wrapped_mse", prior=VonMises(1.0, 3.0))]
        hist, _ = run(model, [phase(tasks=tasks, strategy=name,
                                    strategy_params=PARAMS.get(name, {}))])
        assert np.isfinite(hist["train_loss"].values).all(), name
    assert math.isclose(finetune.Discriminative().depth(model, "second"), 0)


# --------------------------------------------------------------------------------------------
# parameters declared as data


def test_every_builtin_strategy_declares_its_parameters_and_defaults():
    for name in BUILTIN:
        cls = finetune.STRATEGIES[name]
        assert set(cls.defaults) <= set(cls.parameters), name
        assert cls.parameters, name


def test_validate_strategy_checks_without_building_and_merges_the_defaults():
    built = []

    @register_strategy("counted_for_test", replace=True)
    class Counted(Strategy):
        parameters = {"k": check.Integer(minimum=2), "scale": check.Real(minimum=0)}
        defaults = {"scale": 1.0}

        def __init__(self, **params):
            built.append(params)
            super().__init__(**params)

    assert validate_strategy("counted_for_test", {"k": np.int64(3)}) == {"k": 3, "scale": 1.0}
    phase(strategy="counted_for_test", strategy_params={"k": 2})
    assert built == []  # neither validation nor the Phase built one
    with pytest.raises(ValueError, match=r"^strategy 'counted_for_test': missing .*\['k'\]"):
        validate_strategy("counted_for_test")
    with pytest.raises(ValueError, match=r"^strategy 'counted_for_test': k must be an integer "
                                         r">= 2, got 1$"):
        phase(strategy="counted_for_test", strategy_params={"k": 1})
    with pytest.raises(ValueError, match=r"^strategy_params must be a dict, got \[1\]"):
        validate_strategy("full", [1])
    with pytest.raises(ValueError, match=r"^strategy must be one of 'auto_rgn', .*got 'nope'"):
        validate_strategy("nope")
    finetune.STRATEGIES.pop("counted_for_test")


def test_a_strategy_must_declare_every_parameter_it_gives_a_default():
    class Undeclared(Strategy):
        defaults = {"lr_scale": 1.0}

    with pytest.raises(ValueError, match=r"defaults for undeclared parameter\(s\) "
                                         r"\['lr_scale'\]"):
        register_strategy("undeclared_for_test")(Undeclared)

    class NotAConstraint(Strategy):
        parameters = {"lr_scale": float}

    with pytest.raises(ValueError, match=r"parameters \['lr_scale'\] need a constraint"):
        register_strategy("not_a_constraint_for_test")(NotAConstraint)
    assert "undeclared_for_test" not in strategy_names()


def test_strategy_params_keep_their_given_form():
    """Values are checked, not converted (numpy scalars aside), so a study's stored
    configuration and the diagnostics' attrs read as the study wrote them."""
    strategy = build_strategy("surgical", {"blocks": ("conv1",), "lr_scale": 1})
    assert strategy.params["blocks"] == ("conv1",) and type(strategy.params["lr_scale"]) is int
    assert type(build_strategy("full", {"lr_scale": np.float32(0.5)}).params["lr_scale"]) is float
