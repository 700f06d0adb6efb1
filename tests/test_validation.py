"""The shared argument checks and the named seed streams."""

import math

import numpy as np
import pytest
import torch

from anglesim import seeding
from anglesim import validation as check
from anglesim.angles import near_far


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_integer_accepts_numpy_integers(value):
    assert check.integer("epochs", value, minimum=1) == 3


@pytest.mark.parametrize("value", [True, 3.0, "3", None, np.float64(3.0)])
def test_integer_refuses_non_integers_naming_parameter_and_value(value):
    with pytest.raises(ValueError, match=r"^epochs must be an integer.*got"):
        check.integer("epochs", value)


def test_integer_bounds():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        check.integer("epochs", 0, minimum=1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"), "0.1",
                                   True, None])
def test_real_refuses_nan_inf_strings_bools(value):
    with pytest.raises(ValueError, match=r"^lr must be a"):
        check.real("lr", value)


def test_real_bounds_open_and_closed():
    assert check.real("lr", np.float32(0.5), minimum=0, min_open=True) == 0.5
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        check.real("lr", 0, minimum=0, min_open=True)
    assert check.real("x", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="x must be <= 1"):
        check.real("x", 1.5, maximum=1)
    assert check.real("x", math.inf, minimum=0, finite=False) == math.inf


def test_choice_bool_text_and_names():
    assert check.choice("noise_at", "input", ["input", "output"]) == "input"
    with pytest.raises(ValueError, match="noise_at must be one of 'input', 'output', got 'x'"):
        check.choice("noise_at", "x", ["input", "output"])
    with pytest.raises(ValueError, match="flag must be True or False, got 1"):
        check.boolean("flag", 1)
    with pytest.raises(ValueError, match="trainable must be a list of names"):
        check.name_list("trainable", "fc1")
    assert check.name_list("trainable", ("fc1", "fc2")) == ["fc1", "fc2"]
    with pytest.raises(ValueError, match=r"trainable\[1\] must be a non-empty string"):
        check.name_list("trainable", ["fc1", 3])


def test_finite_array():
    assert check.finite_array("x", torch.ones(3)).shape == (3,)
    with pytest.raises(ValueError, match="x must be finite everywhere, got '1 NaN"):
        check.finite_array("x", [1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="x must be a 2-d array"):
        check.finite_array("x", [1.0], ndim=2)


def test_streams_are_reproducible_distinct_and_validated():
    a = seeding.stream_seed(7, "init")
    assert a == seeding.stream_seed(np.int64(7), "init")
    names = {seeding.stream_seed(7, n) for n in seeding.STREAMS}
    assert len(names) == len(seeding.STREAMS)
    assert seeding.stream_seed(7, "data", 0) != seeding.stream_seed(7, "data", 1)
    assert seeding.stream_seed(7, "init") != seeding.stream_seed(8, "init")
    assert 0 <= a < 2**63
    g1 = seeding.torch_generator(7, "eval")
    g2 = seeding.torch_generator(7, "eval")
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))
    x = seeding.numpy_generator(7, "eval").random(1000)
    y = seeding.numpy_generator(7, "data").random(1000)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.15
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        seeding.stream_seed(-1, "init")
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        seeding.stream_seed(1, "")


def test_near_far_one_boundary_rule():
    theta = np.deg2rad(np.arange(0, 180, 3.75))
    near, far = near_far(theta, np.pi / 2)
    dist = np.abs((np.rad2deg(theta) - 90 + 90) % 180 - 90)
    np.testing.assert_array_equal(near, dist <= 22.5 + 1e-6)
    np.testing.assert_array_equal(far, dist >= 45 - 1e-6)
    assert far[np.isclose(dist, 45)].all()  # exactly 45° away counts as beyond 45°
    with pytest.raises(ValueError, match="^far must be >= 1"):
        near_far(theta, 0.0, near=1.0, far=0.5)


# ---- parameters declared as data ------------------------------------------------------------

