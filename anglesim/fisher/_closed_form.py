"""Closed forms: Poisson and Gaussian population Fisher information, discrimination thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import validation as check
from ._base import ArrayLike

__all__ = ["discrimination_threshold", "gaussian_fisher", "poisson_fisher"]


def poisson_fisher(f: ArrayLike, f_prime: ArrayLike) -> float | np.ndarray:
    """Fisher information of independent Poisson neurons: J = Σ_i f_i'(θ)² / f_i(θ).

    (Seung & Sompolinsky 1993, PNAS 90: 10749.) ``f`` and ``f_prime`` are mean rates and their
    derivatives with units along the last axis; a float for 1-D input, else an array over the
    leading axes. For von Mises tuning on the doubled angle, f_i(θ) = r_max
    exp(κ(cos 2(θ − θ_i) − 1)) with N uniformly spaced θ_i, it equals
    4 N κ r_max e^{−κ} I₁(κ) (I₁ the modified Bessel function).
    """
    fa = check.finite_array("f", f)
    fp = check.finite_array("f_prime", f_prime)
    if fa.ndim == 0 or not (fa > 0).all():
        raise check.fail("f", "Poisson means > 0 with units along the last axis",
                         f"min {fa.min()!r}" if fa.size else f)
    if fa.shape != fp.shape:
        raise check.fail("f_prime", f"the shape of f {fa.shape}", f"shape {fp.shape}")
    j = (fp**2 / fa).sum(-1)
    return float(j) if j.ndim == 0 else j


def gaussian_fisher(
    f_prime: ArrayLike, cov: ArrayLike, cov_prime: ArrayLike | None = None
) -> float | np.ndarray:
    """Fisher information of a Gaussian response r ~ N(f(θ), Σ(θ)).

        J = f′ᵀ Σ⁻¹ f′ + ½ tr(Σ⁻¹ Σ′ Σ⁻¹ Σ′)

    (Kay 1993, Fundamentals of Statistical Signal Processing I, eq. 3.31; the second term is
    the information in the stimulus dependence of the covariance, which linear estimators
    ignore; without ``cov_prime`` only the first, linear term.) ``f_prime`` [..., N], ``cov``
    and ``cov_prime`` [..., N, N] (finite and symmetric to 1e-10 of their largest entry,
    ``cov`` positive definite: a non-symmetric matrix is an error, since a Cholesky
    factorisation would silently read only its lower triangle); a float for one population,
    else an array over the leading axes.
    """
    fp = check.finite_array("f_prime", f_prime)
    c = check.finite_array("cov", cov)
    if fp.ndim == 0:
        raise check.fail("f_prime", "an array with units along the last axis", f_prime)
    if c.shape != (*fp.shape, fp.shape[-1]):
        raise check.fail("cov", f"of shape {(*fp.shape, fp.shape[-1])} for f_prime {fp.shape}",
                         f"shape {c.shape}")
    _check_symmetric("cov", c)
    try:
        chol = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise check.fail("cov", "positive definite", "a matrix with an eigenvalue <= 0") from None
    w = np.linalg.solve(chol, fp[..., None])  # L⁻¹ f′
    j = (w**2).sum((-2, -1))
    if cov_prime is not None:
        cp = check.finite_array("cov_prime", cov_prime)
        if cp.shape != c.shape:
            raise check.fail("cov_prime", f"of the shape of cov {c.shape}", f"shape {cp.shape}")
        _check_symmetric("cov_prime", cp)
        m = np.linalg.solve(c, cp)  # Σ⁻¹ Σ′
        j = j + 0.5 * np.einsum("...ij,...ji->...", m, m)
    return float(j) if np.ndim(j) == 0 else j


def _check_symmetric(name: str, m: np.ndarray) -> None:
    """ValueError unless every matrix in m [..., N, N] equals its transpose to 1e-10 of its
    largest entry (rounding in a computed covariance passes)."""
    scale = np.abs(m).max(axis=(-2, -1), keepdims=True)
    gap = np.abs(m - np.swapaxes(m, -1, -2))
    if (gap > 1e-10 * scale).any():
        raise ValueError(f"{name} must be symmetric, got an asymmetry of {float(gap.max()):.3g} "
                         f"(largest entry {float(scale.max()):.3g})")


def discrimination_threshold(J: float | np.ndarray | xr.DataArray, d_prime: float = 1.0) -> Any:
    """Orientation difference Δθ at which a discrimination reaches ``d_prime``: d' / √J.

    From d'² = J Δθ² for a locally unbiased estimator at the Cramér–Rao bound (e.g. Seriès,
    Stocker & Simoncelli 2009, Neural Comput 21: 3271). J = 0 gives an infinite threshold.
    Works on floats, numpy arrays and xarray DataArrays (returns the same kind).
    """
    d_prime = check.real("d_prime", d_prime, minimum=0.0, min_open=True)
    try:
        values = np.asarray(J.values if isinstance(J, xr.DataArray) else J, dtype=np.float64)
    except (TypeError, ValueError):
        raise check.fail("J", "Fisher information >= 0 (a number, array or DataArray)",
                         J) from None
    if np.isnan(values).any() or (values < 0).any():
        raise check.fail("J", "Fisher information >= 0 (a number, array or DataArray)", J)
    with np.errstate(divide="ignore"):
        if isinstance(J, xr.DataArray):
            return d_prime / np.sqrt(J)
        out = d_prime / np.sqrt(values)
    return float(out) if out.ndim == 0 else out
