"""Label noise that sets which angles' labels carry information (Task.informative_prior)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import i0

from anglesim.distributions import Gridded, Uniform, VonMises
from anglesim.models import CNNConfig, build_model
from anglesim.stimuli import GratingSpec
from anglesim.training import Phase, Task, evaluate_error, keep_probability, kept_fraction, train
from anglesim.training._labels import relabel

SPEC = GratingSpec(size=16, frequency=3.0, noise_std=0.3)
CONFIG = CNNConfig(image_size=16, channels=(4,), kernel_size=3, fc_units=16, readout="cossin")


def small_model(seed=0):
    return build_model(CONFIG, generator=torch.Generator().manual_seed(seed))


def phase(name="p", **kw):
    base = dict(prior=Uniform(), spec=SPEC, epochs=2, steps_per_epoch=3, batch_size=8,
                eval_angles=8, eval_repeats=1)
    base.update(kw)
    return Phase(name, **base)


@pytest.mark.parametrize("kappa", [0.5, 1.0, 3.0])
def test_kept_fraction_and_keep_probability_of_a_von_mises_prior(kappa):
    """Against a uniform q: m = π min p = e^{-κ}/I0(κ); k = 1 at the rarest angle (π/2 from
    the mode) and e^{-2κ} at the mode."""
    prior = VonMises(0.3, kappa)
    m = kept_fraction(prior, Uniform())
    assert m == pytest.approx(math.exp(-kappa) / i0(kappa), rel=1e-6)
    k = keep_probability(np.array([0.3, 0.3 + math.pi / 2, 0.3 + math.pi / 4]), prior,
                         Uniform())
    np.testing.assert_allclose(k, [math.exp(-2 * kappa), 1.0, math.exp(-kappa)], rtol=1e-5)


def test_keep_probability_is_one_when_the_labels_already_follow_q():
    prior = VonMises(1.0, 2.0)
    theta = np.linspace(0, math.pi, 50, endpoint=False)
    assert kept_fraction(prior, prior) == pytest.approx(1.0)
    np.testing.assert_allclose(keep_probability(theta, prior, prior), 1.0)
    np.testing.assert_allclose(keep_probability(theta, Uniform(), Uniform()), 1.0)


def test_keep_probability_of_a_sub_range_q_is_zero_outside_it():
    """q = Uniform(0, π/2) on uniform images: m = 1/2 (p/q = (1/π)/(2/π)), k = 1 inside the
    range and 0 outside."""
    q = Uniform(0.0, math.pi / 2)
    assert kept_fraction(Uniform(), q) == pytest.approx(0.5)
    k = keep_probability(np.array([0.1, 1.0, 2.0, 3.0]), Uniform(), q)
    np.testing.assert_allclose(k, [1.0, 1.0, 0.0, 0.0])


def test_relabel_keeps_a_fraction_m_whose_angles_follow_q():
    """Images from vM(π/2, 1): a fraction m of the labels is kept, the kept angles are uniform
    (equal counts per quarter of the half-circle), and the replaced labels are uniform and
    independent of the image's angle."""
    prior = VonMises(math.pi / 2, 1.0)
    n = 200_000
    theta = prior.sample(n, torch.Generator().manual_seed(0))
    m = kept_fraction(prior, Uniform())
    labels = relabel(theta, prior, Uniform(), m, torch.Generator().manual_seed(1))
    assert labels.dtype == theta.dtype and labels.shape == theta.shape
    assert float(labels.min()) >= 0 and float(labels.max()) < math.pi
    kept = labels == theta  # a replaced label equals θ with probability 0
    assert kept.float().mean().item() == pytest.approx(m, abs=4 * math.sqrt(m / n))
    quarters = np.histogram(theta[kept].numpy(), bins=4, range=(0, math.pi))[0]
    expected = kept.sum().item() / 4
    assert np.all(np.abs(quarters - expected) < 5 * math.sqrt(expected)), quarters
    # replaced labels: uniform, whatever the image's angle (near the mode or far from it)
    replaced = labels[~kept].numpy()
    near = np.abs(theta[~kept].numpy() - math.pi / 2) < math.pi / 8
    for part in (replaced[near], replaced[~near]):
        counts = np.histogram(part, bins=4, range=(0, math.pi))[0]
        assert np.all(np.abs(counts - part.size / 4) < 5 * math.sqrt(part.size / 4)), counts


