"""The key=value override grammar and its validation against a declared configuration, and
the Study declaration's own checks."""

import math

import pytest

from anglesim.study import Study, parse_overrides, parse_value, plan
from anglesim.study._overrides import apply_overrides


@pytest.mark.parametrize("text, value", [
    ("8", 8), ("-3", -3), ("5e-4", 5e-4), ("0.5", 0.5), (".5", 0.5), ("1E3", 1000.0),
    ("true", True), ("False", False), ("null", None), ("relu", "relu"), ("'8'", "8"),
    ('"a,b"', "a,b"), ("[2,8]", [2, 8]), ("[ 2 , 8.5 , x ]", [2, 8.5, "x"]), ("[]", []),
    ("[[1,2],[3]]", [[1, 2], [3]]), ("tcp://h:1", "tcp://h:1"),
])
def test_values_are_yaml_like_literals(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text, message", [
    ("[1,2", "not a closed list"), ("'abc", "unclosed quote"), ("[1] x", "trailing text"),
])
def test_malformed_values(text, message):
    with pytest.raises(ValueError, match=message):
        parse_value(text)


def test_parse_overrides_later_wins_and_keys_are_dotted_names():
    assert parse_overrides(["a=1", "b.c=2", "a=3"]) == {"a": 3, "b.c": 2}
    with pytest.raises(ValueError, match="override key must be dotted names"):
        parse_overrides(["a..b=1"])
    with pytest.raises(ValueError, match="has no value"):
        parse_overrides(["a="])


DECLARED = {"epochs": 2, "lr": 1e-3, "name": "relu", "flag": False, "offset": 0.0,
            "sizes": [16, 32], "phases": {"finetune": {"lr": 1e-3, "epochs": 1}},
            "replicates": 2}
GRID = {"kappa": [4.0], "loss": ["cosine", "mse"]}


def test_leaves_change_and_the_rest_is_kept():
    params, grid = apply_overrides(DECLARED, GRID, {
        "epochs": 5, "lr": 1, "flag": True, "offset": -2, "sizes": [8],
        "phases.finetune.lr": 5e-4, "name": "tanh"})
    assert params["epochs"] == 5 and params["lr"] == 1.0 and isinstance(params["lr"], float)
    assert params["offset"] == -2.0 and params["sizes"] == [8]
    assert params["phases"] == {"finetune": {"lr": 5e-4, "epochs": 1}}
    assert grid == {} and DECLARED["phases"]["finetune"]["lr"] == 1e-3  # not mutated


def test_grid_axes_by_grid_key_or_bare_name():
    _, grid = apply_overrides(DECLARED, GRID, {"grid.kappa": [2, 8], "loss": "mse"})
    assert grid == {"kappa": [2.0, 8.0], "loss": ["mse"]}
    assert all(isinstance(k, float) for k in grid["kappa"])
    for given, message in [({"grid.kappa": [2, 2]}, "must be a list without repeated values"),
                           ({"grid.loss": [1]}, "must be a list of strings"),
                           ({"grid.nope": [1]}, "unknown override key 'grid.nope'")]:
        with pytest.raises(ValueError, match=message):
            apply_overrides(DECLARED, GRID, given)