CONSTRAINTS = {
    "lr": check.Real(minimum=0, min_open=True),
    "epochs": check.Integer(minimum=1),
    "loss": check.Choice(["l2", "cosine"]),
    "blocks": check.Names(allow_empty=False),
    "device": check.Device(),
    "generator": check.Generator("torch"),
    "tol": check.Optional(check.Real(minimum=0)),
}


def test_validate_converts_and_accepts_numpy_scalars():
    out = check.validate({"lr": np.float32(0.5), "epochs": np.int64(3), "loss": "l2",
                          "blocks": ("conv1",), "device": "cpu", "generator": None,
                          "tol": None}, CONSTRAINTS)
    assert out == {"lr": 0.5, "epochs": 3, "loss": "l2", "blocks": ["conv1"],
                   "device": torch.device("cpu"), "generator": None, "tol": None}
    assert type(out["lr"]) is float and type(out["epochs"]) is int


@pytest.mark.parametrize("params, message", [
    ({"lr": 0}, r"^strategy 'x': lr must be > 0, got 0$"),
    ({"epochs": 1.0}, r"^strategy 'x': epochs must be an integer >= 1, got 1.0$"),
    ({"loss": "l3"}, r"^strategy 'x': loss must be one of 'l2', 'cosine', got 'l3'$"),
    ({"blocks": "conv1"}, r"^strategy 'x': blocks must be a list of names"),
    ({"blocks": []}, r"^strategy 'x': blocks must be a non-empty list of names"),
    ({"device": "gpu9"}, r"^strategy 'x': device must be None, a torch.device"),
    ({"generator": np.random.default_rng(0)},
     r"^strategy 'x': generator must be None or a torch.Generator"),
    ({"tol": -1.0}, r"^strategy 'x': tol must be None or a real number >= 0, got -1.0$"),
    ({"tol": "a"}, r"^strategy 'x': tol must be None or a real number >= 0, got 'a'$"),
])
def test_validate_names_owner_parameter_and_value(params, message):
    with pytest.raises(ValueError, match=message):
        check.validate(params, CONSTRAINTS, owner="strategy 'x'", partial=True)


def test_validate_unknown_and_missing_names_list_the_declared_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['rate'\]; the parameters "
                                         r"are \['blocks', 'device'"):
        check.validate({"rate": 1.0}, CONSTRAINTS, partial=True)
    with pytest.raises(ValueError, match=r"missing parameter\(s\) \['blocks'"):
        check.validate({"lr": 1.0}, CONSTRAINTS)
    with pytest.raises(ValueError, match=r"^params must be a dict of parameters, got 3$"):
        check.validate(3, CONSTRAINTS)


def test_anyof_tries_each_and_describes_all():
    either = check.AnyOf(check.Integer(minimum=1), check.Choice(["all"]))
    assert either("n", 3) == 3 and either("n", "all") == "all"
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1 or one of 'all', got 0$"):
        either("n", 0)


def test_numpy_generator_and_instance_and_function_checks():
    gen = check.Generator("numpy", allow_none=False)
    rng = np.random.default_rng(0)
    assert gen("rng", rng) is rng
    with pytest.raises(ValueError, match=r"^rng must be a numpy.random.Generator, got None$"):
        gen("rng", None)
    with pytest.raises(ValueError, match=r"^model must be a torch.nn.Module, got 3$"):
        check.Instance(torch.nn.Module, "a torch.nn.Module")("model", 3)
    with pytest.raises(ValueError, match=r"^decode must be a callable, got 'x'$"):
        check.Function()("decode", "x")


def test_drawing_from_equals_manual_seed_and_leaves_global_state():
    torch.manual_seed(123)
    expected = torch.rand(5)
    follow = torch.rand(2)
    torch.manual_seed(999)
    before = torch.get_rng_state()
    gen = torch.Generator().manual_seed(123)
    with seeding.drawing_from(gen):
        got = torch.rand(5)
    assert torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched
    assert torch.equal(torch.rand(2, generator=gen), follow)  # gen advanced by the draws
    with pytest.raises(ValueError, match=r"^generator must be a torch.Generator, got 3$"):
        with seeding.drawing_from(3):
            pass
