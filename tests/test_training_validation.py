"""Bad input to the training API fails at construction, naming the parameter and the value;
numpy scalars are accepted where Python ones are (issue 14)."""

import json
import math

import numpy as np
import pytest
import torch

from anglesim.data import FiniteDataset, draw, evaluation_grid, resolve_device
from anglesim.distributions import Uniform
from anglesim.evaluate import evaluate_error, evaluate_target_error
from anglesim.losses import get_loss
from anglesim.models import CNNConfig, build_model, reference_mlp
from anglesim.stimuli import GratingSpec
from anglesim.training import Phase, Task, train

SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)
CONFIG = CNNConfig(image_size=16, channels=(4, 6), kernel_size=3, fc_units=12, readout="cossin")


def small_model(seed=0):
    torch.manual_seed(seed)
    return build_model(CONFIG)


def phase(name="p", **kw):
    base = dict(prior=Uniform(), spec=SPEC, epochs=1, steps_per_epoch=2, batch_size=8,
                eval_angles=8, eval_repeats=1)
    base.update(kw)
    return Phase(name, **base)


# ---- Phase ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr="0.1"), r"^lr must be .*got '0.1'"),
        (dict(lr=math.inf), r"^lr must be .*got inf"),
        (dict(weight_decay=math.nan), r"^weight_decay must be .*got nan"),
        (dict(weight_decay="0"), r"^weight_decay must be"),
        (dict(trainable="fc"), r"^trainable must be None or a non-empty list of names, got 'fc'"),
        (dict(trainable=[]), r"^trainable must be None or a non-empty list of names, got \[\]"),
        (dict(trainable=["fc", 3]), r"^trainable\[1\] must be"),
        (dict(prior="uniform"), r"^prior must be None or an AnglePrior.*got 'uniform'"),
        (dict(spec="grating"), r"^spec must be None or a GratingSpec.*got 'grating'"),
        (dict(loss="hinge"), r"^loss must be one of .*got 'hinge'"),
        (dict(loss="mse"), r"^loss must be a loss for an angle readout"),
        (dict(loss="lp", loss_params={"q": 1}), r"unknown parameter.*\['q'\]"),
        (dict(loss="lp", loss_params={"p": -1.0}), r"^p must be .*got -1.0"),
        (dict(loss_params="p=2"), r"^loss_params must be a dict.*got 'p=2'"),
        (dict(optimizer=3), r"^optimizer must be one of .*got 3"),
        (dict(epochs=2.0), r"^epochs must be an integer.*got 2.0"),
        (dict(batch_size=True), r"^batch_size must be an integer.*got True"),
        (dict(dataset_size="4"), r"^dataset_size must be None or an integer >= 1, got '4'"),
        (dict(reset_optimizer="no"), r"^reset_optimizer must be True or False, got 'no'"),
        (dict(tasks=Task()), r"^tasks must be None or a non-empty list of Task"),
        (dict(tasks=["head"]), r"^tasks\[0\] must be a Task, got 'head'"),
        (dict(vary={"contrast": ("0.2", 1.0)}), r"^vary\['contrast'\] lo must be .*got '0.2'"),
        (dict(vary={"contrast": (0.2, math.nan)}), r"^vary\['contrast'\] hi must be"),
        (dict(strategy=3), r"^strategy must be one of"),
    ],
)
def test_bad_phase_values_fail_at_construction_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        phase(**kwargs)


@pytest.mark.parametrize("name", [None, "", 3])
def test_phase_name_must_be_a_non_empty_string(name):
    with pytest.raises(ValueError, match=r"^name must be a non-empty string"):
        Phase(name, prior=Uniform(), spec=SPEC)


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers():
    ph = phase(epochs=np.int64(2), steps_per_epoch=np.int32(2), batch_size=np.int64(8),
               lr=np.float32(1e-3), weight_decay=np.float64(0.0), dataset_size=np.int64(4),
               patience=np.int64(2), eval_angles=np.int16(8), eval_repeats=np.int64(1),
               reset_optimizer=np.bool_(True),
               strategy="lora", strategy_params={"rank": np.int64(2), "merge": np.bool_(True)})
    assert type(ph.epochs) is int and ph.epochs == 2
    assert type(ph.dataset_size) is int and type(ph.lr) is float
    assert ph.reset_optimizer is True
    json.dumps(ph.to_config())  # the config stays JSON-able
    hist = train(small_model(), [ph], seed=np.int64(1))
    assert np.isfinite(hist["train_loss"].values).all()


