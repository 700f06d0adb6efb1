"""The field's architectures (anglesim.models: ResNet, VGG, AlexNet): torchvision's state_dict
keys and shapes, any image size and channel count, deterministic initialisation, readouts,
configs and validation.

The torchvision key and shape lists below are written down from torchvision's documented
architectures (torchvision.models.resnet18 / vgg16 / vgg11 / alexnet at 3 channels and 1000
classes), and the parameter counts are the ``num_params`` of torchvision's model pages;
torchvision itself is not imported.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jvp

from anglesim.fisher import list_layers, propagated_fisher
from anglesim.models import (
    ARCHITECTURES,
    AlexNet,
    ArchitectureConfig,
    BasicBlock,
    ResNet,
    build_model,
    count_parameters,
    model_from_config,
)
from anglesim.stimuli import GratingSpec

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def expand(table: list[tuple[str, tuple[int, ...] | int]]) -> list[tuple[str, tuple]]:
    """(key, shape) rows from a table whose batch-norm rows give the module and its width."""
    rows = []
    for name, shape in table:
        if isinstance(shape, int):  # a BatchNorm2d of this many channels
            rows += [(f"{name}.{k}", () if k == "num_batches_tracked" else (shape,)) for k in BN]
        else:
            rows.append((name, shape))
    return rows


# torchvision.models.resnet18(): conv1, bn1, layer1–4 of two BasicBlocks, fc
RESNET18 = expand([
    ("conv1.weight", (64, 3, 7, 7)), ("bn1", 64),
    ("layer1.0.conv1.weight", (64, 64, 3, 3)), ("layer1.0.bn1", 64),
    ("layer1.0.conv2.weight", (64, 64, 3, 3)), ("layer1.0.bn2", 64),
    ("layer1.1.conv1.weight", (64, 64, 3, 3)), ("layer1.1.bn1", 64),
    ("layer1.1.conv2.weight", (64, 64, 3, 3)), ("layer1.1.bn2", 64),
    ("layer2.0.conv1.weight", (128, 64, 3, 3)), ("layer2.0.bn1", 128),
    ("layer2.0.conv2.weight", (128, 128, 3, 3)), ("layer2.0.bn2", 128),
    ("layer2.0.downsample.0.weight", (128, 64, 1, 1)), ("layer2.0.downsample.1", 128),
    ("layer2.1.conv1.weight", (128, 128, 3, 3)), ("layer2.1.bn1", 128),
    ("layer2.1.conv2.weight", (128, 128, 3, 3)), ("layer2.1.bn2", 128),
    ("layer3.0.conv1.weight", (256, 128, 3, 3)), ("layer3.0.bn1", 256),
    ("layer3.0.conv2.weight", (256, 256, 3, 3)), ("layer3.0.bn2", 256),
    ("layer3.0.downsample.0.weight", (256, 128, 1, 1)), ("layer3.0.downsample.1", 256),
    ("layer3.1.conv1.weight", (256, 256, 3, 3)), ("layer3.1.bn1", 256),
    ("layer3.1.conv2.weight", (256, 256, 3, 3)), ("layer3.1.bn2", 256),
    ("layer4.0.conv1.weight", (512, 256, 3, 3)), ("layer4.0.bn1", 512),
    ("layer4.0.conv2.weight", (512, 512, 3, 3)), ("layer4.0.bn2", 512),
    ("layer4.0.downsample.0.weight", (512, 256, 1, 1)), ("layer4.0.downsample.1", 512),
    ("layer4.1.conv1.weight", (512, 512, 3, 3)), ("layer4.1.bn1", 512),
    ("layer4.1.conv2.weight", (512, 512, 3, 3)), ("layer4.1.bn2", 512),
    ("fc.weight", (1000, 512)), ("fc.bias", (1000,)),
])

# torchvision.models.vgg16(): configuration D; convolutions at these indices of features
VGG16 = expand([
    ("features.0.weight", (64, 3, 3, 3)), ("features.0.bias", (64,)),
    ("features.2.weight", (64, 64, 3, 3)), ("features.2.bias", (64,)),
    ("features.5.weight", (128, 64, 3, 3)), ("features.5.bias", (128,)),
    ("features.7.weight", (128, 128, 3, 3)), ("features.7.bias", (128,)),
    ("features.10.weight", (256, 128, 3, 3)), ("features.10.bias", (256,)),
    ("features.12.weight", (256, 256, 3, 3)), ("features.12.bias", (256,)),
    ("features.14.weight", (256, 256, 3, 3)), ("features.14.bias", (256,)),
    ("features.17.weight", (512, 256, 3, 3)), ("features.17.bias", (512,)),
    ("features.19.weight", (512, 512, 3, 3)), ("features.19.bias", (512,)),
    ("features.21.weight", (512, 512, 3, 3)), ("features.21.bias", (512,)),
    ("features.24.weight", (512, 512, 3, 3)), ("features.24.bias", (512,)),
    ("features.26.weight", (512, 512, 3, 3)), ("features.26.bias", (512,)),
    ("features.28.weight", (512, 512, 3, 3)), ("features.28.bias", (512,)),
    ("classifier.0.weight", (4096, 25088)), ("classifier.0.bias", (4096,)),
    ("classifier.3.weight", (4096, 4096)), ("classifier.3.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
])

# torchvision.models.vgg11(): configuration A
VGG11 = expand([
    ("features.0.weight", (64, 3, 3, 3)), ("features.0.bias", (64,)),
    ("features.3.weight", (128, 64, 3, 3)), ("features.3.bias", (128,)),
    ("features.6.weight", (256, 128, 3, 3)), ("features.6.bias", (256,)),
    ("features.8.weight", (256, 256, 3, 3)), ("features.8.bias", (256,)),
    ("features.11.weight", (512, 256, 3, 3)), ("features.11.bias", (512,)),
    ("features.13.weight", (512, 512, 3, 3)), ("features.13.bias", (512,)),
    ("features.16.weight", (512, 512, 3, 3)), ("features.16.bias", (512,)),
    ("features.18.weight", (512, 512, 3, 3)), ("features.18.bias", (512,)),
    ("classifier.0.weight", (4096, 25088)), ("classifier.0.bias", (4096,)),
    ("classifier.3.weight", (4096, 4096)), ("classifier.3.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
])

# torchvision.models.vgg16_bn(): each convolution followed by a BatchNorm2d, then the ReLU
_VGG16_BN_CONVS = [(0, 3, 64), (3, 64, 64), (7, 64, 128), (10, 128, 128), (14, 128, 256),
                   (17, 256, 256), (20, 256, 256), (24, 256, 512), (27, 512, 512),
                   (30, 512, 512), (34, 512, 512), (37, 512, 512), (40, 512, 512)]
VGG16_BN = expand(
    [row for i, c_in, c in _VGG16_BN_CONVS for row in (
        (f"features.{i}.weight", (c, c_in, 3, 3)), (f"features.{i}.bias", (c,)),
        (f"features.{i + 1}", c))]
    + [("classifier.0.weight", (4096, 25088)), ("classifier.0.bias", (4096,)),
       ("classifier.3.weight", (4096, 4096)), ("classifier.3.bias", (4096,)),
       ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,))])

# torchvision.models.alexnet()
ALEXNET = expand([
    ("features.0.weight", (64, 3, 11, 11)), ("features.0.bias", (64,)),
    ("features.3.weight", (192, 64, 5, 5)), ("features.3.bias", (192,)),
    ("features.6.weight", (384, 192, 3, 3)), ("features.6.bias", (384,)),
    ("features.8.weight", (256, 384, 3, 3)), ("features.8.bias", (256,)),
    ("features.10.weight", (256, 256, 3, 3)), ("features.10.bias", (256,)),
    ("classifier.1.weight", (4096, 9216)), ("classifier.1.bias", (4096,)),
    ("classifier.4.weight", (4096, 4096)), ("classifier.4.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
])

TORCHVISION = {"resnet18": RESNET18, "vgg16": VGG16, "vgg11": VGG11, "vgg16_bn": VGG16_BN,
               "alexnet": ALEXNET}

# num_params of torchvision's model pages (3 channels, 1000 classes)
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "vgg11": 132_863_336,
                      "vgg11_bn": 132_868_840, "vgg16": 138_357_544, "vgg16_bn": 138_365_992,
                      "alexnet": 61_100_840}


def small(kind: str, **changes) -> dict:
    cfg = {"kind": kind, "image_size": 32, "in_channels": 1, "width": 0.125, "num_classes": 2}
    cfg.update(changes)
    return cfg


def seeded(cfg: dict, seed: int = 0):
    return build_model(cfg, generator=torch.Generator().manual_seed(seed))


# ---- torchvision's keys and shapes -----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TORCHVISION))
def test_state_dict_keys_and_shapes_are_torchvisions(kind):
    model = build_model({"kind": kind}, device="meta")  # shapes only, no memory
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == TORCHVISION[kind]
    # a saved torchvision state_dict (same keys and shapes) loads strictly
    saved = {k: torch.empty(shape, device="meta") for k, shape in TORCHVISION[kind]}
    assert not model.load_state_dict(saved, strict=True).missing_keys
    wrong = dict(saved)
    first = TORCHVISION[kind][0][0]
    wrong[first] = torch.empty(1, 1, 1, 1, device="meta")
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.load_state_dict(wrong)


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_parameter_counts_are_torchvisions(kind):
    assert count_parameters(build_model({"kind": kind}, device="meta")) == \
        TORCHVISION_PARAMS[kind]


def test_a_resnet18_state_dict_loads_with_its_values():
    saved = {k: torch.randn(shape) if shape else torch.tensor(3)
             for k, shape in RESNET18}
    model = seeded({"kind": "resnet18"})
    model.load_state_dict(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_torchvisions_own_network_and_weights_give_the_same_outputs(kind):
    """Where torchvision imports (not beside the CPU torch here; it ran on the device
    machine): its freshly built network's state_dict loads into ours, and both give the same
    outputs and have the same named_modules() paths."""
    try:
        import torchvision
    except Exception as error:  # noqa: BLE001 - any import failure means: not here
        pytest.skip(f"torchvision does not import here: {type(error).__name__}")
    theirs = getattr(torchvision.models, kind)(weights=None).eval()
    ours = build_model({"kind": kind}).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_one_channel_and_other_outputs_change_only_the_first_and_last_layer():
    model = build_model({"kind": "vgg16", "in_channels": 1, "num_classes": 10}, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = dict(VGG16)
    expected["features.0.weight"] = (64, 1, 3, 3)
    expected["classifier.6.weight"], expected["classifier.6.bias"] = (10, 4096), (10,)
    assert shapes == expected


# ---- any size, any channel count -------------------------------------------------------------


@pytest.mark.parametrize("kind", ARCHITECTURES)
@pytest.mark.parametrize("size, channels", [(32, 1), (32, 3), (64, 1), (96, 3)])
def test_every_architecture_runs_at_small_sizes_and_channels(kind, size, channels):
    model = seeded(small(kind, image_size=size, in_channels=channels)).eval()
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["resnet18", "vgg11", "alexnet"])
def test_224_pixels_at_a_small_width(kind):
    model = seeded({"kind": kind, "width": 0.0625, "num_classes": 3}).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


def test_alexnet_pads_its_pools_only_below_63_pixels():
    pools = lambda m: [layer.padding for layer in m.features  # noqa: E731
                       if isinstance(layer, torch.nn.MaxPool2d)]
    assert pools(build_model({"kind": "alexnet", "image_size": 63}, device="meta")) == [0] * 3
    assert pools(build_model({"kind": "alexnet", "image_size": 62}, device="meta")) == [1] * 3
    # torchvision's geometry has no output at 62 px; the padded pools have
    model = seeded(small("alexnet", image_size=62)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 62, 62)).shape == (1, 2)


def test_width_scales_every_layer():
    model = seeded(small("resnet18", width=0.25, in_channels=3))
    assert model.conv1.out_channels == 16
    assert [getattr(model, f"layer{k}")[1].conv2.out_channels for k in (1, 2, 3, 4)] == [
        16, 32, 64, 128]
    vgg = build_model(small("vgg16", width=0.25), device="meta")
    assert vgg.classifier[0].in_features == 128 * 49 and vgg.classifier[3].out_features == 1024


# ---- layers by name --------------------------------------------------------------------------


def test_layers_are_named_module_paths_as_in_torchvision():
    resnet = build_model(small("resnet18"), device="meta")
    names = dict(resnet.named_modules())
    for path in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer1.0", "layer1.0.conv1",
                 "layer2.0.downsample.0", "layer4.1.bn2", "avgpool", "fc"):
        assert path in names
    assert isinstance(names["layer3.1"], BasicBlock)
    vgg = build_model(small("vgg16"), device="meta")
    assert isinstance(dict(vgg.named_modules())["features.0"], torch.nn.Conv2d)
    assert isinstance(dict(vgg.named_modules())["classifier.6"], torch.nn.Linear)
    layers = list_layers(resnet)
    assert layers[0] == "input" and layers[-1] == "output" and "layer1.0.conv1" in layers


def test_fisher_of_named_layers_obeys_data_processing():
    model = seeded({"kind": "resnet18", "image_size": 32, "width": 0.0625,
                    "readout": "cossin"}).eval()
    spec = GratingSpec(size=32, channels=3, noise_std=1.0)
    fi = propagated_fisher(model.double(), spec, torch.tensor([0.3, 1.2], dtype=torch.float64),
                           layers=["input", "layer1.0.conv1", "layer3", "output"])
    values = fi.values
    assert list(fi.layer.values) == ["input", "layer1.0.conv1", "layer3", "output"]
    assert torch.isfinite(torch.as_tensor(values)).all() and (values >= 0).all()
    assert (values[1:] <= values[0] * (1 + 1e-6)).all()


def test_torch_func_forward_mode_runs_through_every_family():
    for kind in ("resnet18", "vgg11_bn", "alexnet"):
        model = seeded(small(kind)).eval()
        x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
        out, tangent = jvp(model, (x,), (torch.ones_like(x),))
        assert torch.allclose(out, model(x)) and tangent.shape == out.shape


# ---- initialisation --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_initialisation_is_deterministic_given_the_generator(kind):
    cfg = small(kind)
    state = torch.get_rng_state()
    a, b, c = seeded(cfg, 0).state_dict(), seeded(cfg, 0).state_dict(), seeded(cfg, 1).state_dict()
    assert torch.equal(state, torch.get_rng_state())  # the global generator is untouched
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    torch.manual_seed(5)
    d = build_model(cfg).state_dict()
    torch.manual_seed(5)
    e = build_model(cfg).state_dict()
    assert all(torch.equal(d[k], e[k]) for k in d)


def test_initial_weights_follow_torchvisions_schemes():
    resnet = seeded({"kind": "resnet18", "width": 0.5})
    w = resnet.layer3[0].conv1.weight  # He normal, fan-out = 128 · 3 · 3
    assert w.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.05)
    assert torch.equal(resnet.bn1.weight, torch.ones(32)) and not resnet.fc.bias.any()
    assert torch.equal(resnet.layer1[0].bn1.running_var, torch.ones(32))
    vgg = seeded({"kind": "vgg11", "width": 0.25})
    assert vgg.classifier[3].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert not vgg.features[0].bias.any()
    alex = seeded({"kind": "alexnet", "width": 0.25})
    bound = 1 / math.sqrt(alex.features[3].weight[0].numel())
    assert alex.features[3].weight.abs().max().item() <= bound
    assert alex.features[3].bias.abs().max().item() > 0.5 * bound


def test_device_receives_the_weights_drawn_on_the_cpu():
    cpu = seeded(small("vgg11")).state_dict()
    moved = build_model(small("vgg11"), generator=torch.Generator().manual_seed(0),
                        device="cpu").state_dict()
    assert all(torch.equal(cpu[k], moved[k]) for k in cpu)


# ---- readouts and configs --------------------------------------------------------------------


def test_an_angle_readout_gives_a_decode_and_a_classifier_none():
    model = seeded(small("resnet18", num_classes=None, readout="cossin")).eval()
    out = model(torch.randn(4, 1, 32, 32))
    assert out.shape == (4, 2)
    theta = model.decode(out)
    assert theta.shape == (4,) and bool(((theta >= 0) & (theta < math.pi)).all())
    bins = seeded(small("alexnet", num_classes=None, readout="bins", n_bins=12))
    assert bins.classifier[6].out_features == 12
    classifier = seeded(small("vgg11"))
    assert classifier.readout is None and not hasattr(classifier, "decode")


def test_config_round_trip_rebuilds_the_same_network():
    cfg = small("vgg16_bn", readout="angle", num_classes=None, dropout=0.1)
    model = seeded(cfg, 3)
    config = model.config
    assert config == ArchitectureConfig(**cfg).to_config() and config["num_classes"] == 1
    again = model_from_config(config)
    assert isinstance(again, type(model)) and again.config == config
    twin = build_model(config, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(v, twin.state_dict()[k]) for k, v in model.state_dict().items())
    assert isinstance(build_model(ArchitectureConfig("resnet34", image_size=32, width=0.1),
                                  device="meta"), ResNet)
    assert isinstance(build_model(ArchitectureConfig("alexnet"), device="meta"), AlexNet)


def test_existing_configs_still_build_anglesims_networks():
    model = build_model({"image_size": 16, "channels": [2], "fc_units": 4})
    assert model.block_names == ["conv1", "fc", "head"]
    assert build_model({"kind": "mlp", "image_size": 5}).block_names == ["fc1", "fc2", "head"]


@pytest.mark.parametrize("changes, match", [
    (dict(kind="resnet50"), "kind"),
    (dict(kind="vgg16", image_size=31), "image_size"),
    (dict(kind="alexnet", image_size=8), "image_size"),
    (dict(in_channels=0), "in_channels"),
    (dict(width=0.0), "width"),
    (dict(width=True), "width"),
    (dict(num_classes=0), "num_classes"),
    (dict(readout="scalar"), "readout"),
    (dict(readout="cossin", num_classes=3), "num_classes"),
    (dict(n_bins=1), "n_bins"),
    (dict(dropout=1.0), "dropout"),
    (dict(heads={}), "unknown"),
])
def test_bad_configs_name_the_parameter(changes, match):
    cfg = small("resnet18")
    cfg.update(changes)
    with pytest.raises(ValueError, match=match):
        build_model(cfg, device="meta")
