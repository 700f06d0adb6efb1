"""The Golub–Kahan solver's bracket: it contains the J it bounds, at every tolerance, for
fewer and more units than pixels, and closes on the exact value as the tolerance shrinks."""

import numpy as np
import pytest
import torch

from anglesim.fisher._krylov import N_PROBES, krylov_fisher, probes
from anglesim.fisher._quadrature import GaussRadau


def reference(w, x_dot, std, eps):
    """J = gᵀ(BBᵀ + ε D̂)⁻¹g with the solver's own probe estimate D̂ of diag(BBᵀ)."""
    b = w * std  # B = A Σ^{1/2}
    signs = probes(1, w.shape[1], torch.float64, w.device)[:, 0]  # [K, P]
    d_hat = ((signs @ b.T) ** 2).mean(0)
    g = w @ x_dot
    m = b @ b.T + eps * torch.diag(d_hat)
    return float(g @ torch.linalg.solve(m, g))


@pytest.mark.parametrize("n_units, n_pix, decay", [
    (5, 40, 1.0),    # fewer units than pixels: the unit space is exhausted in 5 steps
    (60, 30, 1.0),   # more units than pixels
    (50, 50, 0.85),  # square, singular values spread over many decades (slow)
])
@pytest.mark.parametrize("rtol", [0.3, 1e-2, 1e-4])
def test_bracket_contains_j(n_units, n_pix, decay, rtol):
    g = torch.Generator().manual_seed(n_units * 1000 + n_pix)
    u, _ = torch.linalg.qr(torch.randn(n_units, n_units, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n_pix, n_pix, generator=g, dtype=torch.float64))
    k = min(n_units, n_pix)
    sv = decay ** torch.arange(k, dtype=torch.float64)
    w = u[:, :k] @ torch.diag(sv) @ v[:, :k].T
    std = 0.5 + torch.rand(n_pix, generator=g, dtype=torch.float64)
    x = torch.randn(1, n_pix, generator=g, dtype=torch.float64)
    x_dot = torch.randn(1, n_pix, generator=g, dtype=torch.float64)
    eps = 1e-6
    res = krylov_fisher(lambda z: z @ w.T, x, x_dot, std, eps, rtol, 2000)
    j, err, iters, ok = res.fisher, res.error, res.iterations, res.converged
    ref = reference(w, x_dot[0], std, eps)
    assert bool(ok[0]) and float(err[0]) <= rtol * float(j[0]) * (1 + 1e-9)
    assert abs(float(j[0]) - ref) <= float(err[0]) * (1 + 1e-6) + 1e-9 * ref
    assert 1 <= int(iters[0]) <= 2000


def test_gauss_radau_bounds_bracket_a_tridiagonal_quadratic_form():
    g = torch.Generator().manual_seed(3)
    n, eps = 12, 1e-3
    r = torch.diag(torch.rand(n, generator=g, dtype=torch.float64) + 0.05)
    r += torch.diag(torch.rand(n - 1, generator=g, dtype=torch.float64), 1)  # R upper bidiag
    t = r.T @ r  # T = RᵀR ⪰ 0, unshifted pivots α_i²
    exact = float(torch.linalg.solve(t + eps * torch.eye(n, dtype=torch.float64),
                                     torch.eye(n, dtype=torch.float64)[0])[0])
    bounds = GaussRadau(r[0, 0:1] ** 2, eps)
    on = torch.ones(1, dtype=torch.bool)
    last_lo, last_hi = 0.0, float("inf")
    for k in range(1, n):
        b = t[k - 1, k:k + 1]
        hi = float(bounds.upper(b))
        lo = float(bounds.gauss)
        assert lo <= exact * (1 + 1e-12) and exact <= hi * (1 + 1e-12)
        assert lo >= last_lo * (1 - 1e-12) and hi <= last_hi * (1 + 1e-12)  # monotone
        last_lo, last_hi = lo, hi
        bounds.next(b, r[k, k:k + 1] ** 2, on)
    assert float(bounds.gauss) == pytest.approx(exact, rel=1e-10)  # the whole matrix
    assert N_PROBES == 16


