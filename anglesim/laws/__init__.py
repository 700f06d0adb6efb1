"""The field's quantitative laws as measurements on anglesim's networks (issue 17).

* :mod:`.bias` — the bias–discriminability law b(θ) ∝ d/dθ[1/J(θ)] (Wei & Stocker 2017);
* :mod:`.signal_noise` — a layer's FI change after fine-tuning split into the part from the
  tuning f′ and the part from the covariance Σ (Cheng et al. 2025);
* :mod:`.anisotropy` — cardinal against oblique FI, the pixel grid's own baseline.

Input-level corruptions (Lee et al. 2023) are stimulus transforms: :mod:`anglesim.corruptions`.
"""

from .anisotropy import cardinal_oblique
from .bias import decoded_bias, fit_bias_law, inverse_fisher_slope, law_agreement
from .signal_noise import TERMS, layer_moments, linear_fisher, signal_noise_split, split_terms

__all__ = ["TERMS", "cardinal_oblique", "decoded_bias", "fit_bias_law", "inverse_fisher_slope",
           "law_agreement", "layer_moments", "linear_fisher", "signal_noise_split",
           "split_terms"]
