"""Data: evaluation grid, on-the-fly stream, finite datasets and the reference split."""

import math

import pytest
import torch

from anglesim.data import draw, draw_varied, evaluation_grid, make_finite, reference_split, stream
from anglesim.distributions import Uniform, VonMises
from anglesim.stimuli import GratingSpec

SPEC = GratingSpec(size=16, noise_std=0.1)


def test_evaluation_grid_covers_half_circle_once():
    g = evaluation_grid(8)
    assert g.dtype == torch.float32 and g.shape == (8,)
    assert g[0] == 0 and torch.allclose(g[1] - g[0], torch.tensor(math.pi / 8))
    assert g[-1] < math.pi
    with pytest.raises(ValueError, match="n_angles"):
        evaluation_grid(0)


def test_stream_yields_fresh_batches_deterministically():
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = list(stream(VonMises(1.0, 2.0), SPEC, 4, 3, g1))
    b = list(stream(VonMises(1.0, 2.0), SPEC, 4, 3, g2))
    assert len(a) == 3
    for (xa, ta), (xb, tb) in zip(a, b, strict=True):
        assert xa.shape == (4, 1, 16, 16) and ta.shape == (4,)
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    assert not torch.equal(a[0][1], a[1][1])


def test_reference_split_sizes_and_batches():
    train, val, test = reference_split(Uniform(), SPEC, 3, torch.Generator().manual_seed(1))
    assert (len(train), len(val), len(test)) == (24, 6, 6)
    seen = torch.cat([t for _, t in train.batches(5, torch.Generator().manual_seed(2))])
    assert torch.equal(seen.sort().values, train.angles.sort().values)


def test_finite_dataset_validation():
    with pytest.raises(ValueError, match="n"):
        make_finite(Uniform(), SPEC, 0)
    ds = make_finite(Uniform(), SPEC, 4)
    with pytest.raises(ValueError, match="batch_size"):
        next(ds.batches(0))


def test_training_set_angles_are_the_generators_first_prior_draws():
    """studies/model_choices replays a finite training set's angles from its seed."""
    import torch

    from anglesim.data import reference_split
    from anglesim.distributions import Uniform
    from anglesim.seeding import root_generator
    from anglesim.stimuli import GratingSpec

    train, _, _ = reference_split(Uniform(), GratingSpec(size=16), 4, root_generator(3))
    replay = Uniform().sample(32, generator=root_generator(3))
    assert torch.equal(train.angles, replay)


@pytest.mark.parametrize("name, make", [
    ("vary", lambda: draw_varied(Uniform(), GratingSpec(), 3, vary={"bogus": (0, 1)})),
    ("vary", lambda: draw_varied(Uniform(), GratingSpec(), 3, vary=3)),
    ("vary['contrast']", lambda: draw_varied(Uniform(), GratingSpec(), 3,
                                             vary={"contrast": (1.0, 0.5)})),
    ("n_angles", lambda: evaluation_grid(0)),
    ("generator", lambda: draw(Uniform(), GratingSpec(), 3, generator=1)),
])
def test_bad_data_arguments_get_one_line_naming_them(name, make):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name} must be "), message
