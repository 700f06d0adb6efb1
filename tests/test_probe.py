"""The ridge probe the studies share (anglesim.probe.ridge_readout)."""

import numpy as np
import pytest
import torch

from anglesim.probe import ridge_readout


@pytest.mark.parametrize("n, d", [(200, 5), (40, 60)])  # more samples than features, and fewer
def test_recovers_a_linear_map_and_its_intercept(n, d):
    gen = torch.Generator().manual_seed(n + d)
    x = torch.randn(2 * n, d, generator=gen, dtype=torch.float64) * 3 + 1
    w = torch.randn(d, 2, generator=gen, dtype=torch.float64)
    y = x @ w + torch.tensor([5.0, -2.0], dtype=torch.float64)
    pred = ridge_readout(x[:n], y[:n], x[n:], ridge=1e-9)
    if n > d:  # identifiable: exact up to the tiny ridge
        torch.testing.assert_close(pred, y[n:], rtol=1e-5, atol=1e-5)
    else:  # under-determined: still far better than predicting the mean
        base = ((y[n:] - y[:n].mean(0)) ** 2).mean()
        assert ((pred - y[n:]) ** 2).mean() < base


def test_matches_the_closed_form_and_shrinks_to_the_mean():
    rng = np.random.default_rng(0)
    x, y, t = rng.normal(size=(30, 4)), rng.normal(size=30), rng.normal(size=(7, 4))
    mu, sd = x.mean(0), x.std(0, ddof=1)
    z, zt = (x - mu) / sd, (t - mu) / sd
    beta = np.linalg.solve(z.T @ z + 0.1 * 30 * np.eye(4), z.T @ (y - y.mean()))
    got = ridge_readout(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(t), 0.1)
    np.testing.assert_allclose(got.numpy(), y.mean() + zt @ beta, rtol=1e-12)
    huge = ridge_readout(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(t), 1e12)
    np.testing.assert_allclose(huge.numpy(), y.mean(), atol=1e-9)


def test_a_constant_feature_does_not_divide_by_zero():
    x = torch.cat([torch.ones(10, 1), torch.arange(10.0)[:, None]], 1)
    pred = ridge_readout(x, 2 * torch.arange(10.0), x, ridge=1e-9)
    assert torch.isfinite(pred).all()
    torch.testing.assert_close(pred, 2 * torch.arange(10.0, dtype=torch.float64), atol=1e-4,
                               rtol=0)


@pytest.mark.parametrize("args, message", [
    ((torch.ones(3, 2), torch.ones(4), torch.ones(1, 2)), "train_y must be"),
    ((torch.ones(3, 2), torch.ones(3), torch.ones(1, 3)), "^test_x must be \\(m, 2\\)"),
    ((torch.ones(1, 2), torch.ones(1), torch.ones(1, 2)),
     "^train_x must be \\(n, d\\) features of n >= 2"),
    ((np.ones((3, 2)), torch.ones(3), torch.ones(1, 2)),
     "^train_x must be a torch tensor, got array"),
])
def test_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        ridge_readout(*args)
    with pytest.raises(ValueError, match="ridge"):
        ridge_readout(torch.ones(3, 2), torch.ones(3), torch.ones(1, 2), ridge=-1.0)


def test_bad_probe_arguments_get_one_line_naming_them():
    x, y = torch.zeros(4, 2), torch.zeros(4)
    for name, call in [("train_x", lambda: ridge_readout("x", y, x)),
                       ("test_x", lambda: ridge_readout(x, y, torch.zeros(2, 3))),
                       ("train_y", lambda: ridge_readout(x, torch.zeros(3), x)),
                       ("ridge", lambda: ridge_readout(x, y, x, ridge=-1))]:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(f"{name} must be "), str(info.value)
