"""LDIFS (Mukhoti et al. 2024): an ℓ2 penalty on the distance to the pretrained features."""

import copy

import numpy as np
import pytest
import torch

from anglesim.data import draw
from anglesim.distributions import Uniform, VonMises
from anglesim.finetune import LDIFS, build_strategy, make_context, named_pool
from anglesim.losses import get_loss
from anglesim.models import CNNConfig, build_model, reference_mlp
from anglesim.stimuli import GratingSpec
from anglesim.training import Phase, train

SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)
SHIFTED = GratingSpec(size=16, frequency=5.0, noise_std=0.3)
CONFIG = CNNConfig(image_size=16, channels=(4, 6), kernel_size=3, fc_units=12, readout="cossin")


def cnn(seed=0):
    torch.manual_seed(seed)
    return build_model(CONFIG)


def mlp(seed=0):
    torch.manual_seed(seed)
    return reference_mlp(image_size=16, hidden=(10, 8))


def phase(spec=SPEC, **kw):
    base = dict(prior=Uniform(), spec=spec, epochs=2, steps_per_epoch=4, batch_size=8,
                eval_angles=8, eval_repeats=1)
    base.update(kw)
    return Phase("ft", **base)


def driven(model, params, batch):
    """An LDIFS strategy set up by hand, whose current batch is ``batch``."""
    ph = phase(strategy="ldifs", strategy_params=params)
    gen = torch.Generator().manual_seed(0)
    loss_fn = get_loss("cosine", "cossin")
    ctx = make_context(ph, lambda x, t, v=None: loss_fn(model(x), t), gen,
                       lambda n: (*draw(ph.prior, ph.spec, n, gen), {}),
                       current_batch=lambda: batch)
    strategy = build_strategy("ldifs", params)
    groups = strategy.setup(model, named_pool(model, list(model.parameters())), ctx)
    strategy.start(torch.optim.SGD(groups, lr=0.1))
    return strategy


def batch_of(n, seed=1, spec=SPEC):
    images, theta = draw(Uniform(), spec, n, torch.Generator().manual_seed(seed))
    return images, theta, {}


@pytest.mark.parametrize("make", [cnn, mlp])
@pytest.mark.parametrize("n", [1, 32])
def test_penalty_is_zero_with_zero_gradient_at_the_start(make, n):
    model = make()
    strategy = driven(model, {"weight": 3.0}, batch_of(n))
    penalty = strategy.penalty()
    assert penalty.item() == 0.0
    penalty.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.count_nonzero(g) == 0 for g in grads)


def test_penalty_is_the_weighted_per_unit_squared_distance():
    model = cnn()
    batch = batch_of(8)
    strategy = driven(model, {"weight": 2.5, "blocks": ["conv2", "fc"]}, batch)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        model.blocks["conv1"][0].weight.add_(0.05)
    now, ref = model.activations(batch[0]), reference.activations(batch[0])
    expected = sum(((now[b] - ref[b]) ** 2).flatten(1).mean(1).mean() for b in ("conv2", "fc"))
    assert strategy.penalty().item() == pytest.approx(2.5 * expected.item(), rel=1e-6)
    assert expected.item() > 0


@pytest.mark.parametrize("make", [cnn, mlp])
def test_gradient_of_the_penalty_pulls_features_back(make):
    model = make()
    batch = batch_of(16)
    strategy = driven(model, {"weight": 1.0}, batch)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    before = strategy.distances(batch[0]).detach()
    assert (before > 0).all()
    for _ in range(5):
        strategy.optimizer.zero_grad()
        strategy.penalty().backward()
        strategy.optimizer.step()
    after = strategy.distances(batch[0]).detach()
    assert after.sum() < before.sum()


def test_weight_zero_is_full_fine_tuning_bit_for_bit():
    a, b = cnn(), cnn()
    train(a, [phase()], seed=4)
    train(b, [phase(strategy="ldifs", strategy_params={"weight": 0.0})], seed=4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def feature_distance(model, pretrained, images):
    now, ref = model.activations(images), pretrained.activations(images)
    return {b: float(((now[b] - ref[b]) ** 2).mean()) for b in pretrained.trunk_names}


@pytest.mark.parametrize("make, steps", [(cnn, 6), (mlp, 12)])
def test_ldifs_keeps_features_closer_to_pretrained_than_full(make, steps):
    """Fine-tune on a shifted spatial frequency and prior, equal steps and seed."""
    shift = dict(spec=SHIFTED, prior=VonMises(loc=1.0, kappa=4.0), lr=1e-2, epochs=2,
                 steps_per_epoch=steps)
    pretrained = make()
    held_out = batch_of(64, seed=9, spec=SHIFTED)[0]
    dist, diags = {}, {}
    for name, params in (("full", {}), ("ldifs", {"weight": 50.0})):
        model = make()
        train(model, [phase(strategy=name, strategy_params=params, **shift)], seed=5,
              on_strategy_end=lambda ph, s: diags.__setitem__("d", s.diagnostics()))
        with torch.no_grad():
            dist[name] = feature_distance(model, pretrained, held_out)
        if name == "ldifs":
            diag = diags["d"]
            assert diag["feature_distance"].dims == ("penalty_epoch", "block")
            assert list(diag["block"].values) == pretrained.trunk_names
            assert np.isfinite(diag["feature_distance"].values).all()
            np.testing.assert_allclose(diag["penalty"].values,
                                       50.0 * diag["feature_distance"].values.sum(1))
    assert sum(dist["full"].values()) > 0
    for block in pretrained.trunk_names:
        assert dist["ldifs"][block] < dist["full"][block], (block, dist)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"weight": -1.0}, "weight.*-1.0"),
        ({"weight": float("nan")}, "weight.*nan"),
        ({"weight": "1"}, "weight.*'1'"),
        ({"weight": True}, "weight.*True"),
        ({"blocks": "conv1"}, "blocks.*'conv1'"),
        ({"blocks": []}, r"blocks.*\[\]"),
        ({"layers": ["conv1"]}, "unknown parameter.*'layers'"),
    ],
)
def test_bad_parameters_raise_at_construction_naming_them(params, match):
    with pytest.raises(ValueError, match=match):
        phase(strategy="ldifs", strategy_params=params)


@pytest.mark.parametrize("blocks, match", [(["conv9"], "conv9"), (["head"], "trunk blocks")])
def test_blocks_the_model_lacks_or_the_readout_are_refused_at_training(blocks, match):
    with pytest.raises(ValueError, match=match):
        train(cnn(), [phase(strategy="ldifs", strategy_params={"blocks": blocks})], seed=0)


def test_numpy_weight_is_accepted_and_blocks_keep_block_order():
    strategy = driven(cnn(), {"weight": np.float32(0.5), "blocks": ["fc", "conv1"]},
                      batch_of(4))
    assert isinstance(strategy, LDIFS)
    assert strategy.blocks == ["conv1", "fc"]


def test_penalty_outside_a_training_step_says_what_it_needs():
    strategy = driven(cnn(), {}, None)
    with pytest.raises(RuntimeError, match="current_batch"):
        strategy.penalty()
