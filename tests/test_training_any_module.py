"""Training any nn.Module: ReadoutNet heads at named layers, parts named by module paths and
glob patterns in forward order, every strategy on a plain Sequential and a residual network."""

import copy
import math

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from anglesim.distributions import Uniform, VonMises
from anglesim.evaluate import evaluate_error
from anglesim.finetune import (
    Parts,
    ReadoutNet,
    apply_lora,
    lora_modules,
    merge_lora,
    named_pool,
    strategy_names,
)
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec, render
from anglesim.training import Phase, Task, train

SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)
SHAPE = (1, 16, 16)


def sequential(seed=0):
    """A plain Sequential classifier of 16 px images into 10 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 0 1 2
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 3 4 5
        nn.Flatten(), nn.Linear(6 * 4 * 4, 12), nn.ReLU(),            # 6 7 8
        nn.Linear(12, 10),                                            # 9
    )


class Block(nn.Module):
    """A residual block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), one ReLU module
    used twice and the shortcut added in place, as torchvision's BasicBlock does."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class TinyResNet(nn.Module):
    """A ResNet-shaped network; ``fc`` is registered first but runs last, so registration order
    is not forward order."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(8, 10)
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4),
                                  nn.ReLU())
        self.layer1 = nn.Sequential(Block(4, 4), Block(4, 4))
        self.layer2 = nn.Sequential(Block(4, 8, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def seq_net(seed=0, **kw):
    return ReadoutNet(sequential(seed), SHAPE, layer=kw.pop("layer", "8"),
                      readout=kw.pop("readout", "cossin"), **kw)


def res_net(seed=0, **kw):
    return ReadoutNet(TinyResNet(seed), SHAPE, layer=kw.pop("layer", "layer2"),
                      readout=kw.pop("readout", "cossin"), **kw)


def phase(name="p", **kw):
    base = dict(prior=Uniform(), spec=SPEC, epochs=2, steps_per_epoch=3, batch_size=8,
                eval_angles=8, eval_repeats=1)
    base.update(kw)
    return Phase(name, **base)


def run(model, phases, seed=1, **kw):
    strategies = {}
    hist = train(model, phases, seed=seed,
                 on_strategy_end=lambda ph, s: strategies.__setitem__(ph.name, s), **kw)
    return hist, strategies


def changed(before, after):
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


def state(model):
    return copy.deepcopy(model.state_dict())


# --------------------------------------------------------------------------------------------
# ReadoutNet


def test_readout_net_names_layers_in_forward_order_and_refuses_unknown_ones():
    net = res_net()
    assert net.layers[:4] == ["stem", "stem.0", "stem.1", "stem.2"]
    assert net.layers.index("layer1") < net.layers.index("layer2") < net.layers.index("fc")
    assert net.trunk == ["stem", "layer1", "layer2"]  # pool and fc come after the head
    with pytest.raises(ValueError, match=r"^layer must be one of net's module paths stem, "
                                         r"stem\.0.*got 'layer9'"):
        res_net(layer="layer9")
    with pytest.raises(ValueError, match=r"^readout must be one of 'angle', 'cossin', 'bins'"):
        res_net(readout="scalar")
    with pytest.raises(ValueError, match=r"^input_shape must be"):
        ReadoutNet(sequential(), 16, layer="8", readout="cossin")
    with pytest.raises(ValueError, match="could not run on an input of shape"):
        ReadoutNet(sequential(), (3, 16, 16), layer="8", readout="cossin")


def test_head_reads_the_named_layer_and_later_modules_do_not_run():
    net = res_net()
    calls = []
    net.net.fc.register_forward_hook(lambda *a: calls.append("fc"))
    x = torch.randn(3, *SHAPE)
    net.eval()
    out = net(x)
    assert out.shape == (3, 2) and calls == []
    with torch.no_grad():
        features = net.net.layer2(net.net.layer1(net.net.stem(x)))
        expected = net.heads["head"](features)
    assert torch.equal(out, expected)


def test_a_module_called_twice_is_read_at_its_last_call():
    net = res_net(layer="layer1.0.relu")
    block = net.net.layer1[0]
    x = torch.randn(2, *SHAPE)
    net.eval()
    with torch.no_grad():
        h = net.net.stem(x)
        inner = block.relu(block.bn1(block.conv1(h)))
        last = block.relu(block.bn2(block.conv2(inner)) + h)
        got = net.capture(x, ["layer1.0.relu", "layer1.0.bn1"])
    assert torch.equal(got["layer1.0.relu"], last)
    assert torch.equal(got["layer1.0.bn1"], block.bn1(block.conv1(h)))


def test_own_output_read_or_decoded():
    two = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))
    net = ReadoutNet(two, SHAPE, readout="cossin")
    x = torch.randn(4, *SHAPE)
    assert torch.equal(net(x), two(x)) and net.readout == "cossin"
    assert torch.allclose(net.predict(x), torch.atan2(two(x)[:, 1], two(x)[:, 0]) / 2 % math.pi)
    with pytest.raises(ValueError, match="net's own output has 2 units per image; readout "
                                         "'bins' needs 36"):
        ReadoutNet(two, SHAPE, readout="bins")

    def decode(out):
        return torch.atan2(out[:, 1], out[:, 0]) / 2

    angle = ReadoutNet(two, SHAPE, decode=decode)
    assert angle.readout == "angle" and angle(x).shape == (4, 1)
    assert torch.allclose(angle.predict(x), decode(two(x)) % math.pi)
    with pytest.raises(ValueError, match="give decode or layer/readout, not both"):
        ReadoutNet(two, SHAPE, decode=decode, readout="cossin")
    with pytest.raises(ValueError, match=r"^decode must be None or a callable, got 3"):
        ReadoutNet(two, SHAPE, decode=3)


def test_heads_drawn_from_a_generator_are_reproducible():
    a = res_net(generator=torch.Generator().manual_seed(3))
    b = res_net(generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.heads["head"][1].weight, b.heads["head"][1].weight)
    with pytest.raises(ValueError, match=r"^name must be a new head name"):
        a.add_head("head", "angle")


# --------------------------------------------------------------------------------------------
# names


def test_parts_of_a_readout_net_and_of_an_anglenet():
    parts = Parts(res_net())
    assert parts.trunk == ["stem", "layer1", "layer2"] and parts.heads == ["head"]
    assert parts.chain == ["stem", "layer1", "layer2", "head"]
    assert parts.resolve(["layer1.*.conv?"]) == ["layer1.0.conv1", "layer1.0.conv2",
                                                 "layer1.1.conv1", "layer1.1.conv2"]
    assert parts.resolve(["layer2", "stem"]) == ["stem", "layer2"]  # forward order
    with pytest.raises(ValueError, match=r"blocks names unknown module\(s\) \['layer3\*'\]; "
                                         r"the valid names .* are \['stem', 'stem.0'"):
        parts.resolve(["layer3*"])
    pool = parts.pool()
    assert {q.block for q in pool} == {"stem", "layer1", "layer2", "head"}
    assert not any(q.name.startswith("net.fc") for q in pool)  # fc cannot reach the head

    cnn = build_model(CNNConfig(image_size=16, channels=(4, 6), kernel_size=3, fc_units=12))
    cnn.add_head("second", readout="angle")
    native = Parts(cnn)
    assert native.chain == ["conv1", "conv2", "fc", "head"]
    assert native.heads == ["head", "second"]
    assert native.resolve(["conv*"]) == ["conv1", "conv1.0", "conv1.1", "conv1.2",
                                         "conv2", "conv2.0", "conv2.1", "conv2.2"]
    assert native.param_names(["conv1.0"]) == {"blocks.conv1.0.weight", "blocks.conv1.0.bias"}
    assert [q.name for q in named_pool(cnn, list(cnn.parameters()))][-2:] == [
        "heads.second.0.weight", "heads.second.0.bias"]


# --------------------------------------------------------------------------------------------
# every strategy on any module

PARAMS = {
    "sequential": {
        "surgical": {"blocks": ["3"]},
        "freeze": {"blocks": ["0", "3"]},
        "lp_ft": {"probe_epochs": 1},
        "tpgm": {"update_every": 2, "radius_steps": 2, "val_size": 16, "exclude": ["7"]},
        "discriminative": {"warmup_steps": 2, "decay": 0.5},
        "lora": {"rank": 2, "blocks": ["[37]"]},
        "auto_rgn": {"n_batches": 1},
        "l2_sp": {"alpha": 0.1},
        "ldifs": {"blocks": ["4", "8"]},
    },
    "resnet": {
        "surgical": {"blocks": ["layer1.*"]},
        "freeze": {"blocks": ["stem", "layer2.0.downsample"]},
        "lp_ft": {"probe_epochs": 1},
        "tpgm": {"update_every": 2, "radius_steps": 2, "val_size": 16, "exclude": ["stem"]},
        "discriminative": {"warmup_steps": 2},
        "lora": {"rank": 2, "blocks": ["layer2.*"]},
        "auto_rgn": {"n_batches": 1},
        "l2_sp": {"alpha": 0.1, "new_blocks": ["head"]},
        "ldifs": {"blocks": ["layer1.0", "layer2"]},
    },
}
BUILTIN = ["auto_rgn", "discriminative", "freeze", "full", "l2_sp", "ldifs", "linear_probe",
           "lora", "lp_ft", "surgical", "tpgm"]


@pytest.mark.parametrize("kind, make", [("sequential", seq_net), ("resnet", res_net)])
@pytest.mark.parametrize("name", BUILTIN)
def test_every_strategy_fine_tunes_any_module(kind, make, name):
    assert name in strategy_names()
    model = make()
    before = state(model)
    hist, strategies = run(model, [phase("ft", strategy=name,
                                         strategy_params=PARAMS[kind].get(name, {}))])
    assert np.isfinite(hist["train_loss"].values).all()
    assert np.isfinite(hist["eval_error"].values).all()
    after = model.state_dict()
    assert list(after) == list(before)  # LoRA merged back: same parameter names
    moved = changed(before, after)
    assert any(k.endswith(("weight", "bias")) for k in moved), moved
    assert not any(k.startswith("net.fc.") or k == "net.9.weight" for k in moved)
    diag = strategies["ft"].diagnostics()
    assert isinstance(diag, xr.Dataset) and diag.attrs["strategy"] == name


@pytest.mark.parametrize("make, params, trained", [
    (res_net, {"blocks": ["layer1.*"]}, ("net.layer1.",)),
    (res_net, {"blocks": ["layer2.0.conv1", "head"]}, ("net.layer2.0.conv1.", "heads.head.")),
    (res_net, {"start": "layer1", "stop": "layer2"}, ("net.layer1.", "net.layer2.")),
    (seq_net, {"blocks": ["[0-7]"]}, ("net.0.", "net.3.", "net.7.")),
    (seq_net, {"start": "7"}, ("net.7.", "heads.head.")),
])
def test_surgical_trains_exactly_the_named_modules(make, params, trained):
    model = make()
    before = state(model)
    run(model, [phase(strategy="surgical", strategy_params=params, weight_decay=0.1)])
    after = model.state_dict()
    for key in before:
        grads = key.endswith(("weight", "bias")) and "bn" not in key and "stem.1" not in key
        if key.startswith(trained) and grads:
            assert not torch.equal(before[key], after[key]), key
        elif not key.startswith(trained):  # frozen batch norms keep their statistics too
            assert torch.equal(before[key], after[key]), key


def test_a_pattern_reaching_past_the_heads_is_refused():
    """Module 9 (the classifier after the head's layer) cannot train: naming it is an error."""
    with pytest.raises(ValueError, match=r"block\(s\) \['9'\] are outside"):
        train(seq_net(), [phase(strategy="surgical", strategy_params={"blocks": ["?"]})],
              seed=0)


def test_trainable_names_modules_and_patterns():
    model = res_net()
    before = state(model)
    run(model, [phase(trainable=["layer2.*", "head"], strategy="freeze",
                      strategy_params={"blocks": ["head"]})])
    moved = [k for k in changed(before, model.state_dict()) if "running" not in k
             and "num_batches" not in k]
    assert moved and all(k.startswith("net.layer2.") for k in moved), moved
    with pytest.raises(ValueError, match=r"trainable names unknown module\(s\) \['layer9'\]"):
        train(res_net(), [phase(trainable=["layer9"])], seed=0)
    with pytest.raises(ValueError, match=r"strategy 'surgical': block\(s\) \['stem'\] are "
                                         r"outside the phase's trainable blocks"):
        train(res_net(), [phase(trainable=["layer1"], strategy="surgical",
                                strategy_params={"blocks": ["stem"]})], seed=0)
    with pytest.raises(ValueError, match=r"strategy 'freeze': blocks names unknown module"):
        train(res_net(), [phase(strategy="freeze", strategy_params={"blocks": ["conv1"]})],
              seed=0)


def test_discriminative_depth_follows_the_forward_order():
    _, strategies = run(res_net(), [phase(strategy="discriminative", lr=1e-3,
                                          strategy_params={"decay": 0.5})])
    diag = strategies["p"].diagnostics()
    assert list(diag["block"].values) == ["stem", "layer1", "layer2", "head"]
    np.testing.assert_allclose(diag["base_lr"].values, [1e-3 / 8, 1e-3 / 4, 1e-3 / 2, 1e-3])


def test_lora_adapts_the_convolutions_a_pattern_names_and_merges_them():
    model = res_net()
    x = torch.randn(3, *SHAPE)
    model.eval()
    out = model(x)
    wrapped = apply_lora(model, rank=2, blocks=["layer2.*"],
                         generator=torch.Generator().manual_seed(0))
    assert wrapped == ["net.layer2.0.conv1", "net.layer2.0.conv2", "net.layer2.0.downsample.0"]
    assert torch.equal(model(x), out)  # B = 0: the adapted network starts as the base one
    assert merge_lora(model) == 3 and not lora_modules(model)
    _, strategies = run(model, [phase(strategy="lora",
                                      strategy_params={"rank": 1, "blocks": ["layer1.0"]})])
    diag = strategies["p"].diagnostics()
    assert list(diag["lora_module"].values) == ["net.layer1.0.conv1", "net.layer1.0.conv2"]
    assert list(diag["lora_block"].values) == ["layer1", "layer1"]
    assert list(diag["lora_update_rank"].values) == [1, 1]


def test_ldifs_features_of_named_modules():
    _, strategies = run(seq_net(), [phase(strategy="ldifs",
                                          strategy_params={"blocks": ["8", "1"]})])
    assert list(strategies["p"].diagnostics()["block"].values) == ["1", "8"]
    with pytest.raises(ValueError, match="must be trunk blocks"):
        train(seq_net(), [phase(strategy="ldifs", strategy_params={"blocks": ["head"]})],
              seed=0)


def test_own_output_with_decode_trains_and_evaluates():
    torch.manual_seed(0)
    two = nn.Sequential(nn.Flatten(), nn.Linear(256, 16), nn.Tanh(), nn.Linear(16, 2))
    model = ReadoutNet(two, SHAPE, decode=lambda out: torch.atan2(out[:, 1], out[:, 0]) / 2)
    before = state(model)
    hist, _ = run(model, [phase(epochs=2, steps_per_epoch=10, lr=1e-2)])
    assert changed(before, model.state_dict())
    assert hist["eval_error"].values[-1] < hist["eval_error"].values[0] + 0.2
    err = evaluate_error(model, SPEC, 8, 1)
    assert err.dims == ("angle",) and np.isfinite(err.values).all()
    with pytest.raises(ValueError, match="hold no head to probe"):
        train(model, [phase(strategy="linear_probe")], seed=0)


def test_multitask_heads_attach_at_named_layers():
    model = res_net()
    model.add_head("contrast", readout="scalar", layer="layer1")
    model.add_head("coarse", readout="bins", n_bins=4, layer="stem.2")
    assert model.layer_of("contrast") == "layer1" and model.n_bins_of("coarse") == 4
    before = state(model)
    tasks = [Task(), Task(head="contrast", target="contrast", loss="mse"),
             Task(head="coarse", loss="cross_entropy", prior=VonMises(1.0, 2.0), weight=0.5)]
    hist, _ = run(model, [phase(tasks=tasks, vary={"contrast": (0.5, 1.5)})])
    assert np.isfinite(hist["train_loss"].values).all()
    moved = changed(before, model.state_dict())
    for head in ("head", "contrast", "coarse"):
        assert f"heads.{head}.1.weight" in moved, head
    # the heads share one forward pass of net; heads at earlier layers read those layers
    x = torch.randn(2, *SHAPE)
    model.eval()
    features = model.features(x)
    assert set(features) == {"stem.2", "layer1", "layer2"}
    assert torch.equal(model(x, head="contrast"),
                       model.heads["contrast"](model.net.layer1(model.net.stem(x))))
    with pytest.raises(ValueError, match=r"task head 'other' of phase 'p' is not a head"):
        train(model, [phase(tasks=[Task(head="other")])], seed=0)
    with pytest.raises(ValueError, match=r"^layer must be one of net's module paths"):
        model.add_head("third", readout="angle", layer="nowhere")


def test_batch_norm_trains_in_train_mode_and_evaluates_in_eval_mode():
    model = res_net()
    running = model.net.stem[1].running_mean.clone()
    run(model, [phase(epochs=1)])
    assert not torch.equal(running, model.net.stem[1].running_mean)
    assert not model.training
    a = evaluate_error(model, SPEC, 8, 2, torch.Generator().manual_seed(0))
    b = evaluate_error(model, SPEC, 8, 2, torch.Generator().manual_seed(0))
    assert a.equals(b)


@pytest.mark.parametrize("strategy, params", [
    ("surgical", {"blocks": ["layer2", "head"]}), ("linear_probe", {}), ("freeze",
                                                                         {"blocks": ["stem"]})])
def test_frozen_batch_norms_keep_their_statistics_and_function(strategy, params):
    """A batch norm whose parameters are frozen trains in eval mode: its running statistics
    stay, so the frozen stem computes the same function after fine-tuning as before."""
    model = res_net()
    run(model, [phase("pre", epochs=1)])
    x = render(torch.linspace(0, 3, 6), SPEC, generator=torch.Generator().manual_seed(0))
    stem = model.net.stem.eval()
    with torch.no_grad():
        out = stem(x)
    before = state(model)
    run(model, [phase("ft", prior=VonMises(0.5, 4.0), strategy=strategy,
                      strategy_params=params)])
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("net.stem"))
    with torch.no_grad():
        assert torch.equal(stem(x), out)
    moved = [k for k in before if k.endswith("running_mean") and
             not torch.equal(before[k], after[k])]
    assert moved == (["net.layer2.0.bn1.running_mean", "net.layer2.0.bn2.running_mean",
                      "net.layer2.0.downsample.1.running_mean"] if strategy == "surgical" else
                     [] if strategy == "linear_probe" else
                     [k for k in before if k.endswith("running_mean") and "layer" in k])


