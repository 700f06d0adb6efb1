"""anglesim.models: shapes, named blocks, decoding, configs and torch.func compatibility."""

import json
import math

import pytest
import torch
from torch.func import jacrev, jvp

from anglesim import angles as ang
from anglesim.models import (
    NONLINEARITIES,
    READOUTS,
    AngleNet,
    CNNConfig,
    angle_targets,
    bin_centres,
    build_model,
    count_parameters,
    decode,
    model_from_config,
    reference_mlp,
)

OUT_DIM = {"angle": 1, "cossin": 2, "bins": 7, "scalar": 1, "classes": 7}
SMALL = dict(image_size=16, channels=(3, 4), kernel_size=3, fc_units=8)


def images(n: int, size: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=gen)


def seeded_model(config, seed: int = 0) -> AngleNet:
    torch.manual_seed(seed)
    return build_model(config)


# ---- shapes and names ------------------------------------------------------------------------


@pytest.mark.parametrize("readout", READOUTS)
def test_output_shape_for_every_readout(readout):
    model = seeded_model(CNNConfig(**SMALL, readout=readout, n_bins=7))
    out = model(images(5, 16))
    assert out.shape == (5, OUT_DIM[readout])
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, names",
    [
        (dict(image_size=16, channels=(4,), pool="max", fc_units=0), ["conv1", "head"]),
        (dict(image_size=32, channels=(2, 3), pool="avg", fc_units=5),
         ["conv1", "conv2", "fc", "head"]),
        (dict(image_size=64, channels=(2, 2, 3), pool="max", fc_units=4),
         ["conv1", "conv2", "conv3", "fc", "head"]),
        (dict(image_size=16, channels=(2, 3), pool="none", fc_units=0), ["conv1", "conv2", "head"]),
        (dict(image_size=16, channels=[2], in_channels=2, kernel_size=3, fc_units=6),
         ["conv1", "fc", "head"]),
        (dict(image_size=17, channels=(2, 2), pool="max", fc_units=3, dropout=0.2,
              nonlinearity="gelu"), ["conv1", "conv2", "fc", "head"]),
    ],
)
def test_configs_give_named_blocks_and_shapes(kwargs, names):
    cfg = CNNConfig(**kwargs)
    model = seeded_model(cfg).eval()
    assert model.block_names == names
    assert model.trunk_names == names[:-1]
    x = images(3, cfg.image_size, cfg.in_channels)
    assert model(x).shape == (3, 2)
    acts = model.activations(x)
    assert list(acts) == names
    side = cfg.final_size
    n_conv = len(cfg.channels)
    for i, c in enumerate(cfg.channels, start=1):
        expected = cfg.image_size if cfg.pool == "none" else cfg.image_size // 2**i
        assert acts[f"conv{i}"].shape == (3, c, expected, expected)
    assert acts[f"conv{n_conv}"].shape[-1] == side
    if cfg.fc_units:
        assert acts["fc"].shape == (3, cfg.fc_units)
    assert torch.equal(acts["head"], model(x))
    for block in model.blocks.values():
        assert isinstance(block, torch.nn.Sequential)


def test_default_config_matches_documented_architecture():
    model = seeded_model(CNNConfig())
    assert model.block_names == ["conv1", "conv2", "fc", "head"]
    conv1 = model.blocks["conv1"][0]
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.padding) == (
        1, 8, (5, 5), (2, 2))
    fc = model.blocks["fc"][1]
    assert (fc.in_features, fc.out_features) == (16 * 8 * 8, 64)
    assert model.blocks["head"][-1].out_features == 2


def test_activations_subset_and_validation():
    model = seeded_model(CNNConfig(**SMALL))
    x = images(2, 16)
    acts = model.activations(x, layers=["fc", "conv1"])
    assert list(acts) == ["conv1", "fc"]
    assert acts["conv1"].shape == (2, 3, 8, 8) and acts["fc"].shape == (2, 8)
    assert torch.allclose(acts["fc"], model.run_blocks(x, stop="fc"))
    assert list(model.activations(x, "conv2")) == ["conv2"]
    with pytest.raises(ValueError, match="nope"):
        model.activations(x, ["nope"])


def test_run_blocks_composes_to_forward():
    model = seeded_model(CNNConfig(**SMALL)).eval()
    x = images(4, 16)
    h = model.run_blocks(x, stop="conv1")
    assert h.shape == (4, 3, 8, 8)
    assert torch.allclose(model.run_blocks(h, start="conv2"), model(x))
    h2 = model.run_blocks(h, start="conv2", stop="fc")
    assert torch.allclose(model.run_blocks(h2, start="head", stop="head"), model(x))
    x_before = x.clone()
    model.run_blocks(x)
    assert torch.equal(x, x_before)  # no in-place changes to the input
    with pytest.raises(ValueError, match="conv9"):
        model.run_blocks(x, stop="conv9")
    with pytest.raises(ValueError, match="after"):
        model.run_blocks(h, start="fc", stop="conv2")