def test_relabel_is_reproducible_and_draws_from_its_generator_only():
    prior = VonMises(0.0, 2.0)
    theta = prior.sample(64, torch.Generator().manual_seed(0))
    m = kept_fraction(prior, Uniform())
    a = relabel(theta, prior, Uniform(), m, torch.Generator().manual_seed(3))
    b = relabel(theta, prior, Uniform(), m, torch.Generator().manual_seed(3))
    c = relabel(theta, prior, Uniform(), m, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_task_and_phase_refuse_label_noise_they_cannot_apply():
    with pytest.raises(ValueError, match="informative_prior"):
        Task(informative_prior="uniform")
    with pytest.raises(ValueError, match="angle targets"):
        Task(head="c", target="contrast", loss="mse", informative_prior=Uniform())
    with pytest.raises(ValueError, match="on-the-fly"):
        phase(dataset_size=4, tasks=[Task(informative_prior=Uniform())])
    # images only on [0, π/2): no angle outside it can keep its label, q = uniform is
    # unreachable
    with pytest.raises(ValueError, match="informative_prior must be 0 wherever"):
        phase(prior=Uniform(0.0, math.pi / 2), tasks=[Task(informative_prior=Uniform())])
    # a task's own prior is the images' prior of that task
    with pytest.raises(ValueError, match="informative_prior must be 0 wherever"):
        phase(tasks=[Task(prior=Uniform(0.0, 1.0), informative_prior=Uniform())])


def test_informative_prior_in_config_only_when_set():
    plain = phase(tasks=[Task()]).to_config()["tasks"][0]
    assert "informative_prior" not in plain
    noisy = phase(tasks=[Task(informative_prior=Uniform())]).to_config()["tasks"][0]
    assert noisy["informative_prior"] == Uniform().to_config()


def test_label_noise_that_keeps_every_label_trains_bit_identically():
    """q equal to the images' prior keeps every label (k = 1): the weights are those of
    training without label noise, so the noise's stream does not touch the images."""
    prior = Gridded(2 - np.cos(2 * np.linspace(0, math.pi, 90, endpoint=False)))
    a, b = small_model(), small_model()
    train(a, [phase(prior=prior, tasks=[Task()])], seed=2)
    train(b, [phase(prior=prior, tasks=[Task(informative_prior=prior)])], seed=2)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_label_noise_changes_training_and_mostly_random_labels_teach_nothing():
    """Uniform images whose labels are kept only near 0 (q = vM(0, 30): k(θ) =
    e^{30(cos 2θ − 1)}, m ≈ 0.07) leave the error near chance (π/4), where clean labels bring
    it far below; a uniform q on uniform images is no noise at all."""
    kw = dict(epochs=4, steps_per_epoch=40, batch_size=32, lr=3e-3)
    clean, noisy = small_model(), small_model()
    train(clean, [phase(**kw)], seed=0)
    train(noisy, [phase(tasks=[Task(informative_prior=VonMises(0.0, 30.0))], **kw)], seed=0)
    err_clean = float(evaluate_error(clean, SPEC, 32, 4).mean())
    err_noisy = float(evaluate_error(noisy, SPEC, 32, 4).mean())
    assert err_clean < math.pi / 16, err_clean
    assert err_noisy > math.pi / 6, err_noisy
    same = small_model()
    train(same, [phase(tasks=[Task(informative_prior=Uniform())], **kw)], seed=0)
    for key, value in clean.state_dict().items():
        assert torch.equal(value, same.state_dict()[key]), key
