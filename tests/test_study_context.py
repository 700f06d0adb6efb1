"""The replicate context (seeds, streams, angles, device, checks) and the runner (plans once,
draws from the Dataset in memory, returns it with the figure paths)."""

import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from anglesim import seeding
from anglesim import study as st
from anglesim.models import CNNConfig, build_model, reference_mlp


def _ctx(**changes):
    base = dict(condition={"kappa": 4.0}, replicate=1, seed=123, params={"n_angles": 6})
    base.update(changes)
    return st.ReplicateContext(**base)


def test_seed_generator_gives_the_weights_the_global_seed_gave():
    ctx = _ctx()
    torch.manual_seed(ctx.seed)
    before = build_model(CNNConfig.standard())
    after = build_model(CNNConfig.standard(), generator=ctx.seed_generator())
    for a, b in zip(before.parameters(), after.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(ctx.stream_seed("init"))
    mlp = reference_mlp(image_size=9)
    same = reference_mlp(image_size=9, generator=ctx.generator("init", device="cpu"))
    for a, b in zip(mlp.parameters(), same.parameters(), strict=True):
        assert torch.equal(a, b)


def test_streams_are_the_seeding_module_s():
    ctx = _ctx()
    assert ctx.stream_seed("data", 2) == seeding.stream_seed(123, "data", 2)
    a = torch.rand(5, generator=ctx.generator("eval"))
    b = torch.rand(5, generator=seeding.torch_generator(123, "eval"))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.rand(5, generator=ctx.generator("eval", 1)))
    np.testing.assert_array_equal(ctx.numpy_generator("x").normal(size=3),
                                  seeding.numpy_generator(123, "x").normal(size=3))
    shifted = torch.Generator().manual_seed(seeding.stream_seed(123, "eval") + 1)
    assert torch.equal(torch.rand(4, generator=ctx.generator("eval", offset=1)),
                       torch.rand(4, generator=shifted))
    root = torch.Generator().manual_seed(seeding.root_seed(123))
    assert torch.equal(torch.rand(4, generator=ctx.root_generator()),
                       torch.rand(4, generator=root))


@pytest.mark.parametrize("seed", [0, 1, 7, 2**40])
def test_root_seed_is_the_unnamed_seed_sequence(seed):
    high, low = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32)
    assert seeding.root_seed(seed) == int(high) * 2**32 + int(low)
    assert seeding.root_seed(seed) != seeding.stream_seed(seed, "data")


def test_angles_device_and_params():
    ctx = _ctx()
    assert torch.equal(ctx.angles, torch.arange(6, dtype=torch.float32) * (math.pi / 6))
    assert ctx.device is None and ctx.on_device == {}
    on = _ctx(params={"device": "cuda:1"})
    assert on.device == "cuda:1" and on.on_device == {"device": "cuda:1"}
    declared = _ctx(params={}, grid_angles=(0.0, 1.0))
    assert torch.equal(declared.angles, torch.tensor([0.0, 1.0]))
    assert _ctx(params={}, grid_angles=4).angles.numel() == 4
    assert _ctx(params={"n_angles": 3}, grid_angles=4).angles.numel() == 3
    with pytest.raises(ValueError, match="ctx.angles needs an angle grid"):
        _ = _ctx(params={}).angles


@pytest.mark.parametrize("changes, message", [
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(replicate=1.0), "replicate must be an integer >= 0, got 1.0"),
    (dict(condition=[1]), "condition must be a dict"),
    (dict(params="full"), "params must be a dict"),
])
def test_a_bad_context_fails_at_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        _ctx(**changes)


def test_the_standard_stimulus_ties_are_expected_and_other_ties_still_warn():
    from anglesim.pool_ties import PoolTieWarning, warn_pool_ties
    from anglesim.studies._recipes import CNN, SPEC, expects_aperture_ties

    # the warning the studies expect is the one the standard stimulus gives
    torch.manual_seed(0)
    with pytest.warns(PoolTieWarning) as caught:
        warn_pool_ties(build_model(CNN), SPEC)
    message = str(caught[0].message)

    @expects_aperture_ties
    def replicate(ctx):
        warnings.warn(message, PoolTieWarning, stacklevel=1)
        warnings.warn("tied max-pool windows receive noise (x) over 8 images", PoolTieWarning,
                      stacklevel=1)
        return ctx.seed

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert replicate(_ctx()) == 123
    assert [str(w.message) for w in seen] == [
        "tied max-pool windows receive noise (x) over 8 images"]


# the runner ---------------------------------------------------------------------------------


def _replicate(ctx):
    values = ctx.numpy_generator("v").normal(size=ctx.params["n"]) + ctx.condition["shift"]
    return xr.Dataset({"v": ("i", values)})


def _figure(ds):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(ds["v"].mean("replicate").values.ravel())
    return fig


def _study(**changes):
    base = dict(name="demo", question="q?", replicate=_replicate,
                sizes={"quick": {"n": 3, "replicates": 2}, "full": {"n": 5, "replicates": 2}},
                grid={"shift": [0.0, 10.0]}, figure=_figure, summary=lambda ds: "fine",
                version="1")
    base.update(changes)
    return st.Study(**base)


def test_run_plans_once_and_draws_from_the_dataset_in_memory(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from anglesim import io
    from anglesim.study import _runner

    planned = []
    monkeypatch.setattr(_runner, "plan", lambda *a, **k: planned.append(1) or st.plan(*a, **k))

    def no_reload(*args, **kwargs):
        raise AssertionError("the runner reloaded a Dataset")

    monkeypatch.setattr(io, "load_dataset", no_reload)
    result = st.run(_study(), quick=True, results=tmp_path, progress=False, cache=False)
    assert planned == [1]
    assert result.path == tmp_path / "demo_quick.nc" and result.path.is_file()
    assert [p.name for p in result.figures] == ["demo_quick.png", "demo_quick.pdf"]
    assert result.n_failed == 0 and result.summary() == "fine"
    assert result.plan.n_replicates == 2 and result.plan.grid == {"shift": [0.0, 10.0]}
    monkeypatch.undo()
    saved = io.load_dataset(result.path)
    xr.testing.assert_equal(saved["v"], result.dataset["v"])
    assert (result.dataset["v"].sel(shift=10.0) > 5).all()  # ctx.condition reached it


def test_declared_angles_reach_the_context_and_the_cache_key(tmp_path):
    def replicate(ctx):
        return xr.Dataset({"theta": ("angle", ctx.angles.double().numpy())})

    study = _study(replicate=replicate, angles=[0.0, 0.5, 1.0], figure=None)
    assert st.plan(study, quick=True).config["angles"] == [0.0, 0.5, 1.0]
    assert "angles" not in st.plan(_study(), quick=True).config
    result = st.run(study, quick=True, results=tmp_path, progress=False, cache=False)
    np.testing.assert_allclose(result.dataset["theta"].isel(shift=0, replicate=0),
                               [0.0, 0.5, 1.0])


def test_run_checks_its_parameters_before_running(tmp_path):
    for kwargs, message in [(dict(n_jobs=0), "n_jobs must be None or a non-zero integer"),
                            (dict(cache="yes"), "cache must be True or False"),
                            (dict(draw=None), "draw must be True or False")]:
        with pytest.raises(ValueError, match=message):
            st.run(_study(), quick=True, results=tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_run_without_drawing_and_a_study_without_figure(tmp_path):
    result = st.run(_study(), quick=True, results=tmp_path, progress=False, draw=False)
    assert result.figures == ()
    result = st.run(_study(figure=None, summary=None), quick=True, results=tmp_path / "b",
                    progress=False)
    assert result.figures == () and result.summary() is None
