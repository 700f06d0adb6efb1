"""Every bad argument to a Fisher estimator gets one line naming the parameter and the value,
``"<param> must be …, got <value>"``, raised on entry (before any network is run): the
parameters are declared as data (``PARAMETERS``) and checked in one place."""

import math
import re

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from anglesim import fisher
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec

torch.manual_seed(0)
NET = build_model(CNNConfig(image_size=16))
SPEC = GratingSpec(size=16, noise_std=1.0)
RM = np.random.default_rng(0).normal(size=(30, 3))
RP = RM + 0.1
CURVE = xr.DataArray(1.0 + np.arange(8.0), dims=("angle",),
                     coords={"angle": np.arange(8) * math.pi / 8})
REPLICATES = xr.DataArray(np.ones((3, 8)), dims=("replicate", "angle"))
LINEAR = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))


def one_line(name, call):
    """The ValueError ``call()`` raises: one line, "<name> must be …, got …"."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert re.match(re.escape(name) + r" must be .*, got ", message), message
    return message


BAD = {
    # the six inputs of issue 21
    "measure prior str": ("prior", lambda: fisher.measure_fisher(NET, SPEC, prior="uniform")),
    "measure gain 0": ("poisson_gain", lambda: fisher.measure_fisher(NET, SPEC,
                                                                     poisson_gain=0)),
    "decoder seed": ("seed", lambda: fisher.decoder_fisher(RM, RP, 0.1, seed="abc")),
    "bootstrap estimator": ("estimator", lambda: fisher.bootstrap_fisher(RM, RP, 0.1,
                                                                         estimator="abc")),
    # propagated_fisher
    "spec": ("spec", lambda: fisher.propagated_fisher(NET, "grating", [0.1])),
    "model": ("model", lambda: fisher.propagated_fisher("net", SPEC, [0.1])),
    "angles empty": ("angles", lambda: fisher.propagated_fisher(NET, SPEC, [])),
    "angles nan": ("angles", lambda: fisher.propagated_fisher(NET, SPEC, [math.nan])),
    "angles 2-d": ("angles", lambda: fisher.propagated_fisher(NET, SPEC, [[0.1, 0.2]])),
    "layers unknown": ("layers", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                                  layers=["nope"])),
    "layers number": ("layers", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], layers=3)),
    "sigma": ("sigma", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], sigma=-1)),
    "sigma missing": ("sigma", lambda: fisher.propagated_fisher(NET, GratingSpec(size=16),
                                                                [0.1])),
    "sigma at layer": ("sigma", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                                 noise_at="conv1")),
    "eps": ("eps", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], eps=0)),
    "phases": ("phases", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], phases="x")),
    "chunk_size": ("chunk_size", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                                  chunk_size=2.5)),
    "device name": ("device", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                               device="gpu9")),
    "device absent": ("device", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                                 device="cuda:7")),
    "noise_at": ("noise_at", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                              noise_at="nope")),
    "solver": ("solver", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], solver="fast")),
    "rtol": ("rtol", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], rtol=2)),
    "maxiter": ("maxiter", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], maxiter=0)),
    "decode": ("decode", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], decode=3)),
    "force": ("force", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], force="yes")),
    "precision": ("precision", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                                precision="float16")),
    "certify": ("certify", lambda: fisher.propagated_fisher(NET, SPEC, [0.1], certify=None)),
    "pool_ties": ("pool_ties", lambda: fisher.propagated_fisher(NET, SPEC, [0.1],
                                                                pool_ties="quiet")),
    # measure_fisher: every option checked before any method runs
    "methods": ("methods", lambda: fisher.measure_fisher(NET, SPEC, methods=["naive", "naive"])),
    "angles count": ("angles", lambda: fisher.measure_fisher(NET, SPEC, angles=0)),
    "angles float": ("angles", lambda: fisher.measure_fisher(NET, SPEC, angles=2.5)),
    "dtheta": ("dtheta", lambda: fisher.measure_fisher(NET, SPEC, dtheta=1.0)),
    "n_trials estimator": ("n_trials", lambda: fisher.measure_fisher(
        NET, SPEC, methods=["estimator"], n_trials=2)),
    "generator": ("generator", lambda: fisher.measure_fisher(NET, SPEC, generator=3)),
    "sampled_options": ("sampled_options", lambda: fisher.measure_fisher(
        NET, SPEC, sampled_options=3)),
    "output_sigma": ("output_sigma", lambda: fisher.measure_fisher(NET, SPEC,
                                                                   output_sigma=-1)),
    # the other estimators
    "noise": ("noise", lambda: fisher.output_noise_fisher(NET, SPEC, [0.1], noise="laplace")),
    "baseline": ("baseline", lambda: fisher.output_noise_fisher(NET, SPEC, [0.1],
                                                                noise="poisson", baseline=-10)),
    "estimator": ("estimator", lambda: fisher.sampled_fisher(NET, SPEC, [0.1], estimator="x")),
    "n_boot": ("n_boot", lambda: fisher.sampled_fisher(NET, SPEC, [0.1], n_boot=-1)),
    "level": ("level", lambda: fisher.sampled_fisher(NET, SPEC, [0.1], level=1.5)),
    "no decode": ("decode", lambda: fisher.estimator_fisher(LINEAR, SPEC, [0.1])),
    "theta": ("theta", lambda: fisher.paired_responses(NET, SPEC, "x", 0.05, 10, "output")),
    "window": ("window", lambda: fisher.savgol_fisher(NET, SPEC, n_dense=100, window=4)),
    "polyorder": ("polyorder", lambda: fisher.savgol_fisher(NET, SPEC, n_dense=100, window=5,
                                                            polyorder=5)),
    # arrays, intervals, closed forms, curves
    "r_minus": ("r_minus", lambda: fisher.linear_fisher_from_samples(np.ones(5), RP, 0.1)),
    "r_plus": ("r_plus", lambda: fisher.linear_fisher_from_samples(RM, RP[:, :2], 0.1)),
    "bias_corrected": ("bias_corrected", lambda: fisher.linear_fisher_from_samples(
        RM, RP, 0.1, bias_corrected="no")),
    "variance N": ("N", lambda: fisher.linear_fisher_variance(1.0, 10, 2.5, 0.1)),
    "variance I": ("I", lambda: fisher.linear_fisher_variance(-1.0, 10, 3, 0.1)),
    "n_components": ("n_components", lambda: fisher.linear_fisher_pca(RM, RP, 0.1,
                                                                      n_components=100)),
    "n_folds": ("n_folds", lambda: fisher.decoder_fisher(RM, RP, 0.1, n_folds=20)),
    "ridge": ("ridge", lambda: fisher.decoder_fisher(RM, RP, 0.1, ridge=math.nan)),
    "interval estimate": ("estimate", lambda: fisher.linear_fisher_interval(math.nan, 10, 3,
                                                                          0.1)),
    "cov shape": ("cov", lambda: fisher.gaussian_fisher([1, 2], np.eye(3))),
    "cov definite": ("cov", lambda: fisher.gaussian_fisher([1, 2], -np.eye(2))),
    "poisson f": ("f", lambda: fisher.poisson_fisher([1, -1], [1, 1])),
    "d_prime": ("d_prime", lambda: fisher.discrimination_threshold(1.0, d_prime=0)),
    "J": ("J", lambda: fisher.discrimination_threshold("x")),
    "smooth": ("fisher", lambda: fisher.smooth_periodic(np.ones(8))),
    "n_harmonics": ("n_harmonics", lambda: fisher.smooth_periodic(CURVE, n_harmonics=-1)),
    "curves": ("curves", lambda: fisher.bootstrap_replicates(CURVE)),
    "replicates level": ("level", lambda: fisher.bootstrap_replicates(REPLICATES, level=95)),
    "list_layers": ("model", lambda: fisher.list_layers("x")),
    "as_stimulus": ("stimulus", lambda: fisher.as_stimulus("x")),
    "noise_variance": ("noise_variance", lambda: fisher.as_stimulus(lambda t: t,
                                                                    noise_variance=[-1.0])),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_argument_gets_one_line_naming_it(case):
    name, call = BAD[case]
    one_line(name, call)


def test_options_of_a_method_are_checked_for_that_method():
    message = str(pytest.raises(ValueError, fisher.measure_fisher, NET, SPEC, methods=["pca"],
                                sampled_options={"ridge": 1.0}).value)
    assert message.startswith("sampled_options for method 'pca': unknown parameter(s) "
                              "['ridge']")
    message = str(pytest.raises(ValueError, fisher.sampled_fisher, NET, SPEC, [0.1],
                                estimator="decoder", ridge=-1).value)
    assert message == "estimator 'decoder': ridge must be >= 0, got -1"


def test_checks_run_before_any_network_pass(monkeypatch):
    """A bad late option fails at once: the network is never called."""
    calls = []
    monkeypatch.setattr(type(NET), "__call__",
                        lambda self, *a, **k: calls.append(1) or nn.Module.__call__(self, *a))
    with pytest.raises(ValueError, match="^savgol_options: window must be"):
        fisher.measure_fisher(NET, SPEC, methods=["propagated", "savgol"],
                              savgol_options={"window": 2})
    assert calls == []
