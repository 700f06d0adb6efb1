"""propagated_fisher and measure_fisher record tied max-pool windows (issue 15) and warn when
the noise reaches them, without moving any value or drawing from any generator in use."""

import warnings

import numpy as np
import pytest
import torch
from pool_tie_nets import spec, toy
from torch import nn

import anglesim.fisher._propagated as propagated_module
import anglesim.fisher._ties as ties
from anglesim.fisher import as_stimulus, measure_fisher, propagated_fisher
from anglesim.pool_ties import PoolTieWarning, count_pool_ties
from anglesim.stimuli import render_clean

ANGLES = [0.3, 1.1, 1.9, 2.7]



@pytest.fixture(autouse=True)
def _fresh_warning_state():
    """The tie warning is said once per process; each test starts as a fresh process would."""
    ties.WARNED.clear()
    yield
    ties.WARNED.clear()

def quiet(fn):
    """fn() with PoolTieWarning raised as an error (so a test sees any that fires)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoolTieWarning)
        return fn()


@pytest.mark.parametrize("solver", ["exact", "krylov"])
def test_tied_toy_network_warns_and_records_the_counts(solver):
    net = toy(bias=0.5)  # ReLU(0.5) outside the aperture: four equal non-zero units a window
    with pytest.warns(PoolTieWarning, match=r"blocks\.conv\.2.*mask_after_noise=True"):
        fi = propagated_fisher(net, spec(), ANGLES, solver=solver)
    clean = render_clean(torch.tensor(ANGLES, dtype=torch.float64), spec()).double()
    expected = count_pool_ties(net, clean)["blocks.conv.2"]  # same items: 4 angles ≤ 8
    assert fi.attrs["pool_ties_images"] == 4
    assert 0 < fi.attrs["pool_ties_noisy"] <= expected.tied_nonzero
    assert fi.attrs["pool_ties_blocks_conv_2"].startswith(
        f"{expected.tied}/{expected.windows} tied, {expected.tied_nonzero} at non-zero")


def test_a_caller_who_knows_records_the_ties_without_the_warning():
    """pool_ties="record" (a study's own standard stimulus): the same counts and values, no
    warning; a later default call still warns (nothing is marked as said)."""
    net = toy(bias=0.5)
    recorded = quiet(lambda: propagated_fisher(net, spec(), ANGLES, pool_ties="record"))
    ds = quiet(lambda: measure_fisher(net, spec(), angles=ANGLES, pool_ties="record"))
    with pytest.warns(PoolTieWarning):
        warned = propagated_fisher(net, spec(), ANGLES)
    assert recorded.attrs == warned.attrs
    np.testing.assert_array_equal(recorded.values, warned.values)
    assert {k: v for k, v in ds.attrs.items() if k.startswith("pool_ties_")} == {
        k: v for k, v in warned.attrs.items() if k.startswith("pool_ties_")}
    assert ds.attrs["pool_ties_noisy"] > 0


def test_untied_and_masked_networks_do_not_warn():
    fi = quiet(lambda: propagated_fisher(toy(bias=-0.5), spec(), ANGLES))  # ties at 0 only
    assert fi.attrs["pool_ties_noisy"] == 0
    assert " 0 at non-zero values" in fi.attrs["pool_ties_blocks_conv_2"]
    # tied at non-zero values, but the aperture masks the noise (V = 0 there): nothing warns
    masked = quiet(lambda: propagated_fisher(toy(bias=0.5), spec(mask_after_noise=True),
                                             ANGLES))
    assert masked.attrs["pool_ties_noisy"] == 0
    assert " 0 at non-zero values" not in masked.attrs["pool_ties_blocks_conv_2"]


def test_the_check_moves_no_value_and_draws_from_no_generator(monkeypatch):
    net = toy(bias=0.5)
    state = torch.get_rng_state()
    with pytest.warns(PoolTieWarning):
        with_check = propagated_fisher(net, spec(), ANGLES, solver="exact")
    assert torch.equal(torch.get_rng_state(), state)
    monkeypatch.setattr(propagated_module, "pool_tie_check", lambda *a, **k: {})
    without = propagated_fisher(net, spec(), ANGLES, solver="exact")
    np.testing.assert_array_equal(with_check.values, without.values)
    assert "pool_ties_noisy" not in without.attrs


def test_many_angles_are_checked_on_at_most_eight_items_and_phases_count_as_items():
    net = toy(bias=0.5)
    with pytest.warns(PoolTieWarning):
        fi = propagated_fisher(net, spec(phase=None), np.linspace(0, 3, 20), solver="exact",
                               phases=[0.0, 1.0, 2.0])
    assert fi.attrs["pool_ties_images"] == 8
    one = quiet(lambda: propagated_fisher(toy(bias=-0.5), spec(), [0.4], solver="exact"))
    assert one.attrs["pool_ties_images"] == 1


def test_callable_stimulus_with_and_without_noise_on_the_tied_windows():
    net = toy(bias=0.5)
    grating = spec(noise_std=0.0)

    def fn(theta):
        return render_clean(theta, grating).double()

    with pytest.warns(PoolTieWarning, match="blocks.conv.2"):
        fi = propagated_fisher(net, as_stimulus(fn, noise_std=1e-3), ANGLES)
    assert fi.attrs["pool_ties_noisy"] > 0
    inside = torch.as_tensor(spec(mask_after_noise=True).noise_variance_map()) > 0
    masked = as_stimulus(fn, noise_variance=inside.double() * 1e-6)  # no noise outside
    assert quiet(lambda: propagated_fisher(net, masked, ANGLES)).attrs["pool_ties_noisy"] == 0


def test_networks_without_pools_and_noise_at_a_layer():
    net = nn.Sequential(nn.Flatten(), nn.Linear(256, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    fi = quiet(lambda: propagated_fisher(net, spec(), ANGLES))
    assert fi.attrs["pool_ties_noisy"] == 0 and fi.attrs["pool_ties_images"] == 0
    layer = quiet(lambda: propagated_fisher(toy(bias=0.5), spec(), ANGLES, layers=["head"],
                                            noise_at="conv", sigma=0.1))
    assert layer.attrs["pool_ties_noisy"] == -1  # noise at a layer: clean counts only
    assert "pool_ties_blocks_conv_2" in layer.attrs


def test_measure_fisher_carries_the_counts_when_propagated_runs():
    net = toy(bias=0.5)
    with pytest.warns(PoolTieWarning):
        ds = measure_fisher(net, spec(), methods=["propagated", "output_gaussian"], angles=4)
    assert ds.attrs["pool_ties_noisy"] > 0 and ds.attrs["pool_ties_images"] == 4
    other = quiet(lambda: measure_fisher(net, spec(), methods=["output_gaussian"], angles=4))
    assert not any(k.startswith("pool_ties") for k in other.attrs)


def test_the_warning_is_said_once_per_process_while_every_result_keeps_its_counts():
    net = toy(bias=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = propagated_fisher(net, spec(), ANGLES[:2], solver="exact")
        second = propagated_fisher(net, spec(), ANGLES[2:], solver="exact")
    said = [w for w in caught if issubclass(w.category, PoolTieWarning)]
    assert len(said) == 1 and "said once per process" in str(said[0].message)
    for fi in (first, second):
        assert fi.attrs["pool_ties_noisy"] > 0