def test_lp_ft_probes_with_the_trunks_statistics_then_updates_them():
    model = res_net()
    run(model, [phase("pre", epochs=1)])
    running = model.net.stem[1].running_mean.clone()
    seen = []
    train(model, [phase("ft", epochs=3, strategy="lp_ft", strategy_params={"probe_epochs": 1})],
          seed=1, on_epoch=lambda record, m: seen.append(
              torch.equal(m.net.stem[1].running_mean, running)))
    assert seen[0] and not seen[-1]  # held during the probe epoch, moving once all trains


def test_fisher_information_of_a_readout_net():
    from anglesim.fisher import propagated_fisher

    model = res_net()
    model.eval()
    fi = propagated_fisher(model, SPEC, [0.3, 1.2], layers=["net.layer1", "output"],
                           sigma=SPEC.noise_std)
    assert np.isfinite(fi.values).all() and (fi.values > 0).all()


def test_plain_modules_need_a_readout():
    with pytest.raises(ValueError, match=r"^model must be an AngleNet .* or a ReadoutNet"):
        train(sequential(), [phase()], seed=0)
    with pytest.raises(ValueError, match=r"^model must be an AngleNet .* or a ReadoutNet"):
        evaluate_error(sequential(), SPEC, 4, 1)


def test_a_module_named_like_a_head_is_addressed_as_net_dot_its_path():
    """A network whose last module is called ``head`` (as many are) keeps it addressable:
    the ReadoutNet's heads own the bare names, the network's module is ``net.head``."""
    from collections import OrderedDict

    torch.manual_seed(0)
    own = nn.Sequential(OrderedDict(body=nn.Sequential(nn.Flatten(), nn.Linear(256, 8),
                                                       nn.ReLU()),
                                    head=nn.Linear(8, 2)))
    model = ReadoutNet(own, SHAPE, readout="cossin")
    parts = Parts(model)
    assert parts.trunk == ["body", "net.head"] and parts.heads == ["head"]
    assert parts.names[-1] == "net.head" and parts.paths["net.head"] == "net.head"
    before = state(model)
    run(model, [phase(strategy="surgical", strategy_params={"blocks": ["net.head"]})])
    assert changed(before, model.state_dict()) == ["net.head.bias", "net.head.weight"]
    layered = ReadoutNet(own, SHAPE, layer="body", readout="angle")
    assert Parts(layered).names[-3:] == ["head", "head.0", "head.1"]
    with pytest.raises(ValueError, match="trunk blocks"):
        train(layered, [phase(strategy="ldifs", strategy_params={"blocks": ["head.1"]})],
              seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["full", "lora", "ldifs", "tpgm"])
def test_a_readout_net_trains_on_cuda(name):
    model = res_net()
    model.add_head("contrast", readout="scalar", layer="layer1")
    params = PARAMS["resnet"].get(name, {})
    tasks = [Task(), Task(head="contrast", target="contrast", loss="mse")]
    hist = train(model, [phase(strategy=name, strategy_params=params, tasks=tasks,
                               vary={"contrast": (0.5, 1.5)})], seed=1, device="cuda")
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert np.isfinite(hist["train_loss"].values).all()
    assert evaluate_error(model, SPEC, 8, 2).sizes["angle"] == 8