def test_torch_func_through_run_blocks():
    model = seeded_model(CNNConfig(**SMALL)).eval()
    x = images(2, 16)

    def decoded(z):
        return model.decode(model.run_blocks(z))

    jac = jacrev(decoded)(x)
    assert jac.shape == (2, 2, 1, 16, 16)
    assert torch.isfinite(jac).all()
    # images do not interact: ∂θ̂_0/∂x_1 = 0
    assert torch.count_nonzero(jac[0, 1]) == 0
    # forward mode against central differences, on a smooth network in float64
    smooth = seeded_model(CNNConfig(**SMALL, nonlinearity="gelu", pool="avg")).double().eval()
    x = x.double()
    tangent = torch.randn_like(x)
    out, dout = jvp(lambda z: smooth.run_blocks(z, stop="conv2"), (x,), (tangent,))
    step = 1e-5
    fd = (smooth.run_blocks(x + step * tangent, stop="conv2")
          - smooth.run_blocks(x - step * tangent, stop="conv2")) / (2 * step)
    assert torch.allclose(out, smooth.run_blocks(x, stop="conv2"))
    assert torch.allclose(dout, fd, atol=1e-7)


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("pool", ["max", "avg", "none"])
def test_forward_mode_works_for_every_nonlinearity_and_pool(nonlinearity, pool):
    cfg = CNNConfig(image_size=8, channels=(2,), kernel_size=3, fc_units=3, pool=pool,
                    nonlinearity=nonlinearity)
    model = seeded_model(cfg)
    x = images(1, 8)
    _, dout = jvp(model.run_blocks, (x,), (torch.ones_like(x),))
    assert dout.shape == (1, 2) and torch.isfinite(dout).all()


