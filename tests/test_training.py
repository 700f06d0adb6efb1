"""Training phases: freezing, optimiser state, early stopping, multitask, failures."""

import copy
import math

import numpy as np
import pytest
import torch

from anglesim.distributions import Uniform, VonMises
from anglesim.losses import register_loss
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec
from anglesim.training import Phase, Task, evaluate_error, train

SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)
CONFIG = CNNConfig(image_size=16, channels=(4,), kernel_size=3, fc_units=16, readout="cossin")


def small_model(seed=0):
    torch.manual_seed(seed)
    return build_model(CONFIG)


def phase(name="p", **kw):
    base = dict(prior=Uniform(), spec=SPEC, epochs=2, steps_per_epoch=3, batch_size=8,
                eval_angles=8, eval_repeats=1)
    base.update(kw)
    return Phase(name, **base)


def test_frozen_blocks_are_unchanged_bit_for_bit():
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    train(model, [phase(trainable=["head"], weight_decay=0.1)], seed=1)
    after = model.state_dict()
    for key in before:
        if key.startswith("blocks.head"):
            assert not torch.equal(before[key], after[key]), key
        else:
            assert torch.equal(before[key], after[key]), key
    # requires_grad is restored for later phases
    assert all(p.requires_grad for p in model.parameters())


def test_kept_optimiser_state_equals_one_long_phase():
    """Two identical phases with kept Adam state = one phase of twice the epochs."""
    a, b, c = small_model(), small_model(), small_model()
    train(a, [phase(epochs=2), phase(epochs=2, reset_optimizer=False)], seed=3)
    train(b, [phase(epochs=4)], seed=3)
    train(c, [phase(epochs=2), phase(epochs=2, reset_optimizer=True)], seed=3)
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=k)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(),
                                                         strict=True))


def test_same_seed_same_history_and_weights():
    h1 = train(m1 := small_model(), [phase()], seed=5)
    h2 = train(m2 := small_model(), [phase()], seed=5)
    assert h1.equals(h2)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_history_structure():
    hist = train(small_model(), [phase("pre", epochs=2), phase("ft", epochs=3)], seed=0)
    assert hist.sizes["epoch"] == 5
    assert list(hist["epoch_phase"].values) == ["pre"] * 2 + ["ft"] * 3
    assert list(hist["epoch_in_phase"].values) == [0, 1, 0, 1, 2]
    assert hist["val_loss"].isnull().all()  # on-the-fly phases have no validation set
    assert (hist["eval_error"] >= 0).all() and (hist["eval_error"] <= math.pi / 2).all()


def test_finite_dataset_early_stopping_restores_best_checkpoint():
    model = small_model()
    states = []
    hist = train(
        model,
        [phase(dataset_size=4, epochs=12, patience=2, batch_size=8, lr=0.05)],
        seed=2,
        on_epoch=lambda record, m: states.append(copy.deepcopy(m.state_dict())),
    )
    val = hist["val_loss"].values
    assert len(val) <= 12 and all(math.isfinite(v) for v in val)
    best = int(val.argmin())
    if len(val) < 12:  # stopped early: exactly `patience` epochs without improvement
        assert len(val) - 1 - best == 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[best][key]), key


def test_multitask_trains_both_heads_on_shared_trunk():
    model = small_model()
    model.add_head("second", readout="angle")
    before = copy.deepcopy(model.state_dict())
    tasks = [Task(head="head", loss="cosine", weight=1.0),
             Task(head="second", loss="wrapped_mse", weight=0.5,
                  prior=VonMises(math.pi / 2, 4.0))]
    hist = train(model, [phase(tasks=tasks)], seed=0)
    assert hist["train_loss"].notnull().all()
    after = model.state_dict()
    for key in before:
        assert not torch.equal(before[key], after[key]), f"{key} did not train"


def test_nan_loss_raises_floating_point_error():
    @register_loss("always_nan_for_test")
    def _nan_loss(readout, n_bins=None):
        def fn(output, theta):
            return output.sum() * float("nan")

        return fn

    with pytest.raises(FloatingPointError, match="phase 'boom'"):
        train(small_model(), [phase("boom", loss="always_nan_for_test")], seed=0)


def test_training_reduces_error_well_below_chance():
    model = small_model()
    hist = train(model, [phase(epochs=4, steps_per_epoch=40, batch_size=32, lr=3e-3)], seed=0)
    err = evaluate_error(model, SPEC, n_angles=32, repeats=4)
    assert float(err.mean()) < math.pi / 16, float(err.mean())  # chance is π/4
    assert hist["eval_error"].values[-1] < hist["eval_error"].values[0]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(lr=-1.0), "lr"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(optimizer="adamax"), "optimizer"),
        (dict(dataset_size=0), "dataset_size"),
        (dict(tasks=[]), "tasks"),
    ],
)
def test_phase_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        phase(**kwargs)


def test_unknown_trainable_block_is_named():
    with pytest.raises(ValueError, match="conv9"):
        train(small_model(), [phase(trainable=["conv9"])], seed=0)