@pytest.mark.parametrize("size", [12, 20])
def test_linearized_products_give_the_plain_jvp_results(monkeypatch, size):
    import warnings

    import anglesim.fisher._krylov as krylov
    from anglesim.fisher import propagated_fisher
    from anglesim.models import CNNConfig, build_model
    from anglesim.stimuli import GratingSpec

    torch.manual_seed(0)  # build_model's initial weights come from the global generator
    net = build_model(CNNConfig(image_size=size))
    spec = GratingSpec(size=size, noise_std=0.5)
    made = []
    original = krylov.pushforward
    monkeypatch.setattr(krylov, "pushforward",
                        lambda fn, x: made.append(original(fn, x)) or made[-1])
    runs = {}
    for after in (0, 10**9):  # linearized from the first step / never
        monkeypatch.setattr(krylov, "LINEARIZE_AFTER", after)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[after] = propagated_fisher(net, spec, [0.4, 1.3], layers=["conv1", "conv2"],
                                            solver="krylov", rtol=1e-4)
    assert made and all(f.__name__ != "plain" for f in made)  # the traced path did run
    lin, plain = runs[0], runs[10**9]
    np.testing.assert_allclose(lin.values, plain.values, rtol=1e-6)
    np.testing.assert_array_equal(lin["iterations"].values, plain["iterations"].values)


def _problem(n_units=50, n_pix=60, decay=0.8, seed=5):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n_units, n_units, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n_pix, n_pix, generator=g, dtype=torch.float64))
    k = min(n_units, n_pix)
    w = u[:, :k] @ torch.diag(decay ** torch.arange(k, dtype=torch.float64)) @ v[:, :k].T
    std = 0.5 + torch.rand(n_pix, generator=g, dtype=torch.float64)
    x = torch.randn(2, n_pix, generator=g, dtype=torch.float64)
    x_dot = torch.randn(2, n_pix, generator=g, dtype=torch.float64)
    return w, std, x, x_dot


def _pixel_solution(w, std, x_dot, eps):
    """x = (B̃ᵀB̃ + εI)⁻¹u with the solver's own D̂, for each image."""
    b = w * std
    signs = probes(1, w.shape[1], torch.float64, w.device)[:, 0]
    d_hat = ((signs @ b.T) ** 2).mean(0)
    bt = b / d_hat.sqrt()[:, None]
    m = bt.T @ bt + eps * torch.eye(w.shape[1], dtype=torch.float64)
    u = x_dot / std
    return torch.linalg.solve(m, u.T).T


@pytest.mark.parametrize("start", ["exact", "near", "garbage"])
def test_warm_start_keeps_the_bracket_and_saves_iterations(start):
    w, std, x, x_dot = _problem()
    eps, rtol = 1e-6, 1e-6
    truth = torch.tensor([reference(w, x_dot[i], std, eps) for i in range(2)],
                         dtype=torch.float64)
    cold = krylov_fisher(lambda z: z @ w.T, x, x_dot, std, eps, rtol, 2000)
    exact = _pixel_solution(w, std, x_dot, eps)
    g = torch.Generator().manual_seed(9)
    x0 = {"exact": exact, "near": exact * (1 + 1e-3 * torch.randn(exact.shape, generator=g,
                                                                      dtype=torch.float64)),
          "garbage": 1e3 * torch.randn(exact.shape, generator=g, dtype=torch.float64)}[start]
    warm = krylov_fisher(lambda z: z @ w.T, x, x_dot, std, eps, rtol, 2000, start=x0)
    assert bool(warm.converged.all())
    assert ((warm.fisher - truth).abs() <= warm.error * (1 + 1e-6) + 1e-9 * truth).all()
    if start != "garbage":
        assert (warm.iterations <= cold.iterations).all()
    if start == "exact":
        assert (warm.iterations <= 2).all()
    # the pixel-space solution it returns solves the system (to the tolerance's order)
    rel = (warm.solution - exact).norm(dim=1) / exact.norm(dim=1)
    assert (rel < 1e-2).all()


@pytest.mark.parametrize("n_stem, n_pix, n_units, seed, rtol", [
    (80, 80, 80, 3, 1e-6), (60, 90, 120, 4, 1e-5), (100, 70, 50, 5, 1e-5),
    (40, 100, 40, 6, 1e-5)])