def test_construction_is_deterministic_under_seed_and_fork_rng():
    a = seeded_model(CNNConfig(**SMALL), seed=3)
    b = seeded_model(CNNConfig(**SMALL), seed=3)
    c = seeded_model(CNNConfig(**SMALL), seed=4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    with torch.random.fork_rng():
        torch.manual_seed(3)
        d = build_model(CNNConfig(**SMALL))
    for key, value in a.state_dict().items():
        assert torch.equal(value, d.state_dict()[key])


# ---- decoding ------------------------------------------------------------------------------

EDGE_ANGLES = torch.tensor([0.0, 1e-4, 0.3, math.pi / 2, 2.5, math.pi - 1e-4], dtype=torch.float64)


def ideal_output(theta: torch.Tensor, readout: str, n_bins: int = 36) -> torch.Tensor:
    if readout == "angle":
        return theta[:, None]
    if readout == "cossin":
        return angle_targets(theta, "cossin")
    centres = bin_centres(n_bins, dtype=theta.dtype)
    return 4.0 * torch.cos(2 * (centres[None, :] - theta[:, None]))  # von Mises-shaped logits


@pytest.mark.parametrize("readout", ["angle", "cossin", "bins"])
def test_ideal_outputs_decode_back_to_theta(readout):
    theta_hat = decode(ideal_output(EDGE_ANGLES, readout), readout)
    assert theta_hat.shape == EDGE_ANGLES.shape
    assert ((theta_hat >= 0) & (theta_hat < math.pi)).all()
    err = ang.difference(theta_hat, EDGE_ANGLES).abs().max()
    assert err < 1e-9, err


def test_decode_angle_wraps_and_cossin_ignores_scale():
    out = torch.tensor([[-0.1], [math.pi + 0.2], [4 * math.pi + 1.0]])
    assert torch.allclose(decode(out, "angle"), torch.tensor([math.pi - 0.1, 0.2, 1.0]), atol=1e-5)
    theta = torch.tensor([0.2, 3.0])
    v = angle_targets(theta, "cossin") * torch.tensor([[0.01], [50.0]])
    assert torch.allclose(decode(v, "cossin"), theta, atol=1e-5)


def test_bins_decode_is_circular_mean_of_posterior():
    # two equal peaks at bins 0 and K−1 straddle the wrap: mean is 0 (not π/2)
    logits = torch.full((1, 12), -30.0)
    logits[0, 0] = logits[0, 11] = 0.0
    theta_hat = decode(logits, "bins")
    assert ang.difference(theta_hat, torch.tensor([0.0])).abs() < 1e-6
    # one-hot-ish logits decode to the bin centre; gradient flows to the logits
    logits = torch.full((1, 12), -20.0)
    logits[0, 5] = 20.0
    logits.requires_grad_(True)
    theta_hat = decode(logits, "bins", n_bins=12)
    assert torch.allclose(theta_hat, bin_centres(12)[5:6], atol=1e-6)
    logits2 = logits.detach().clone()
    logits2[0, 6] = 19.0
    theta2 = decode(logits2, "bins")
    assert theta2 > theta_hat  # mass on the next bin pulls the estimate towards it
    theta_hat.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_decode_validation():
    with pytest.raises(ValueError, match="scalar"):
        decode(torch.zeros(3, 1), "scalar")
    with pytest.raises(ValueError, match="'cos'"):
        decode(torch.zeros(3, 2), "cos")
    with pytest.raises(ValueError, match="n_bins=5"):
        decode(torch.zeros(3, 4), "bins", n_bins=5)
    with pytest.raises(ValueError, match="width 3"):
        decode(torch.zeros(3, 3), "cossin")
    model = seeded_model(CNNConfig(**SMALL, readout="scalar"))
    with pytest.raises(ValueError, match="scalar"):
        model.predict(images(2, 16))


def test_angle_targets():
    theta = torch.tensor([0.0, 0.5, math.pi - 1e-7, math.pi])
    assert torch.equal(angle_targets(theta, "angle"), theta[:, None])
    cs = angle_targets(theta, "cossin")
    assert cs.shape == (4, 2) and torch.allclose(cs[:, 0], torch.cos(2 * theta))
    bins = angle_targets(theta, "bins", n_bins=6)
    assert bins.dtype == torch.long
    assert bins.tolist() == [0, 0, 5, 0]  # 0.5·6/π = 0.95 → 0; π − ε → last bin; π wraps to 0
    assert angle_targets(bin_centres(6), "bins", 6).tolist() == list(range(6))
    # the largest float32 below π: θ·K/π rounds up to K for K = 36, so the index is clipped
    below_pi = torch.nextafter(torch.tensor([math.pi]), torch.tensor([0.0]))
    assert float(below_pi) < math.pi
    assert angle_targets(below_pi, "bins", n_bins=36).tolist() == [35]
    with pytest.raises(ValueError, match="n_bins"):
        angle_targets(theta, "bins")


def test_predict_matches_decode_of_forward():
    model = seeded_model(CNNConfig(**SMALL, readout="bins", n_bins=9)).eval()
    x = images(3, 16)
    assert torch.allclose(model.predict(x), decode(model(x), "bins", 9))


# ---- reference network ---------------------------------------------------------------------


def test_reference_mlp_shapes_names_and_parameter_count():
    torch.manual_seed(0)
    model = reference_mlp()
    p = 101
    assert model.block_names == ["fc1", "fc2", "head"]
    assert count_parameters(model) == p * p * p + p + p * 20 + 20 + 20 * 2 + 2
    assert model.config["kind"] == "mlp"
    x = images(2, p)
    acts = model.activations(x)
    assert acts["fc1"].shape == (2, p) and acts["fc2"].shape == (2, 20)
    assert model(x).shape == (2, 2)
    assert isinstance(model.blocks["fc1"][0], torch.nn.Flatten)
    assert isinstance(model.blocks["fc2"][1], torch.nn.ReLU)


def test_reference_mlp_hidden_override_and_readouts():
    model = reference_mlp(image_size=12, readout="bins", hidden=(10, 5), n_bins=8)
    assert model(images(3, 12)).shape == (3, 8)
    assert count_parameters(model) == 144 * 10 + 10 + 10 * 5 + 5 + 5 * 8 + 8
    with pytest.raises(ValueError, match="hidden"):
        reference_mlp(image_size=12, hidden=(10,))


# ---- multitask heads -----------------------------------------------------------------------


@pytest.mark.parametrize("fc_units", [0, 8])
def test_add_head_reads_trunk_output(fc_units):
    model = seeded_model(CNNConfig(image_size=16, channels=(3, 4), kernel_size=3,
                                   fc_units=fc_units))
    model.add_head("contrast", readout="scalar")
    model.add_head("coarse", readout="bins", n_bins=5)
    x = images(3, 16)
    assert model(x, head="contrast").shape == (3, 1)
    assert model(x, head="coarse").shape == (3, 5)
    trunk = model.run_blocks(x, stop=model.trunk_names[-1])
    assert torch.allclose(model(x, head="coarse"), model.heads["coarse"](trunk))
    assert model.readout_of("coarse") == "bins" and model.head_readouts["contrast"] == "scalar"
    assert model.readout_of("head") == "cossin"
    assert model.n_bins_of("coarse") == 5
    assert model.block_names[-1] == "head" and "coarse" not in model.block_names
    theta_hat = model.decode(model(x, head="coarse"), model.readout_of("coarse"))
    assert theta_hat.shape == (3,)
    with pytest.raises(ValueError, match="conv1"):
        model.add_head("conv1", readout="angle")
    with pytest.raises(ValueError, match="coarse"):
        model.add_head("coarse", readout="angle")
    with pytest.raises(ValueError, match="'nope'"):
        model(x, head="nope")
    with pytest.raises(ValueError, match="'polar'"):
        model.add_head("third", readout="polar")


# ---- configs -------------------------------------------------------------------------------


def test_cnn_config_round_trip_and_list_channels():
    cfg = CNNConfig(image_size=16, channels=[2, 3], readout="bins", n_bins=10, dropout=0.1)
    assert cfg.channels == (2, 3)
    d = cfg.to_config()
    assert d["kind"] == "cnn" and d["channels"] == [2, 3]
    assert CNNConfig.from_config(json.loads(json.dumps(d))) == cfg
    with pytest.raises(ValueError, match="widht"):
        CNNConfig.from_config({**d, "widht": 3})


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_model(CNNConfig(**SMALL, readout="bins", n_bins=6)),
        lambda: reference_mlp(image_size=10, hidden=(6, 4)),
    ],
)
def test_model_from_config_restores_outputs(make):
    torch.manual_seed(1)
    model = make()
    model.add_head("aux", readout="angle")
    cfg = json.loads(json.dumps(model.config))  # JSON-able, as stored with a checkpoint
    assert cfg["heads"] == {"aux": {"readout": "angle", "n_bins": 36}}
    torch.manual_seed(2)
    clone = model_from_config(cfg)
    size = cfg["image_size"]
    x = images(3, size)
    assert not torch.allclose(clone(x), model(x))  # fresh weights differ
    clone.load_state_dict(model.state_dict())
    model.eval()
    clone.eval()
    assert torch.equal(clone(x), model(x))
    assert torch.equal(clone(x, head="aux"), model(x, head="aux"))
    assert clone.config == model.config
    assert type(clone) is AngleNet


