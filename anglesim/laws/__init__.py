"""The field's quantitative laws measured on anglesim's networks: the bias–discriminability law
b(θ) ∝ d/dθ[1/J(θ)] (Wei & Stocker 2017: `decoded_bias`, `inverse_fisher_slope`,
`fit_bias_law`, `law_agreement`) and its positive control, the posterior-mean decoder of a
Gaussian encoding, which obeys it with c = 1 (`GaussianEncoding`, `layer_encoding`,
`posterior_mean_decode`); a layer's FI change after fine-tuning split into tuning and
covariance parts (Cheng et al. 2025: `signal_noise_split`, `layer_moments`, `linear_fisher`,
`split_terms`); and cardinal against oblique FI (`cardinal_oblique`)."""

from ._anisotropy import cardinal_oblique
from ._bias import (
    SLOPE_FITS,
    bias_from_decoded,
    decoded_bias,
    fit_bias_law,
    inverse_fisher_slope,
    law_agreement,
)
from ._posterior import GaussianEncoding, layer_encoding, posterior_mean_decode
from ._signal_noise import (
    TERMS,
    layer_moments,
    linear_fisher,
    signal_noise_split,
    split_terms,
)

__all__ = ["SLOPE_FITS", "TERMS", "GaussianEncoding", "bias_from_decoded", "cardinal_oblique",
           "decoded_bias", "fit_bias_law", "inverse_fisher_slope", "law_agreement",
           "layer_encoding", "layer_moments", "linear_fisher", "posterior_mean_decode",
           "signal_noise_split", "split_terms"]