def test_a_start_with_a_negative_unit_offset_is_taken_and_keeps_the_bracket(
        n_stem, n_pix, n_units, seed, rtol):
    """Layer 1 = F · stem: the stem's pixel-space solution has components up to 1/ε in the
    directions the stem loses, which F mixes into layer 1's kept ones, so the unit-space offset
    c₀ᵤ is hugely negative (about −1e7 against ‖u‖² ≈ 100 in the first case); the start is
    still taken and the shifted bracket still holds, with more, as many or fewer units than
    the stem and than pixels."""
    w_s, std, x, x_dot = _problem(n_stem, n_pix, 0.85, seed=seed)
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(n_units, n_stem, generator=g, dtype=torch.float64) @ w_s
    eps = 1e-6
    stem = krylov_fisher(lambda z: z @ w_s.T, x, x_dot, std, eps, 1e-10, 5000)
    truth = torch.tensor([reference(w1, x_dot[i], std, eps) for i in range(2)],
                         dtype=torch.float64)
    warm = krylov_fisher(lambda z: z @ w1.T, x, x_dot, std, eps, rtol, 5000,
                         start=stem.solution)
    assert bool(warm.started.all()) and bool(warm.converged.all())
    assert ((warm.fisher - truth).abs() <= warm.error * (1 + 1e-6)).all()
    # the offset's rounding allowance is in the error, and small beside the tolerance
    assert (warm.error <= 1.5 * rtol * truth).all()


def test_warm_starts_save_resnet_layer1_iterations_and_skip_layers_with_fewer_units():
    """The bench's ResNet-shaped network (width 16, 32 px, float64 products): layer1 started
    from the stem's solution takes at most 3/4 of its cold iterations (measured 176 against
    360 at this angle) and stays within its bound of the float64 exact J; layer2 has fewer units
    than layer1 and is started cold."""
    from anglesim.bench._workloads import STANDARD_SPEC
    from anglesim.bench.resnet import resnet_model
    from anglesim.fisher import propagated_fisher

    model = resnet_model(16, seed=0)
    spec = STANDARD_SPEC.replace(size=32, channels=3)
    angles = torch.tensor([1.5707963])
    layers = ["maxpool", "layer1", "layer2"]
    runs = {warm: propagated_fisher(model, spec, angles, layers=layers, solver="krylov",
                                    precision="float64", warm_start=warm, force=True,
                                    pool_ties="record")
            for warm in (True, False)}
    its = {w: r["iterations"] for w, r in runs.items()}
    assert (its[True].sel(layer="layer1") <= 0.75 * its[False].sel(layer="layer1")).all()
    assert (its[True].sel(layer="layer2") == its[False].sel(layer="layer2")).all()
    exact = propagated_fisher(model, spec, angles, layers=["layer1"], solver="exact",
                              precision="float64", force=True, pool_ties="record")
    warm = runs[True].sel(layer="layer1")
    gap = np.abs(warm.values - exact.sel(layer="layer1").values)
    assert (gap <= warm["fisher_error"].values).all()


def test_reorthogonalisation_and_estimate_mode_stay_within_their_claims():
    w, std, x, x_dot = _problem(60, 60, 0.85, seed=2)
    eps, rtol = 1e-6, 1e-4
    truth = torch.tensor([reference(w, x_dot[i], std, eps) for i in range(2)],
                         dtype=torch.float64)
    plain = krylov_fisher(lambda z: z @ w.T, x, x_dot, std, eps, rtol, 3000)
    kept = krylov_fisher(lambda z: z @ w.T, x, x_dot, std, eps, rtol, 3000, reorthogonalize=60)
    assert ((kept.fisher - truth).abs() <= kept.error * (1 + 1e-6) + 1e-9 * truth).all()
    assert (kept.iterations <= plain.iterations).all()
    estimate = krylov_fisher(lambda z: z @ w.T, x, x_dot, std, eps, rtol, 3000, certify=False)
    assert (estimate.iterations <= plain.iterations).all()
    assert ((estimate.fisher - truth).abs() <= 10 * rtol * truth).all()  # an estimate: close


def test_sensitivity_to_eps_matches_a_difference_quotient():
    w, std, x, x_dot = _problem(30, 40, 0.7, seed=4)
    eps = 1e-4
    res = krylov_fisher(lambda z: z @ w.T, x, x_dot, std, eps, 1e-10, 2000, sensitivity=True)
    h = 1e-3
    up = torch.tensor([reference(w, x_dot[i], std, eps * (1 + h)) for i in range(2)],
                      dtype=torch.float64)
    down = torch.tensor([reference(w, x_dot[i], std, eps * (1 - h)) for i in range(2)],
                        dtype=torch.float64)
    quotient = (up - down) / (2 * h)  # dJ/d log ε
    np.testing.assert_allclose(res.dlog_eps.numpy(), quotient.numpy(), rtol=1e-4)
