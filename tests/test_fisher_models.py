"""Fisher information of any network: named layers, callable and colour stimuli, the Krylov
solver against the exact one and against closed forms, the ridge's invariance, the cost
guard, devices and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from anglesim.distributions import VonMises
from anglesim.fisher import (
    as_stimulus,
    list_layers,
    measure_fisher,
    method_result,
    output_noise_fisher,
    propagated_fisher,
    sampled_fisher,
)
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec, render_clean
from anglesim.training import Phase, train

ANGLES = torch.tensor([0.3, 1.1, 2.4], dtype=torch.float64)


def grating_spec(size: int = 8) -> GratingSpec:
    return GratingSpec(size=size, frequency=1.5, noise_std=0.5, aperture=None)


def xdot(spec: GratingSpec, angles: torch.Tensor = ANGLES) -> torch.Tensor:
    """∂x/∂θ [A, P] by forward-mode AD through the renderer (float64)."""
    return torch.func.jvp(lambda a: render_clean(a, spec, dtype=torch.float64), (angles,),
                          (torch.ones_like(angles),))[1].reshape(len(angles), -1)


def linear_sequential(w: torch.Tensor) -> nn.Module:
    """r = W x as a plain nested nn.Sequential: the layer is named "1.0"."""
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64)
    lin.weight.data.copy_(w)
    return nn.Sequential(nn.Flatten(), nn.Sequential(lin, nn.Identity()))


def linear_closed_form(w: torch.Tensor, xd: torch.Tensor, sigma: float) -> np.ndarray:
    """J = ẋᵀWᵀ(WWᵀ)⁺Wẋ/σ² for r = Wx with pixel noise σ²I."""
    pinv = torch.linalg.pinv(w @ w.T)
    return (torch.einsum("ap,qp,qr,rs,as->a", xd, w, pinv, w, xd) / sigma**2).numpy()


@pytest.mark.parametrize("n_units", [12, 64, 150])  # fewer than, as many as, more than pixels
@pytest.mark.parametrize("solver", ["exact", "krylov"])
def test_linear_sequential_matches_closed_form(n_units, solver):
    spec = grating_spec()
    w = torch.randn(n_units, 64, generator=torch.Generator().manual_seed(n_units),
                    dtype=torch.float64)
    net = linear_sequential(w)
    fi = propagated_fisher(net, spec, ANGLES, layers=["input", "1.0", "1.1", "output"],
                           solver=solver, rtol=1e-6)
    closed = linear_closed_form(w, xdot(spec), 0.5)
    assert list(fi["layer"].values) == ["input", "1.0", "1.1", "output"]
    for layer in ("1.0", "1.1", "output"):  # the identity and the raw output carry the same
        np.testing.assert_allclose(fi.sel(layer=layer).values, closed, rtol=1e-4)
        assert fi["solver"].sel(layer=layer).item() == solver
    pixels = (xdot(spec) ** 2).sum(1).numpy() / 0.25
    np.testing.assert_allclose(fi.sel(layer="input").values, pixels, rtol=1e-10)
    assert (fi.values <= pixels * (1 + 1e-9)).all()  # data processing
    if n_units >= 64:  # W has full column rank: nothing is lost
        np.testing.assert_allclose(closed, pixels, rtol=1e-8)
    else:
        assert (closed < 0.9 * pixels).all()
    if solver == "krylov":
        assert (fi["iterations"].sel(layer="1.0") > 0).all()
        # a bound (the bracket, with D itself for so few units) that holds the exact solver's
        # value (the closed form is the ε → 0 limit, off by the ridge's O(ε) effect)
        err = fi["fisher_error"].sel(layer="1.0")
        assert (err <= 1e-6 * fi.sel(layer="1.0")).all()
        exact = propagated_fisher(net, spec, ANGLES, layers=["1.0"], solver="exact")
        gap = np.abs(fi.sel(layer="1.0") - exact.sel(layer="1.0"))
        assert (gap <= err + 1e-10 * exact.sel(layer="1.0")).all()
        assert (fi["error_kind"].sel(layer="1.0") == "bound").all()


def test_list_layers_and_unknown_names():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Sequential(nn.ReLU(), nn.Flatten()),
                        nn.Linear(3 * 6 * 6, 2))
    assert list_layers(net) == ["input", "0", "1", "1.0", "1.1", "2", "output"]
    cnn = build_model(CNNConfig(image_size=16))
    assert list_layers(cnn) == ["input", *cnn.block_names, "output"]
    spec = grating_spec()
    with pytest.raises(ValueError, match=r"layers must be .*'1\.0'.*unknown: \['features\.9'\]"):
        propagated_fisher(net, spec, ANGLES, layers=["features.9"])
    with pytest.raises(ValueError, match="layers"):
        output_noise_fisher(net, spec, ANGLES, layers=["nope"])
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        list_layers("resnet18")
    # the default: input, the top-level children, the raw output
    fi = propagated_fisher(net, spec, ANGLES[:1], solver="exact")
    assert list(fi["layer"].values) == ["input", "0", "1", "2", "output"]
    assert (np.diff(fi.values[:, 0]) <= 1e-9 * fi.values[0, 0]).all()  # DPI along the chain


def test_decode_makes_output_the_decoded_angle():
    spec = grating_spec()
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2, dtype=torch.float64))
    torch.nn.init.normal_(net[1].weight, generator=torch.Generator().manual_seed(0))

    def decode(out: torch.Tensor) -> torch.Tensor:
        return torch.atan2(out[:, 1], out[:, 0]) / 2 % math.pi

    raw = propagated_fisher(net, spec, ANGLES, layers=["1", "output"], solver="exact")
    dec = propagated_fisher(net, spec, ANGLES, layers=["1", "output"], decode=decode)
    np.testing.assert_allclose(raw.sel(layer="output"), raw.sel(layer="1"), rtol=1e-10)
    assert (dec.sel(layer="output").values <= dec.sel(layer="1").values * (1 + 1e-9)).all()
    # a one-unit read-out: J = (∂θ̂/∂θ)²/(σ² |∂θ̂/∂x|²), computed here by autograd
    x = render_clean(ANGLES, spec, dtype=torch.float64).requires_grad_(True)
    grad = torch.autograd.grad(decode(net(x)).sum(), x)[0].reshape(len(ANGLES), -1)
    expected = ((grad * xdot(spec)).sum(1) ** 2 / (0.25 * (grad**2).sum(1))).numpy()
    np.testing.assert_allclose(dec.sel(layer="output").values, expected, rtol=1e-8)


def test_ridge_is_invariant_to_rescaling_one_unit():
    spec = grating_spec()
    g = torch.Generator().manual_seed(3)
    w = torch.randn(100, 64, generator=g, dtype=torch.float64)  # more units than pixels
    scaled = w.clone()
    scaled[7] *= 1000.0
    for solver in ("exact", "krylov"):
        for eps in (1e-6, 0.1):  # a large ridge makes any scale dependence visible
            a = propagated_fisher(linear_sequential(w), spec, ANGLES, layers=["1.0"], eps=eps,
                                  solver=solver, rtol=1e-8)
            b = propagated_fisher(linear_sequential(scaled), spec, ANGLES, layers=["1.0"],
                                  eps=eps, solver=solver, rtol=1e-8)
            np.testing.assert_allclose(b.values, a.values, rtol=1e-6)
    # with eps = 0.1 the ridge does act: J is well below the pixels' information
    pixels = (xdot(spec) ** 2).sum(1).numpy() / 0.25
    assert (a.values < 0.99 * pixels).all()


@pytest.fixture(scope="module")
def trained_cnn():
    """The default CNN family, briefly trained at 16 px."""
    spec = GratingSpec(size=16, noise_std=0.2)
    torch.manual_seed(0)
    net = build_model(CNNConfig(image_size=16))
    train(net, [Phase("train", VonMises(math.pi / 2, 2.0), spec, loss="cosine", lr=5e-3,
                      epochs=1, steps_per_epoch=30, batch_size=32, eval_angles=4)], seed=0)
    return net, spec


def test_krylov_matches_exact_on_a_trained_cnn(trained_cnn):
    net, spec = trained_cnn
    angles = torch.tensor([0.4, 1.6], dtype=torch.float64)
    exact = propagated_fisher(net, spec, angles, solver="exact")
    exact64 = propagated_fisher(net, spec, angles, solver="exact", precision="float64")
    assert ((np.abs(exact - exact64) <= exact["fisher_error"] + 1e-12 * exact64).all()
            and (exact["error_kind"].sel(layer=list(net.block_names)) == "estimate").all())
    for rtol in (1e-3, 1e-5):
        kry = propagated_fisher(net, spec, angles, solver="krylov", rtol=rtol)
        wide = [n for n in kry["layer"].values if kry["solver"].sel(layer=n) == "krylov"]
        assert set(wide) == set(net.block_names)
        rel = np.abs(kry - exact).sel(layer=wide) / exact.sel(layer=wide)
        assert float(rel.max()) <= rtol * 1.5
        # fisher_error (the bracket's half-width, ≤ rtol, plus an estimate of what the float32
        # products' rounding costs) holds the exact value of the network in float64
        err = kry["fisher_error"].sel(layer=wide)
        gap = np.abs(kry - exact64).sel(layer=wide)
        assert (gap <= err + 1e-9 * exact64.sel(layer=wide)).all(), (gap - err).values
        assert float((err / exact.sel(layer=wide)).max()) <= rtol * 1.2 + 2e-5
        assert float(err.min()) >= 0
    auto = propagated_fisher(net, spec, angles)  # small layers: auto chooses exact
    assert set(auto["solver"].values) <= {"exact", "closed_form"}
    np.testing.assert_array_equal(auto.values, exact.values)


def test_callable_stimulus_and_colour():
    spec = grating_spec()
    colours = torch.tensor([1.0, 0.5, -0.25], dtype=torch.float64)

    def colour(theta: torch.Tensor) -> torch.Tensor:  # [N, 3, 8, 8]: one grating, 3 gains
        return render_clean(theta, spec, dtype=torch.float64) * colours[None, :, None, None]

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64), nn.Tanh(),
                        nn.Flatten(), nn.Linear(256, 5, dtype=torch.float64))
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    stim = as_stimulus(colour, noise_std=0.5)
    fi = propagated_fisher(net, stim, ANGLES, solver="exact")
    # pixels: the grating's information once per channel, times the channel's gain²
    single = (xdot(spec) ** 2).sum(1).numpy() / 0.25
    np.testing.assert_allclose(fi.sel(layer="input"), single * float((colours**2).sum()),
                               rtol=1e-10)
    kry = propagated_fisher(net, stim, ANGLES, layers=["0", "1"], solver="krylov", rtol=1e-6)
    np.testing.assert_allclose(kry.values, fi.sel(layer=["0", "1"]).values, rtol=1e-5)
    assert (fi.values <= fi.sel(layer="input").values * (1 + 1e-9)).all()
    # a per-pixel variance map broadcast over channels; a bare callable needs sigma
    vmap = torch.ones(1, 8, 8, dtype=torch.float64) * 0.25
    mapped = propagated_fisher(net, as_stimulus(colour, noise_variance=vmap), ANGLES,
                               layers=["input", "1"], solver="exact")
    np.testing.assert_allclose(mapped.values, fi.sel(layer=["input", "1"]).values, rtol=1e-10)
    bare = propagated_fisher(net, colour, ANGLES, layers=["1"], sigma=0.5, solver="exact")
    np.testing.assert_allclose(bare.values, fi.sel(layer=["1"]).values, rtol=1e-10)
    with pytest.raises(ValueError, match="sigma"):
        propagated_fisher(net, colour, ANGLES)
    # the sampled and output-noise estimators take the callable as well
    out = output_noise_fisher(net, stim, ANGLES, layers=["3"])
    assert out.shape == (1, 3) and (out.values > 0).all()
    # sampled linear FI of a linear read-out: the closed form, within its standard error
    w = torch.randn(5, 192, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lin = linear_sequential(w)
    samp = sampled_fisher(lin, stim, ANGLES[:2], layers=["1.0"], n_trials=2000, dtheta=0.1,
                          generator=torch.Generator().manual_seed(0))
    exact = propagated_fisher(lin, stim, ANGLES[:2], layers=["1.0"], solver="exact")
    z = (samp - exact) / samp["stderr"]
    assert (np.abs(z.values) < 4).all()


def test_noise_at_a_named_layer_of_a_sequential():
    spec = grating_spec()
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 30, dtype=torch.float64), nn.Tanh(),
                        nn.Linear(30, 10, dtype=torch.float64))
    fi = propagated_fisher(net, spec, ANGLES, noise_at="1", sigma=0.3, solver="exact")
    assert list(fi["layer"].values) == ["1", "2", "3", "output"]
    h = torch.func.jvp(lambda a: net[1](net[0](render_clean(a, spec, dtype=torch.float64))),
                       (ANGLES,), (torch.ones_like(ANGLES),))[1].detach()
    np.testing.assert_allclose(fi.sel(layer="1"), (h**2).sum(1).numpy() / 0.09, rtol=1e-10)
    assert (fi.values <= fi.sel(layer="1").values * (1 + 1e-9)).all()
    kry = propagated_fisher(net, spec, ANGLES, noise_at="1", sigma=0.3, solver="krylov",
                            rtol=1e-7)
    np.testing.assert_allclose(kry.values, fi.values, rtol=1e-5)
    with pytest.raises(ValueError, match="noise_at"):
        propagated_fisher(net, spec, ANGLES, noise_at="bogus", sigma=0.3)
    with pytest.raises(ValueError, match="layers"):
        propagated_fisher(net, spec, ANGLES, noise_at="2", sigma=0.3, layers=["1"])


def test_cost_guard_fires_before_computing():
    # a 224 px colour image into 64 channels: the exact Jacobian would be 3.2M x 150k
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1))
    spec = GratingSpec(size=224, noise_std=0.5)

    def colour(theta: torch.Tensor) -> torch.Tensor:
        return render_clean(theta, spec).expand(-1, 3, -1, -1)

    with pytest.raises(ValueError, match=r"would need about .* GB.*solver='krylov'.*force=True"):
        propagated_fisher(net, as_stimulus(colour, noise_std=0.5), [0.5], layers=["0"],
                          solver="exact")


def test_cost_guard_is_not_fooled_by_a_loaded_machine(monkeypatch):
    """On a busy machine a pass's wall time includes the time spent waiting for a core; the
    cost model takes the process's CPU time there, so the guard does not refuse a small run
    (the quickstart's FI once was, as "1.1 h", while three other jobs shared two cores)."""
    import importlib

    plan = importlib.import_module("anglesim.fisher._plan")
    cost_model = importlib.import_module("anglesim.fisher._cost")
    clock = {"t": 0.0}

    def descheduled() -> float:  # every reading 100 s after the last: a process left waiting
        clock["t"] += 100.0
        return clock["t"]

    monkeypatch.setattr(plan.time, "perf_counter", descheduled)
    net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU())
    spec = GratingSpec(size=32, noise_std=1.0)
    fi = propagated_fisher(net, spec, [0.3, 1.2], layers=["1"], solver="exact")
    assert bool((fi > 0).all())
    # the wall clock alone would have priced the same run at hours: the guard's arithmetic
    wall_only = 100.0 * 2  # the best of the passes, times a chunk of two images
    cost = cost_model.estimate("1", 8 * 32 * 32, 32 * 32, 8 * 32 * 32, 2, 1, wall_only, 4)
    assert cost.seconds["exact"] > cost_model.HOUR


