"""Pretraining on natural patches without orientation labels, as a training Phase like any
other (Phase(source=NaturalPatches(...), rotation=φ) with a "photograph" task): it trains, its
labels never depend on the rotation, it is deterministic, it honours the rotation and the
device, it runs through the strategies and on into a phase on gratings, and bad plans fail at
construction naming the parameter."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("skimage")

from anglesim.distributions import Uniform, VonMises  # noqa: E402
from anglesim.finetune import ReadoutNet  # noqa: E402
from anglesim.losses import get_loss  # noqa: E402
from anglesim.models import CNNConfig, build_model  # noqa: E402
from anglesim.stimuli import GratingSpec, NaturalPatches  # noqa: E402
from anglesim.training import Phase, Task, train  # noqa: E402

TEXTURES = ("brick", "grass", "gravel")
SOURCE = NaturalPatches(size=16, photographs=TEXTURES, scale=0.25)
SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.2)
PHOTO = Task(head="photo", target="photograph", loss="cross_entropy")
SMALL = dict(image_size=16, channels=(4, 6), kernel_size=3, fc_units=8)


def angle_net(seed: int = 0, classes: int = len(TEXTURES)):
    torch.manual_seed(seed)
    model = build_model(CNNConfig(**SMALL))
    model.add_head("photo", readout="classes", n_bins=classes)
    return model


def plain_net(seed: int = 0):
    """A plain Sequential with a photograph head and an orientation head at named layers."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(6 * 4 * 4, 12), nn.ReLU())
    model = ReadoutNet(net, (1, 16, 16), layer="8", readout="cossin",
                       generator=torch.Generator().manual_seed(seed))
    model.add_head("photo", readout="classes", n_bins=len(TEXTURES), layer="8",
                   generator=torch.Generator().manual_seed(seed + 1))
    return model


def natural(rotation: float = 0.0, **changes):
    settings = dict(name="pretrain", source=SOURCE, rotation=rotation, tasks=[PHOTO], epochs=4,
                    steps_per_epoch=8, batch_size=32, lr=1e-2)
    return Phase(**{**settings, **changes})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---- it trains -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [angle_net, plain_net], ids=["AngleNet", "Sequential"])
def test_photograph_classification_loss_falls(make):
    model = make()
    history = train(model, [natural(epochs=6)], seed=3)
    loss = history["train_loss"].values
    assert loss[0] < math.log(len(TEXTURES)) + 0.2  # starts near chance
    assert loss[-1] < 0.8 * loss[0]  # and learns which texture a patch shows
    assert history["eval_error"].isnull().all()  # no spec: no gratings to read out
    with torch.no_grad():
        images, _, values = natural().draw(256, torch.Generator().manual_seed(9))
        guess = model(images, head="photo").argmax(1)
    assert (guess == values["photograph"]).float().mean() > 0.5  # chance is 1/3


def test_the_main_head_is_untouched_by_a_photograph_phase():
    model = angle_net()
    before = weights(model)
    train(model, [natural(epochs=1)], seed=0)
    after = weights(model)
    head = [k for k in before if k.startswith("blocks.head")]
    trunk = [k for k in before if k.startswith("blocks.conv1") and "weight" in k]
    assert head and all(torch.equal(before[k], after[k]) for k in head)
    assert not torch.equal(before[trunk[0]], after[trunk[0]])


# ---- labels and rotations --------------------------------------------------------------------


def test_labels_are_drawn_before_and_independently_of_the_rotation():
    draws = {phi: natural(phi).draw(64, torch.Generator().manual_seed(5))
             for phi in (0.0, 0.4, math.pi / 4, -2.0)}
    labels = [values["photograph"] for _, _, values in draws.values()]
    assert all(torch.equal(labels[0], other) for other in labels[1:])
    for phi, (_, rotations, values) in draws.items():
        assert set(values) == {"photograph"} and values["photograph"].dtype == torch.long
        assert torch.all(rotations == phi)  # the "angles" of a natural batch: its rotation
    assert not torch.equal(draws[0.0][0], draws[0.4][0])