def test_build_model_accepts_plain_field_dict():
    model = build_model({"image_size": 16, "channels": [2], "fc_units": 0, "readout": "angle"})
    assert model.block_names == ["conv1", "head"]
    assert model(images(2, 16)).shape == (2, 1)
    with pytest.raises(ValueError, match="kind"):
        model_from_config({"image_size": 16})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nonlinearity="swish"), "swish"),
        (dict(image_size=8, channels=(2, 2, 2, 2)), "image_size=8"),
        (dict(kernel_size=4), "kernel_size"),
        (dict(dropout=1.0), "dropout"),
        (dict(pool="median"), "median"),
        (dict(readout="polar"), "polar"),
        (dict(fc_units=-1), "fc_units"),
        (dict(channels=()), "channels"),
        (dict(channels=(4, 0)), "channels"),
        (dict(n_bins=1), "n_bins"),
        (dict(in_channels=0), "in_channels"),
        (dict(image_size=16.0), "image_size"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CNNConfig(**kwargs)


def test_small_image_allowed_without_pooling():
    cfg = CNNConfig(image_size=4, channels=(2, 2, 2, 2), kernel_size=3, pool="none", fc_units=0)
    assert build_model(cfg)(images(1, 4)).shape == (1, 2)


def test_count_parameters_counts_all():
    model = seeded_model(CNNConfig(image_size=8, channels=(2,), kernel_size=3, fc_units=0))
    # conv: 1·2·9 + 2; head: (2·4·4)·2 + 2
    assert count_parameters(model) == 20 + 66
    with pytest.raises(ValueError, match="model"):
        count_parameters("not a model")


@pytest.mark.parametrize("build", [
    lambda g: build_model(CNNConfig.standard(), generator=g),
    lambda g: build_model({"kind": "mlp", "image_size": 9, "readout": "bins"}, generator=g),
    lambda g: reference_mlp(image_size=7, generator=g),
])
@pytest.mark.parametrize("seed", [0, 7])
def test_build_with_generator_equals_global_seeding(build, seed):
    torch.manual_seed(seed)
    expected = build(None).state_dict()
    got = build(torch.Generator().manual_seed(seed)).state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in got)