def test_device_and_bad_arguments():
    spec = grating_spec()
    net = linear_sequential(torch.eye(64, dtype=torch.float64)[:10])
    cpu = propagated_fisher(net, spec, ANGLES, device="cpu")
    np.testing.assert_array_equal(cpu.values, propagated_fisher(net, spec, ANGLES).values)
    assert output_noise_fisher(net, spec, ANGLES, device=torch.device("cpu")).shape[0] > 0
    cases = [
        (dict(device="bogus"), "device"),
        (dict(solver="cg"), "solver"),
        (dict(rtol=0.0), "rtol"),
        (dict(noise_at="bogus"), "noise_at"),
        (dict(force="yes"), "force"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=f"^{name} must"):
            propagated_fisher(net, spec, ANGLES, **kwargs)
    with pytest.raises(ValueError, match="^spec must"):
        propagated_fisher(net, "grating", ANGLES)
    with pytest.raises(ValueError, match="^model must"):
        propagated_fisher("resnet", spec, ANGLES)
    with pytest.raises(ValueError, match="^generator must"):
        sampled_fisher(net, spec, ANGLES, layers=["1"], generator="seed0")
    with pytest.raises(ValueError, match="^output_sigma must"):
        measure_fisher(net, spec, methods=["output_gaussian"], output_sigma=-1.0)


def test_measure_fisher_on_a_sequential_selects_by_estimator():
    spec = grating_spec()
    w = torch.randn(12, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = linear_sequential(w)
    ds = measure_fisher(net, spec, methods=["propagated", "output_gaussian"], angles=4,
                        layers=["input", "1.0", "output"])
    assert ds["fisher"].dims == ("estimator", "layer", "angle")
    prop = ds["fisher"].sel(estimator="propagated", layer="1.0")
    closed = linear_closed_form(w, xdot(spec, torch.arange(4) * math.pi / 4), 0.5)
    np.testing.assert_allclose(prop, closed, rtol=1e-4)
    assert np.isnan(ds["fisher"].sel(estimator="output_gaussian", layer="input")).all()
    res = method_result(ds, "propagated")
    assert res.attrs["solver"] == "auto" and list(res["layer"].values) == ["input", "1.0",
                                                                            "output"]


class Block(nn.Module):
    """A ResNet basic block: a shared in-place ReLU and an in-place residual sum."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False, dtype=torch.float64)
        self.bn1 = nn.BatchNorm2d(ch, dtype=torch.float64)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False, dtype=torch.float64)
        self.bn2 = nn.BatchNorm2d(ch, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def tiny_resnet() -> nn.Module:
    torch.manual_seed(4)
    net = nn.Sequential()
    net.add_module("stem", nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64))
    net.add_module("layer1", nn.Sequential(Block(4)))
    net.add_module("pool", nn.AdaptiveAvgPool2d(2))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(16, 3, dtype=torch.float64))
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net


def test_residual_network_layers_are_captured_before_in_place_ops():
    spec = grating_spec()
    net = tiny_resnet()

    def colour(theta: torch.Tensor) -> torch.Tensor:
        return render_clean(theta, spec, dtype=torch.float64).expand(-1, 3, -1, -1)

    stim = as_stimulus(colour, noise_std=0.5)
    layers = ["stem", "layer1.0.bn2", "layer1.0.relu", "layer1", "fc"]
    out = output_noise_fisher(net, stim, ANGLES, layers=layers, sigma=2.0)
    assert list(out["layer"].values) == layers
    blk = net.layer1[0]

    def parts(a: torch.Tensor) -> tuple[torch.Tensor, ...]:  # the same network by hand
        s = net.stem(colour(a))
        b2 = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(s)))))
        y = torch.relu(b2 + s)
        return s, b2, y, y, net.fc(net.flat(net.pool(y)))

    net.eval()
    derivs = torch.func.jvp(parts, (ANGLES,), (torch.ones_like(ANGLES),))[1]
    for name, d in zip(layers, derivs, strict=True):  # bn2 before "+= x"; relu: last call
        expected = (d.reshape(len(ANGLES), -1) ** 2).sum(1).detach().numpy() / 4.0
        np.testing.assert_allclose(out.sel(layer=name).values, expected, rtol=1e-10)
    exact = propagated_fisher(net, stim, ANGLES, layers=layers, solver="exact")
    kry = propagated_fisher(net, stim, ANGLES, layers=layers, solver="krylov", rtol=1e-7)
    np.testing.assert_allclose(kry.values, exact.values, rtol=1e-5)
    pixels = propagated_fisher(net, stim, ANGLES, layers=["input"]).values[0]
    assert (exact.values <= pixels * (1 + 1e-9)).all()
    # noise at the stem: the residual path carries it too, J(layer1) <= J(stem)
    at = propagated_fisher(net, stim, ANGLES, noise_at="stem", sigma=0.5,
                           layers=["stem", "layer1", "fc"], solver="exact")
    assert (at.values <= at.sel(layer="stem").values * (1 + 1e-9)).all()
    assert net.training is False or all(not m.training for m in net.modules())


def test_readme_example_fisher_of_your_own_network():
    # the example of the README's section "Fisher information of your own network"
    from anglesim.fisher import as_stimulus, list_layers, propagated_fisher
    from anglesim.stimuli import GratingSpec, render_clean

    spec = GratingSpec(size=16, noise_std=0.5)

    def stimulus(theta):  # any differentiable θ -> images [N, C, H, W]
        return render_clean(theta, spec).expand(-1, 3, -1, -1)  # grey on 3 channels

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 8 * 8, 2))
    assert list_layers(net) == ["input", "0", "1", "2", "3", "4", "output"]
    fi = propagated_fisher(net, as_stimulus(stimulus, noise_std=0.5),
                           torch.linspace(0, 3.0, 4), layers=["input", "2", "4"],
                           solver="krylov", rtol=1e-3)
    assert fi.dims == ("layer", "angle") and list(fi["layer"].values) == ["input", "2", "4"]
    assert (fi["fisher_error"] <= 1e-3 * fi).all()
    assert (fi.sel(layer="4") <= fi.sel(layer="2") * (1 + 2e-3)).all()