def test_rotation_is_honoured_exactly_as_natural_patches_draw_it():
    for phi in (0.0, math.radians(22.5), math.radians(45)):
        images, rotations, values = natural(phi).draw(16, torch.Generator().manual_seed(2))
        expected = SOURCE.draw(16, torch.Generator().manual_seed(2), rotation=phi)
        assert torch.equal(images, expected.images)
        assert torch.equal(values["photograph"], expected.labels)
        assert torch.equal(rotations, expected.rotations)


def test_training_honours_the_rotation():
    """The same seed at another rotation: the same photographs and positions, turned, so other
    images and other weights; at the same rotation, the same weights."""
    seen = []
    for phi in (0.0, math.radians(45), math.radians(45)):
        model = angle_net()
        train(model, [natural(phi, epochs=1, steps_per_epoch=2, batch_size=8)], seed=4)
        seen.append(weights(model))
    assert any(not torch.equal(seen[0][k], v) for k, v in seen[1].items())
    assert all(torch.equal(seen[1][k], v) for k, v in seen[2].items())


# ---- determinism and devices -----------------------------------------------------------------


def test_same_seed_same_numbers_other_seed_others():
    runs = []
    for seed in (7, 7, 8):
        model = angle_net()
        history = train(model, [natural(0.3, epochs=2), Phase(
            "finetune", Uniform(), SPEC, epochs=2, steps_per_epoch=4, batch_size=16)], seed=seed)
        runs.append((history, weights(model)))
    (h1, w1), (h2, w2), (h3, w3) = runs
    assert h1.identical(h2) and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)
    assert list(h1["epoch_phase"].values) == ["pretrain"] * 2 + ["finetune"] * 2
    assert h1["eval_error"].isel(epoch=slice(0, 2)).isnull().all()
    assert h1["eval_error"].isel(epoch=slice(2, 4)).notnull().all()