def test_python_numbers_keep_their_form_in_the_config():
    """Configs (and the cache hashes made of them) are unchanged for Python values."""
    cfg = phase(lr=1, weight_decay=0).to_config()
    assert cfg["lr"] == 1 and type(cfg["lr"]) is int
    assert type(cfg["weight_decay"]) is int


# ---- Task ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(head=3), r"^head must be a non-empty string, got 3"),
        (dict(head=""), r"^head must be a non-empty string"),
        (dict(loss="hinge"), r"^loss must be one of .*got 'hinge'"),
        (dict(loss="mse"), r"^loss must be a loss for an angle readout"),
        (dict(head="c", target="contrast", loss="cosine"), r"^loss must be a loss for the "
                                                           r"'scalar' readout"),
        (dict(loss="lp", loss_params={"eps": 0.0}), r"^eps must be .*got 0.0"),
        (dict(weight="1"), r"^weight must be .*got '1'"),
        (dict(weight=-0.5), r"^weight must be >= 0"),
        (dict(weight=math.nan), r"^weight must be .*got nan"),
        (dict(prior="uniform"), r"^prior must be None or an AnglePrior, got 'uniform'"),
        (dict(spec=3), r"^spec must be None or a GratingSpec, got 3"),
        (dict(target=0), r"^target must be one of"),
    ],
)
def test_bad_task_values_fail_at_construction_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Task(**kwargs)


def test_task_accepts_numpy_weight_and_offset():
    task = Task(weight=np.float32(0.5), target_offset=np.float64(0.25))
    assert type(task.weight) is float and task.target_offset == 0.25


# ---- train ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(model="cnn"), r"^model must be an AngleNet.*got 'cnn'"),
        (dict(seed="1"), r"^seed must be an integer.*got '1'"),
        (dict(seed=-1), r"^seed must be an integer >= 0"),
        (dict(seed=1.5), r"^seed must be an integer"),
        (dict(generator="g"), r"^generator must be None or a torch.Generator.*got 'g'"),
        (dict(generator=7), r"^generator must be None or a torch.Generator.*got 7"),
        (dict(device="bogus"), r"^device must be a device such as 'cpu'.*got 'bogus'"),
        (dict(device=3), r"^device must be a torch.device or a string.*got 3"),
        (dict(on_epoch="print"), r"^on_epoch must be None or a callable"),
    ],
)
def test_bad_train_arguments_are_named(kwargs, match):
    args = dict(model=small_model(), phases=[phase()], seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train(**args)


def test_a_device_the_machine_lacks_is_named():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=rf"^device must be a device this machine has.*"
                                         rf"'cuda:{count}'"):
        train(small_model(), [phase()], seed=0, device=f"cuda:{count}")


@pytest.mark.parametrize("phases, match", [
    (None, r"^phases must be a list of Phase, got None"),
    ("p", r"^phases must be a list of Phase"),
    ([], r"^phases must hold at least one Phase"),
])
def test_bad_phase_lists_are_named(phases, match):
    with pytest.raises(ValueError, match=match):
        train(small_model(), phases, seed=0)


def test_single_phase_instead_of_a_list_is_named():
    with pytest.raises(ValueError, match=r"^phases must be a list of Phase"):
        train(small_model(), phase(), seed=0)
    with pytest.raises(ValueError, match=r"^phases\[1\] must be a Phase"):
        train(small_model(), [phase(), "finetune"], seed=0)


