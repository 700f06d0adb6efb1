"""Fisher information about orientation: propagated through a network, and from samples.

Every estimator returns numbers in rad⁻², as an ``xarray.DataArray`` over ``angle`` (and
``layer``) with its method and the quantity it estimates in attrs. The package is split by
concern, and every public name is re-exported here so ``anglesim.fisher.X`` works for all:

* :mod:`~anglesim.fisher.network` — any ``torch.nn.Module`` as named layers
  (`list_layers`: "input", dotted ``named_modules()`` paths or anglesim's block names,
  "output"); :mod:`~anglesim.fisher.stimulus` — a GratingSpec or any differentiable callable
  ``stimulus(theta) -> images [N, C, H, W]`` with its noise (`as_stimulus`).
* :mod:`~anglesim.fisher.propagated` — **propagated (linearised) FI**, `propagated_fisher`,
  with the exact solver (:mod:`~anglesim.fisher.exact`), the matrix-free Krylov one
  (:mod:`~anglesim.fisher.krylov`) and the cost model and guard (:mod:`~anglesim.fisher.cost`).
  The image is x(θ) + n with additive Gaussian pixel noise n ~ N(0, Σ_x) (or noise injected
  at a block, ``noise_at``); a layer's activations r(x) are linearised at the noiseless image,
  r ≈ r(x(θ)) + A n with A = ∂r/∂x, so r is Gaussian with mean derivative A ẋ and covariance
  A Σ_x Aᵀ, and its Fisher information about θ is J(θ) = (A ẋ)ᵀ (A Σ_x Aᵀ)⁻¹ (A ẋ) (with a
  ridge). All derivatives come from torch.func (vjp/jvp under vmap); nothing is a finite
  difference.
* :mod:`~anglesim.fisher.output_noise` — **output-noise models**, `output_noise_fisher`: noise
  on a layer's own units, isotropic Gaussian (J = ‖A ẋ‖²/σ²) or Poisson-like (J = Σ vᵢ²/fᵢ).
* :mod:`~anglesim.fisher.closed_form` — `gaussian_fisher` (with a stimulus-dependent
  covariance), `poisson_fisher` and `discrimination_threshold`.
* :mod:`~anglesim.fisher.arrays` — **FI from sample arrays**: `linear_fisher_from_samples`
  (bias-corrected estimator of Kanitscheider, Coen-Cagli, Kohn & Pouget 2015, PLoS Comput Biol
  11(6): e1004218), `linear_fisher_variance`, `linear_fisher_shrinkage` (Ledoit & Wolf 2004
  covariance), `linear_fisher_pca`, the cross-validated `decoder_fisher`, `bootstrap_fisher`.
* :mod:`~anglesim.fisher.intervals` — `linear_fisher_interval`, the exact (noncentral-F)
  confidence interval for linear FI from Gaussian trials: the default band of
  `bootstrap_fisher` and ``sampled_fisher(n_boot=…)``.
* :mod:`~anglesim.fisher.sampled` — **on a network**: `sampled_fisher` and `estimator_fisher`
  (the decoded angle's (∂E[θ̂]/∂θ)²/Var θ̂), from `sample_responses` / `paired_responses`.
* :mod:`~anglesim.fisher.savgol` — `savgol_fisher`, the reference research's
  smoothed-derivative estimator.
* :mod:`~anglesim.fisher.smoothing` — `smooth_periodic` and `bootstrap_replicates`.
* :mod:`~anglesim.fisher.measure` — `measure_fisher` runs several estimators at once into one
  Dataset; `method_result` gives one back.

`fisher_dataarray` (:mod:`~anglesim.fisher.base`) builds every result the same way (dims
("layer", "angle")).
"""

from __future__ import annotations

from .arrays import (
    BOOTSTRAP_METHODS,
    active_units,
    bootstrap_fisher,
    decoder_fisher,
    ledoit_wolf_covariance,
    linear_fisher_from_samples,
    linear_fisher_pca,
    linear_fisher_shrinkage,
    linear_fisher_variance,
)
from .base import DEFAULT_N_PHASES, INPUT, OUTPUT, UNITS, fisher_dataarray
from .closed_form import discrimination_threshold, gaussian_fisher, poisson_fisher
from .intervals import linear_fisher_interval, noncentral_f_scale
from .measure import METHODS, measure_fisher, method_result
from .network import Network, list_layers
from .output_noise import OUTPUT_NOISE_MODELS, output_noise_fisher
from .propagated import SOLVERS, propagated_fisher
from .sampled import (
    SAMPLED_ESTIMATORS,
    estimator_fisher,
    paired_responses,
    sample_responses,
    sampled_fisher,
)
from .savgol import SAVGOL_OUTPUTS, savgol_fisher
from .smoothing import bootstrap_replicates, fourier_design, smooth_periodic
from .stimulus import Stimulus, as_stimulus

__all__ = [
    "BOOTSTRAP_METHODS",
    "DEFAULT_N_PHASES",
    "INPUT",
    "METHODS",
    "Network",
    "OUTPUT",
    "OUTPUT_NOISE_MODELS",
    "SAMPLED_ESTIMATORS",
    "SAVGOL_OUTPUTS",
    "SOLVERS",
    "Stimulus",
    "UNITS",
    "active_units",
    "as_stimulus",
    "bootstrap_fisher",
    "bootstrap_replicates",
    "decoder_fisher",
    "discrimination_threshold",
    "estimator_fisher",
    "fisher_dataarray",
    "fourier_design",
    "gaussian_fisher",
    "ledoit_wolf_covariance",
    "linear_fisher_from_samples",
    "linear_fisher_interval",
    "linear_fisher_pca",
    "linear_fisher_shrinkage",
    "linear_fisher_variance",
    "list_layers",
    "measure_fisher",
    "noncentral_f_scale",
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