def test_changing_optimiser_while_keeping_state_is_an_error():
    with pytest.raises(ValueError, match="sgd"):
        train(small_model(), [phase(), phase(optimizer="sgd", reset_optimizer=False)], seed=0)


def test_extra_bins_head_uses_its_own_bin_count():
    """A cossin network with an added 12-bin head trains that head with 12-class targets."""
    model = small_model()
    model.add_head("coarse", readout="bins", n_bins=12)
    tasks = [Task(head="head", loss="cosine"), Task(head="coarse", loss="cross_entropy")]
    hist = train(model, [phase(tasks=tasks)], seed=0)
    assert hist["train_loss"].notnull().all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_offset=float("nan")), "target_offset"),
        (dict(target_offset=True), "target_offset"),
        (dict(target_offset="0.5"), "target_offset"),
        (dict(head="c", target="contrast", loss="mse", target_offset=0.1), "angle targets"),
    ],
)
def test_task_target_offset_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Task(**kwargs)


def test_target_offset_in_config_only_when_set():
    plain = phase(tasks=[Task()]).to_config()["tasks"][0]
    assert "target_offset" not in plain
    shifted = phase(tasks=[Task(target_offset=math.pi / 4)]).to_config()["tasks"][0]
    assert shifted["target_offset"] == pytest.approx(math.pi / 4)


def test_evaluate_error_target_offset_has_period_pi_and_is_validated():
    model = small_model()
    err = [evaluate_error(model, SPEC, 8, 2, torch.Generator().manual_seed(0),
                          target_offset=d) for d in (0.0, math.pi, math.pi / 4)]
    # θ + π rounds in float32: equal up to that rounding
    torch.testing.assert_close(torch.tensor(err[0].values), torch.tensor(err[1].values),
                               rtol=0, atol=1e-5)
    assert not err[0].equals(err[2])
    with pytest.raises(ValueError, match="target_offset"):
        evaluate_error(model, SPEC, 8, target_offset=float("inf"))


def test_offset_target_is_learned_instead_of_theta():
    """Trained on y = (θ + π/4) mod π, the head estimates y, not θ: its error against y is far
    below chance and its error against θ is about π/4; the history measures the error
    against y."""
    model = small_model()
    offset = math.pi / 4
    hist = train(model, [phase(epochs=4, steps_per_epoch=40, batch_size=32, lr=3e-3,
                               tasks=[Task(loss="cosine", target_offset=offset)])], seed=0)
    shifted = float(evaluate_error(model, SPEC, 32, 4, target_offset=offset).mean())
    plain = float(evaluate_error(model, SPEC, 32, 4).mean())
    assert shifted < math.pi / 16, shifted
    assert abs(plain - math.pi / 4) < math.pi / 16, plain
    assert hist["eval_error"].values[-1] < math.pi / 16


def test_training_draws_from_the_named_seed_streams():
    """Batches come from seeding's "data" stream, the per-epoch evaluation from "eval"."""
    from anglesim.seeding import torch_generator

    a, b = small_model(), small_model()
    ha = train(a, [phase(epochs=1)], seed=5)
    hb = train(b, [phase(epochs=1)], seed=5, generator=torch_generator(5, "data"))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    err = evaluate_error(a, SPEC, 8, 1, torch_generator(5, "eval"))
    assert ha["eval_error"].item() == pytest.approx(float(err.mean()), abs=1e-7)
    np.testing.assert_array_equal(ha["eval_error"].values, hb["eval_error"].values)


def test_strategy_stream_differs_by_phase_name_and_from_the_data_stream():
    from anglesim.finetune import strategy_generator
    from anglesim.seeding import torch_generator

    draws = {name: torch.rand(4, generator=strategy_generator(3, name)) for name in ("a", "b")}
    data = torch.rand(4, generator=torch_generator(3, "data"))
    assert not torch.equal(draws["a"], draws["b"])
    assert not torch.equal(draws["a"], data)
    again = torch.rand(4, generator=strategy_generator(3, "a"))
    assert torch.equal(draws["a"], again)


def test_root_generator_replays_the_stream_of_the_former_make_generator():
    """seeding.root_generator is training.make_generator moved: the seeds and first draws
    below were recorded from make_generator before it moved, so studies that drew from it
    (pretrain_imprint, model_choices) keep their numbers."""
    from anglesim.seeding import root_generator

    recorded = {0: (12750949206108985319, [0.9743680357933044, 0.3686065673828125]),
                7: (8949336737714337537, [0.2896044850349426, 0.7953686714172363]),
                2**40: (4967499770253281385, [0.7828193306922913, 0.678692638874054])}
    for seed, (initial, draws) in recorded.items():
        gen = root_generator(seed)
        assert gen.initial_seed() == initial
        assert torch.rand(2, generator=gen).tolist() == draws
    assert root_generator(np.int64(7)).initial_seed() == recorded[7][0]
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0, got -1"):
        root_generator(-1)