def test_a_given_generator_drives_the_patches():
    histories = [train(angle_net(), [natural(epochs=1)], seed=seed,
                       generator=torch.Generator().manual_seed(11)) for seed in (0, 1)]
    # the data come from the generator given, not the seed; only the evaluation stream and
    # strategies use the seed, and this phase has neither
    assert histories[0].identical(histories[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_natural_phase_trains_on_cuda():
    model = angle_net()
    train(model, [natural(0.4, epochs=1, spec=SPEC)], seed=1, device="cuda")
    assert {p.device.type for p in model.parameters()} == {"cuda"}


# ---- through the strategies, on to gratings --------------------------------------------------


@pytest.mark.parametrize("strategy, params", [
    ("full", {}), ("linear_probe", {}), ("surgical", {"blocks": ["0", "3"]}),
    ("lp_ft", {"probe_epochs": 1}), ("l2_sp", {}), ("ldifs", {}), ("auto_rgn", {}),
    ("tpgm", {}), ("lora", {}), ("discriminative", {}), ("freeze", {"blocks": ["0"]}),
])
def test_pretrain_on_patches_then_finetune_on_gratings_with_a_strategy(strategy, params):
    model = plain_net()
    phases = [natural(0.3, epochs=2, strategy=strategy, strategy_params=params),
              Phase("finetune", VonMises(math.pi / 4, 2.0), SPEC, epochs=2, steps_per_epoch=4,
                    batch_size=16, strategy=strategy, strategy_params=params)]
    before = weights(model)
    history = train(model, phases, seed=2)
    after = weights(model)
    assert history.sizes["epoch"] == 4 and bool(history["train_loss"].notnull().all())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_grating_task_of_its_own_trains_beside_the_patches():
    model = angle_net()
    phase = natural(epochs=3, spec=SPEC, tasks=[
        PHOTO, Task(head="head", loss="cosine", prior=Uniform(), weight=2.0)])
    history = train(model, [phase], seed=5)
    error = history["eval_error"].values
    assert (error < math.pi / 2).all() and error[-1] < error[0]


# ---- configs ---------------------------------------------------------------------------------


def test_configs_of_grating_phases_keep_their_form_and_natural_ones_say_their_source():
    grating = Phase("finetune", Uniform(), SPEC)
    assert "source" not in grating.to_config() and "rotation" not in grating.to_config()
    config = natural(0.25).to_config()
    assert config["prior"] is None and config["spec"] is None
    assert NaturalPatches(**config["source"]) == SOURCE and config["rotation"] == 0.25
    assert config["tasks"][0]["target"] == "photograph"


def test_cross_entropy_on_classes_is_torchs():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    assert torch.allclose(get_loss("cross_entropy", "classes", n_bins=3)(logits, labels),
                          F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="integer tensor"):
        get_loss("cross_entropy", "classes")(logits, labels.float())
    with pytest.raises(ValueError, match="n_bins=4"):
        get_loss("cross_entropy", "classes", n_bins=4)(logits, labels)


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, match", [
    (dict(prior=Uniform()), r"^prior must be None for a phase on natural patches"),
    (dict(tasks=None), r"^tasks must be the tasks of a phase on natural patches.*got None"),
    (dict(tasks=[Task()]), r"^tasks\[0\] \(target 'angle'\) on natural patches must"),
    (dict(tasks=[Task(prior=Uniform())]), r"^tasks\[0\] \(target 'angle'\).*spec=None"),
    (dict(tasks=[Task(head="photo", target="photograph", loss="cross_entropy",
                      prior=Uniform())]), r"^tasks\[0\] \(target 'photograph'\) learns"),
    (dict(vary={"contrast": (0.5, 1.5)}), r"^vary needs a phase on gratings"),
    (dict(dataset_size=64), r"^dataset_size needs a phase on gratings"),
    (dict(source="brick"), r"^source must be None or a NaturalPatches, got 'brick'"),
    (dict(rotation=math.inf), r"^rotation must be .*got inf"),
    (dict(rotation="45"), r"^rotation must be .*got '45'"),
])
def test_bad_natural_phases_fail_at_construction_naming_them(changes, match):
    with pytest.raises(ValueError, match=match):
        natural(**changes)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rotation=0.1), r"^rotation turns a phase's natural patches.*got rotation=0.1"),
    (dict(tasks=[PHOTO]), r"^tasks\[0\] has target 'photograph', which needs a phase on "
                          r"natural patches"),
    (dict(prior=None), r"^prior must be an AnglePrior .*got None"),
    (dict(spec=None), r"^spec must be a GratingSpec for a phase on gratings, got None"),
])
def test_bad_grating_phases_fail_at_construction_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Phase(**{"name": "finetune", "prior": Uniform(), "spec": SPEC, **kwargs})


def test_a_photograph_task_needs_a_classification_loss():
    with pytest.raises(ValueError, match=r"^loss must be a loss for the 'classes' readout"):
        Task(head="photo", target="photograph", loss="cosine")


@pytest.mark.parametrize("make, match", [
    (lambda: angle_net(classes=4), r"has 4 classes; the phase's source has 3 photographs"),
    (lambda: build_model(CNNConfig(**SMALL)), r"task head 'photo' .* is not a head"),
])
def test_heads_that_do_not_fit_the_source_fail_before_training(make, match):
    model = make()
    before = weights(model)
    with pytest.raises(ValueError, match=match):
        train(model, [Phase("first", Uniform(), SPEC, epochs=1, steps_per_epoch=1),
                      natural()], seed=0)
    assert all(torch.equal(before[k], v) for k, v in weights(model).items())


def test_a_scalar_head_cannot_learn_photographs():
    torch.manual_seed(0)
    model = build_model(CNNConfig(**SMALL))
    model.add_head("photo", readout="scalar")
    with pytest.raises(ValueError, match=r"needs a 'classes' head; head 'photo' has readout "
                                         r"'scalar'"):
        train(model, [natural()], seed=0)
