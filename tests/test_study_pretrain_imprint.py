"""pretrain_imprint's fingerprint measure and declared claims on known answers."""

import numpy as np
import pytest
import xarray as xr

from anglesim.claims import evaluate_claims
from anglesim.studies import pretrain_imprint as pi


def synthetic(parent_share: dict, n: int = 12, children: int = 4, angles: int = 48,
              seed: int = 0, own: float = 1.0) -> xr.Dataset:
    """A study-shaped Dataset: each child's log FI is a shared curve plus ``parent_share[state]``
    times its parent's own random wiggle plus ``own`` times the child's own wiggle."""
    rng = np.random.default_rng(seed)
    theta = np.arange(angles) * np.pi / angles
    shared = 6 + np.cos(2 * theta)
    log_fi = np.empty((1, n, len(pi.STATES), children, 2, angles))
    for s, state in enumerate(pi.STATES):
        parent = rng.normal(size=(n, 1, 1, angles))
        child = rng.normal(size=(n, children, 2, angles))
        log_fi[0, :, s] = shared + 0.1 * (parent_share[state] * parent + own * child)
    return xr.Dataset(
        {"fisher": (("kappa", "replicate", "state", "child", "layer", "angle"), np.exp(log_fi)),
         "failed": (("kappa", "replicate"), np.zeros((1, n), bool))},
        coords={"kappa": [pi.KAPPA], "replicate": np.arange(n), "state": list(pi.STATES),
                "child": np.arange(children), "layer": ["fc", "output"], "angle": theta})


def test_imprint_on_known_answers():
    # clones (no child wiggle): within = 1, and between about −1/(P − 1) (the residuals of P
    # parents sum to 0; exactly so where their norms are equal)
    ds = synthetic({"reset": 1.0, "kept": 1.0}, n=5, own=0.0)
    m = pi.imprint(ds).isel(kappa=0)
    np.testing.assert_allclose(m["within"], 1.0, atol=1e-6)
    np.testing.assert_allclose(m["between"].mean("replicate"), -1 / 4, atol=0.02)
    assert (m["between"] < 0).all()
    # no parent effect: within and between both near −1/(PC − 1) (children exchangeable)
    ds = synthetic({"reset": 0.0, "kept": 0.0}, n=12, angles=400)
    m = pi.imprint(ds).isel(kappa=0)
    assert abs(float(m["imprint"].mean())) < 0.02
    # half the variance from the parent: within ≈ 1/2 (the correlation of two siblings)
    ds = synthetic({"reset": 1.0, "kept": 1.0}, n=12, angles=400)
    m = pi.imprint(ds).isel(kappa=0)
    assert float(m["within"].mean()) == pytest.approx(0.5, abs=0.06)


@pytest.mark.parametrize("share, expected", [
    ({"reset": 1.0, "kept": 3.0}, {"fingerprint[state=reset]": "supported",
                                   "fingerprint[state=kept]": "supported",
                                   "kept_stronger": "supported"}),
    ({"reset": 3.0, "kept": 1.0}, {"fingerprint[state=reset]": "supported",
                                   "kept_stronger": "contradicted"}),
    ({"reset": 0.0, "kept": 0.0}, {"fingerprint[state=reset]": "unresolved",
                                   "fingerprint[state=kept]": "unresolved",
                                   "kept_stronger": "unresolved"}),
])
def test_claims_decide_as_the_data_say(share, expected):
    records = evaluate_claims(pi.add_imprint(synthetic(share)), pi.CLAIMS)
    verdicts = {r.name: r.verdict for r in records}
    assert len(records) == 3 and all(r.n == 12 for r in records)
    for name, verdict in expected.items():
        assert verdicts[name] == verdict, verdicts


@pytest.mark.parametrize("n, children, angles", [(12, 4, 48), (2, 2, 8)])
def test_figure_meets_the_standard(n, children, angles):
    import matplotlib.pyplot as plt

    from anglesim.plotting import check_figure

    ds = pi.add_imprint(synthetic({"reset": 1.0, "kept": 3.0}, n=n, children=children,
                                  angles=angles))
    fig = pi.plot_pretrain_imprint(ds)
    try:
        assert check_figure(fig, "double") == []
    finally:
        plt.close(fig)
    text = pi.figure_caption(ds)
    assert f"n = {n} parents" in text and "±" not in text


def test_quick_run_stores_claims_and_labels_everything(tmp_path):
    from anglesim import study as st
    from anglesim.claims import claims_from_dataset

    result = st.run("pretrain_imprint", quick=True, results=tmp_path, progress=False,
                    draw=False)
    ds = result.dataset
    assert {r.contrast for r in claims_from_dataset(ds)} == {c.name for c in pi.CLAIMS}
    for name in list(ds.data_vars) + list(ds.coords):
        assert {"units", "long_name"} <= set(ds[name].attrs), name
    assert "caption:" in result.summary()
