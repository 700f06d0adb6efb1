"""Fisher information about orientation, in rad⁻², propagated through a network or estimated
from sampled responses; every result is an ``xarray.DataArray`` over ``angle`` (and ``layer``).

* on a network: `propagated_fisher` (linearised FI of Gaussian pixel or layer noise),
  `output_noise_fisher`, `sampled_fisher`, `estimator_fisher`, `savgol_fisher`, and
  `measure_fisher` to run several at once into one Dataset (`method_result` gives one back);
  `list_layers` names a network's layers, `as_stimulus` turns a callable into a stimulus;
* from trial arrays: `linear_fisher_from_samples` and its variance, `linear_fisher_shrinkage`,
  `linear_fisher_pca`, `decoder_fisher`, `bootstrap_fisher`, `linear_fisher_interval`;
* closed forms: `gaussian_fisher`, `poisson_fisher`, `discrimination_threshold`;
* curves: `smooth_periodic`, `bootstrap_replicates`.

The estimators, their formulas and when to use which: the user guide's Fisher page.
"""

from __future__ import annotations

from ._arrays import (
    bootstrap_fisher,
    decoder_fisher,
    linear_fisher_from_samples,
    linear_fisher_pca,
    linear_fisher_shrinkage,
    linear_fisher_variance,
)
from ._closed_form import discrimination_threshold, gaussian_fisher, poisson_fisher
from ._intervals import linear_fisher_interval
from ._measure import METHODS, measure_fisher, method_result
from ._network import list_layers
from ._output_noise import output_noise_fisher
from ._propagated import propagated_fisher
from ._sampled import estimator_fisher, paired_responses, sample_responses, sampled_fisher
from ._savgol import savgol_fisher
from ._smoothing import bootstrap_replicates, smooth_periodic
from ._stimulus import Stimulus, as_stimulus

__all__ = [
    "METHODS",
    "Stimulus",
    "as_stimulus",
    "bootstrap_fisher",
    "bootstrap_replicates",
    "decoder_fisher",
    "discrimination_threshold",
    "estimator_fisher",
    "gaussian_fisher",
    "linear_fisher_from_samples",
    "linear_fisher_interval",
    "linear_fisher_pca",
    "linear_fisher_shrinkage",
    "linear_fisher_variance",
    "list_layers",
    "measure_fisher",
    "method_result",
    "output_noise_fisher",
    "paired_responses",
    "poisson_fisher",
    "propagated_fisher",
    "sample_responses",
    "sampled_fisher",
    "savgol_fisher",
    "smooth_periodic",
]