@pytest.mark.parametrize(
    "second, match",
    [
        (phase("ft", tasks=[Task(head="second")]), "task head 'second' of phase 'ft'"),
        (phase("ft", trainable=["conv9"]), "conv9"),
        (phase("ft", optimizer="sgd", reset_optimizer=False), "from 'adam' to 'sgd'"),
        (phase("ft", loss="cross_entropy"), "does not support readout 'cossin'"),
    ],
)
def test_a_bad_later_phase_fails_before_anything_trains(second, match):
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        train(model, [phase("pre"), second], seed=0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_numpy_seed_gives_the_python_seed_result():
    a, b = small_model(), small_model()
    train(a, [phase()], seed=3)
    train(b, [phase()], seed=np.int64(3))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


# ---- data, models, losses, evaluation --------------------------------------------------------


def test_data_functions_name_bad_priors_generators_counts_and_devices():
    with pytest.raises(ValueError, match=r"^prior must be an AnglePrior.*got 'uniform'"):
        draw("uniform", SPEC, 4)
    with pytest.raises(ValueError, match=r"^generator must be None or a torch.Generator"):
        draw(Uniform(), SPEC, 4, generator="seed-1")
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got 0"):
        draw(Uniform(), SPEC, 0)
    with pytest.raises(ValueError, match=r"^device must be .*got 'gpu0'"):
        evaluation_grid(8, device="gpu0")
    with pytest.raises(ValueError, match=r"^images must be a tensor"):
        FiniteDataset([[0.0]], torch.zeros(1))
    images, angles = draw(Uniform(), SPEC, np.int64(5), torch.Generator().manual_seed(0))
    assert images.shape[0] == 5 and len(evaluation_grid(np.int32(6))) == 6
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_models_and_losses_accept_numpy_integers_and_keep_configs_json():
    cfg = CNNConfig(image_size=np.int64(16), channels=(np.int64(4),), kernel_size=np.int32(3),
                    fc_units=np.int64(0), dropout=np.float32(0.25))
    model = build_model(cfg)
    json.dumps(model.config)
    assert type(cfg.image_size) is int and type(cfg.dropout) is float
    mlp = reference_mlp(image_size=np.int64(8), hidden=(np.int64(4), 3), n_bins=np.int64(12))
    json.dumps(mlp.config)
    loss = get_loss("lp", "cossin", p=np.float64(1.5), eps=np.float32(1e-3))
    assert torch.isfinite(loss(torch.randn(3, 2), torch.rand(3)))
    with pytest.raises(ValueError, match=r"^dropout must be .*got '0.1'"):
        CNNConfig(image_size=16, dropout="0.1")
    with pytest.raises(ValueError, match=r"^image_size must be an integer"):
        reference_mlp(image_size="8")


def test_evaluation_names_bad_models_counts_and_generators():
    model = small_model()
    with pytest.raises(ValueError, match=r"^model must be an AngleNet.*got 'cnn'"):
        evaluate_error("cnn", SPEC)
    with pytest.raises(ValueError, match=r"^repeats must be an integer.*got '4'"):
        evaluate_error(model, SPEC, repeats="4")
    with pytest.raises(ValueError, match=r"^generator must be None or a torch.Generator"):
        evaluate_error(model, SPEC, generator=3)
    with pytest.raises(ValueError, match=r"head must be 'head' or one of"):
        evaluate_error(model, SPEC, head="second")
    with pytest.raises(ValueError, match=r"^low must be .*got '0.2'"):
        evaluate_target_error(model, SPEC, "head", "contrast", "0.2", 1.0)
    err = evaluate_error(model, SPEC, n_angles=np.int64(4), repeats=np.int64(2))
    assert err.sizes["angle"] == 4


# ---- device ----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
@pytest.mark.parametrize("finite", [None, 4])
def test_device_cpu_trains_exactly_as_the_default(device, finite):
    a, b = small_model(), small_model()
    phases = [phase("pre"), phase("ft", dataset_size=finite, strategy="tpgm",
                                  strategy_params={"update_every": 1, "val_size": 8})]
    ha = train(a, phases, seed=2)
    hb = train(b, phases, seed=2, device=device)
    assert next(b.parameters()).device == torch.device("cpu")
    np.testing.assert_array_equal(ha["train_loss"].values, hb["train_loss"].values)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_a_generator_on_another_device_type_is_refused():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device to make a generator on another device type")
    with pytest.raises(ValueError, match=r"^generator must be a generator on the training"):
        train(small_model(), [phase()], seed=0, device="cpu",
              generator=torch.Generator(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("finite", [None, 4])
def test_training_on_cuda_moves_the_model_and_draws_there(finite):
    model = small_model()
    seen = []
    hist = train(model, [phase(dataset_size=finite, strategy="ldifs")], seed=1, device="cuda",
                 on_epoch=lambda rec, m: seen.append(next(m.parameters()).device.type))
    assert seen and set(seen) == {"cuda"}
    assert next(model.parameters()).device.type == "cuda"
    assert np.isfinite(hist["train_loss"].values).all()
    assert evaluate_error(model, SPEC).sizes["angle"] == 32
