"""The shared argument checks and the named seed streams."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anglesim import angles, seeding
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


def _grid(n: int, dtype: str) -> np.ndarray:
    """θ_k = kπ/n computed the way anglesim's grids are: in torch, in the given precision."""
    return (torch.arange(n, dtype=getattr(torch, dtype)) * (math.pi / n)).numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stored", ["as computed", "converted to float64"])
@pytest.mark.parametrize("centre_as", ["grid value", "float64 multiple of pi"])
@given(n=st.sampled_from([8, 16, 24, 40, 48, 72, 96, 128, 360]), k=st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_near_far_decides_boundaries_at_any_precision(dtype, stored, centre_as, n, k):
    """Grid angles exactly 22.5° (n/8 steps) or 45° (n/4 steps) from a centre on the grid are
    inside the region, whether the grid and the centre are float32 or float64: the count is the
    one exact arithmetic gives."""
    grid = _grid(n, dtype)
    if stored == "converted to float64":
        grid = grid.astype(np.float64)
    k %= n
    centre = grid[k] if centre_as == "grid value" else k * math.pi / n
    near, far = near_far(grid, centre)
    steps = np.abs(np.arange(n) - k)
    steps = np.minimum(steps, n - steps)  # grid steps between each angle and the centre
    np.testing.assert_array_equal(near, 8 * steps <= n)
    np.testing.assert_array_equal(far, 4 * steps >= n)


@given(theta=st.lists(st.floats(0, math.pi, exclude_max=True), min_size=1, max_size=50),
       centre=st.floats(0, math.pi, exclude_max=True))
@settings(max_examples=200, deadline=None)
def test_near_far_away_from_boundaries_is_the_plain_comparison(theta, centre):
    theta = np.asarray(theta)
    near, far = near_far(theta, centre)
    dist = np.abs(angles.difference(theta, centre))
    clear = (np.abs(dist - math.pi / 8) > 1e-5) & (np.abs(dist - math.pi / 4) > 1e-5)
    np.testing.assert_array_equal(near[clear], (dist <= math.pi / 8)[clear])
    np.testing.assert_array_equal(far[clear], (dist >= math.pi / 4)[clear])


def test_quickstart_windows_hold_every_intended_angle():
    """The quickstart's 48-angle float32 grid about 90°: 13 angles within ±22.5° (the old
    1e-9 rad tolerance kept 11) and 25 at 45° or more (it kept 24)."""
    grid = _grid(48, "float32").astype(np.float64)  # as stored in the Dataset
    near, far = near_far(grid, grid[24])
    assert (int(near.sum()), int(far.sum())) == (13, 25)
    near, far = near_far(torch.from_numpy(_grid(48, "float32")), np.float32(math.pi / 2))
    assert (int(near.sum()), int(far.sum())) == (13, 25)


def test_boundary_tolerance_follows_the_coarser_precision():
    f32 = angles.angle_resolution(np.float32(1.0))
    f64 = angles.angle_resolution(np.array([math.pi / 3]))
    assert f32 == pytest.approx(np.finfo(np.float32).eps * math.pi)
    assert f64 == pytest.approx(np.finfo(np.float64).eps * math.pi)
    assert angles.angle_resolution(np.array([0.5, 0.25])) == f32  # float32 numbers in float64
    assert angles.boundary_tolerance(np.array([math.pi / 3]), math.pi / 3) == 4 * f64
    assert angles.boundary_tolerance(np.array([math.pi / 3]), np.float32(1.0)) == 4 * f32
    assert 4 * f32 < 1e-5  # far below any grid spacing anglesim uses


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


def test_optional_names_says_what_is_wrong_with_the_list():
    blocks = check.Optional(check.Names(allow_empty=False))
    assert blocks("blocks", None) is None and blocks("blocks", ("a",)) == ["a"]
    with pytest.raises(ValueError, match=r"^blocks must be None or a non-empty list of names, "
                                         r"got \[\]$"):
        blocks("blocks", [])
    with pytest.raises(ValueError, match=r"^blocks\[1\] must be a non-empty string, got 3$"):
        blocks("blocks", ["a", 3])
    with pytest.raises(ValueError, match=r"^blocks must be None or a non-empty list of names, "
                                         r"got 'a'$"):
        blocks("blocks", "a")


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