@pytest.mark.parametrize("given, message", [
    ({"epochs": 2.5}, "override epochs must be an integer >= 1, got 2.5"),
    ({"epochs": True}, "override epochs must be an integer >= 1, got True"),
    ({"epochs": 0}, "override epochs must be an integer >= 1, got 0"),
    ({"lr": math.inf}, "override lr must be a finite real number > 0, got inf"),
    ({"lr": "x"}, "override lr must be a real number > 0, got 'x'"),
    ({"lr": -1e-3}, "override lr must be > 0, got -0.001"),
    ({"offset": "x"}, "override offset must be a real number, got 'x'"),
    ({"flag": 1}, "override flag must be True or False, got 1"),
    ({"name": 3}, "override name must be a string, got 3"),
    ({"sizes": ["a"]}, r"override sizes\[0\] must be an integer >= 1, got 'a'"),
    ({"phases": 1}, "override phases is a group; set one of its keys: phases.finetune.lr"),
    ({"phases.finetune.lr.x": 1}, "unknown override key 'phases.finetune.lr.x'"),
    ({"epoch": 1}, "unknown override key 'epoch'; valid keys: epochs, flag, grid.kappa"),
])
def test_bad_keys_and_values_name_key_and_value(given, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(DECLARED, GRID, given)


def _replicate(ctx):  # pragma: no cover - never run here
    raise AssertionError


def _study(**changes):
    base = dict(name="declared", question="q?", replicate=_replicate,
                sizes={"quick": {"n": 1, "replicates": 2}, "full": {"n": 4, "replicates": 3}},
                grid=lambda params: {"n_axis": list(range(params["n"]))})
    base.update(changes)
    return Study(**base)


def test_a_grid_that_follows_the_configuration_follows_its_overrides():
    assert plan(_study(), quick=True).grid == {"n_axis": [0]}
    p = plan(_study(), quick=False, overrides=["n=2", "replicates=5"])
    assert p.grid == {"n_axis": [0, 1]} and p.n_replicates == 5
    assert p.config["overrides"] == {"n": 2} and p.config["sizes"]["replicates"] == 3
    assert plan(_study(), quick=True, replicates=4).n_replicates == 4


def test_the_code_hash_is_in_the_config_and_an_explicit_version_replaces_it():
    hashed = plan(_study(), quick=True).config["code"]
    assert len(hashed["study"]) == 16 and hashed["anglesim"]
    assert plan(_study(version="v2"), quick=True).config["code"]["study"] == "v2"


@pytest.mark.parametrize("changes, message", [
    (dict(name="1x"), "name must be letters, digits and '_' starting with a letter, got '1x'"),
    (dict(sizes={"quick": {"replicates": 1}}), "sizes must be a dict with keys"),
    (dict(sizes={"quick": {}, "full": {"replicates": 1}}), "must be a dict holding"),
    (dict(sizes={"quick": {"replicates": 0}, "full": {"replicates": 1}}),
     r"sizes\['quick'\]\['replicates'\] must be an integer >= 1, got 0"),
    (dict(grid=3), "grid must be a dict or a callable, got 3"),
    (dict(figure="plot"), "figure must be None or a callable, got 'plot'"),
    (dict(replicate=None), "replicate must be a callable, got None"),
    (dict(replicate=lambda condition, replicate, seed, size: None),
     r"replicate must be a function of one argument, the replicate context"),
    (dict(pair_axes="kappa"), "pair_axes must be a list of names"),
    (dict(devices=[]), "devices must be a non-empty list of names"),
    (dict(angles=0), "angles must be None or a number of angles"),
    (dict(version=""), "version must be None or a non-empty string"),
    (dict(frobnicate=1), "unexpected keyword argument 'frobnicate'"),
])
def test_bad_declarations_raise_at_construction(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _study(**changes)


def test_pair_axes_must_be_grid_axes():
    with pytest.raises(ValueError, match="pair_axes names 'kappa', which is not a grid axis"):
        plan(_study(pair_axes=("kappa",)), quick=True)


def test_device_must_be_one_the_study_computes_on():
    assert "device" not in plan(_study(), quick=True, device="cpu").params  # the default
    with pytest.raises(ValueError, match="device must be None, a torch.device or a device "
                                         "string such as 'cpu' or 'cuda:0', got 'warp-drive'"):
        plan(_study(), quick=True, device="warp-drive")
    with pytest.raises(ValueError, match=r"device must be a device study declared computes on "
                                         r"\(cpu\), got 'meta'"):
        plan(_study(), quick=True, device="meta")


@pytest.mark.parametrize("kwargs, message", [
    (dict(quick=1), "quick must be True or False, got 1"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(seed=1.5), "seed must be an integer >= 0, got 1.5"),
    (dict(replicates=0), "replicates must be None or an integer >= 1, got 0"),
])
def test_plan_checks_its_parameters_with_the_declared_constraints(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan(_study(), **kwargs)
