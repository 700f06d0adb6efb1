"""The natural-statistics study's measures of orientation bias, derived from the stored Fisher
information (FI) and orientation energy curves, and its summary.

Three ways to ask whether a curve's peaks sit where the training images' orientation energy is
and move with the images' rotation:

* the bias index of Henderson & Serences (2021, J Vision 21(8):10; their code's "anisotropy
  index"): FIB(ψ) = (F̄_peak − F̄_base)/(F̄_peak + F̄_base), the mean FI within ±10° of ψ and
  ψ + 90° against the mean FI of a baseline. Their baseline was fixed at 22.5° and 112.5° for
  peaks at 0°, 45° and 67.5° (their clockwise convention's 22.5° rotation); here the 22.5°-
  rotated images peak at 22.5° and 112.5° themselves, so the baseline is each peak's flanks,
  the bins at ψ ± 22.5° and ψ + 90° ± 22.5°. A cos 2θ component cancels between the two peaks
  and between the flanks, so FIB measures the structure of period 90°;
* the amplitude and phase of the curve's cos 4θ component
  (:func:`anglesim.stimuli.orientation_harmonic`): a phase of 0° is a cardinal peak, 45° an
  oblique one; the images' energy moves by the rotation φ, so a curve that follows them moves
  by φ too. A phase has period 90°, so a shift is only known up to multiples of 90°: it is
  taken within ±45° of the rotation's own shift (its error against the rotation in
  (−45°, 45°]), which a 45° rotation needs (a shift of exactly ±45° would otherwise wrap);
* the correlation over θ of log FI with the log energy of the training images.

The network's pixel grid, square pooling windows and initial weights give every curve a
structure of their own that does not turn with the images. Replicate r of every rotation starts
from the same initial weights and sees the same photographs and positions, turned (the study's
rotations are paired), so each measure is also taken *against the other rotations*: the bias
index at a network's own training peaks minus the same index in the networks trained at the
other rotations, and likewise the energy correlation. What the grid and the weights contribute
is common to both terms and cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from anglesim.plotting import successful
from anglesim.stats import mean_ci
from anglesim.stimuli import orientation_harmonic

from .._recipes import describe_variables

__all__ = ["BIN_HALF_WIDTH", "FLANK", "add_measures", "bias_index", "circular_mean90",
           "harmonic", "summarise", "wrap90"]

BIN_HALF_WIDTH = 10.0
"""Half-width (deg) of the bias index's bins, as Henderson & Serences's (orientations within
±10° of a bin's centre)."""
FLANK = 22.5
"""Distance (deg) of the baseline bins from the peaks."""


def _distance(theta_deg: np.ndarray, centre: float) -> np.ndarray:
    """|θ − centre| on the half-circle (deg, period 180)."""
    return np.abs((theta_deg - centre + 90.0) % 180.0 - 90.0)


def bias_index(curves: xr.DataArray, peaks: Sequence[float]) -> xr.DataArray:
    """FIB(ψ) = (F̄_peak − F̄_base)/(F̄_peak + F̄_base) of ``curves`` over ``angle`` (rad) for
    each peak orientation ψ in ``peaks`` (deg), a new dim ``peak``: F̄_peak the mean over the
    angles within :data:`BIN_HALF_WIDTH` of ψ or ψ + 90°, F̄_base the mean over those within it
    of ψ ± 22.5° or ψ + 90° ± 22.5° (see the module docstring). Dimensionless, in [−1, 1] for
    positive curves; 0 for a curve flat in θ."""
    theta = np.degrees(curves["angle"].values)
    out = []
    for psi in peaks:
        peak = (_distance(theta, psi) < BIN_HALF_WIDTH) | (
            _distance(theta, psi + 90.0) < BIN_HALF_WIDTH)
        base = np.zeros_like(peak)
        for offset in (FLANK, 90.0 - FLANK, 90.0 + FLANK, 180.0 - FLANK):
            base |= _distance(theta, psi + offset) < BIN_HALF_WIDTH
        if not peak.any() or not base.any():
            raise ValueError(f"the angle grid of {theta.size} angles has no angle within "
                             f"{BIN_HALF_WIDTH}° of the peak {psi}° or its flanks")
        high = curves.isel(angle=np.flatnonzero(peak)).mean("angle")
        low = curves.isel(angle=np.flatnonzero(base)).mean("angle")
        out.append((high - low) / (high + low))
    index = xr.concat(out, dim="peak").assign_coords(
        peak=("peak", [float(p) for p in peaks], {"units": "deg", "long_name":
                                                   "orientation ψ of the bias index's peaks"}))
    return index.transpose(*[d for d in curves.dims if d != "angle"], "peak")


def harmonic(curves: xr.DataArray, order: int = 4) -> tuple[xr.DataArray, xr.DataArray]:
    """(amplitude, phase in degrees) of the cos(order · θ) component of every curve over
    ``angle`` (:func:`~anglesim.stimuli.orientation_harmonic`); NaN for a curve that is not a
    positive density (all zero, or NaN from a failed replicate)."""
    def one(values: np.ndarray) -> tuple[float, float]:
        if not np.isfinite(values).all() or values.sum() <= 0:
            return math.nan, math.nan
        amplitude, phase = orientation_harmonic(values, order)
        return amplitude, math.degrees(phase)

    amplitude, phase = xr.apply_ufunc(
        one, curves, input_core_dims=[["angle"]], output_core_dims=[[], []], vectorize=True)
    return amplitude, phase


def wrap90(degrees):
    """An angle of period 90° (a cos 4θ phase, or a difference of two) in (−45°, 45°]."""
    return 45.0 - (45.0 - degrees) % 90.0


def circular_mean90(degrees: xr.DataArray, dim: str) -> xr.DataArray:
    """Mean of angles of period 90° over ``dim``: arg(Σ e^{4iα})/4, in (−45°, 45°] (NaN
    where any is NaN)."""
    vector = np.exp(4j * np.radians(degrees)).mean(dim)
    return wrap90(xr.apply_ufunc(np.angle, vector) / 4 * 180.0 / math.pi)


def _against_others(values: xr.DataArray, own: str) -> xr.DataArray:
    """values(net φ, own axis = φ) − mean over φ' ≠ φ of values(net φ', own axis = φ): a
    measure at the training rotation's own orientations, less the same measure in the networks
    trained at the other rotations (dims: ``values``'s without ``own``)."""
    rotations = [float(r) for r in values["rotation"].values]
    rows = []
    for phi in rotations:
        mine = values.sel(rotation=phi, **{own: phi}).drop_vars(["rotation", own])
        others = [values.sel(rotation=r, **{own: phi}).drop_vars(["rotation", own])
                  for r in rotations if r != phi]
        rows.append(mine - xr.concat(others, "other").mean("other") if others
                    else mine * math.nan)
    return xr.concat(rows, dim="rotation", coords="minimal", compat="override").assign_coords(
        rotation=values["rotation"].values)


def _correlation(a: xr.DataArray, b: xr.DataArray, dim: str) -> xr.DataArray:
    """Pearson correlation of ``a`` and ``b`` over ``dim``."""
    a, b = a - a.mean(dim), b - b.mean(dim)
    return (a * b).sum(dim) / np.sqrt((a * a).sum(dim) * (b * b).sum(dim))


def measures(ds: xr.Dataset) -> xr.Dataset:
    """The derived measures (see the module docstring), for every network (pretrained and
    each fine-tuning strategy) and layer."""
    fisher, energy = ds["fisher"], ds["energy"]
    rotations = [float(r) for r in ds["rotation"].values]
    first = rotations[0]
    out = xr.Dataset()
    out["fisher_cos4"], out["fisher_phase"] = harmonic(fisher)
    out["energy_cos4"], out["energy_phase"] = harmonic(energy)
    out["bias_index"] = bias_index(fisher, rotations)
    following = _against_others(out["bias_index"], "peak")
    out["bias_following_by_rotation"] = following
    out["bias_following"] = following.mean("rotation")
    # the energy each network's training patches had, and that of the other rotations
    log_energy = np.log(energy).rename(rotation="energy_rotation")
    match = _correlation(np.log(fisher), log_energy, "angle")
    out["energy_match"] = match.sel(energy_rotation=xr.DataArray(
        ds["rotation"].values, dims="rotation")).drop_vars("energy_rotation")
    matched = _against_others(match, "energy_rotation")
    out["energy_match_following_by_rotation"] = matched
    out["energy_match_following"] = matched.mean("rotation")
    out["phase_lag"] = wrap90(out["fisher_phase"] - out["energy_phase"])
    out["phase_lag_mean"] = circular_mean90(out["phase_lag"], "rotation")
    expected = ds["rotation"] - first
    error = wrap90(out["fisher_phase"] - out["fisher_phase"].sel(rotation=first) - expected)
    out["phase_shift"] = expected + error
    out["phase_shift_error"] = error
    out["energy_phase_shift"] = expected + wrap90(
        out["energy_phase"] - out["energy_phase"].sel(rotation=first) - expected)
    for name, (units, long_name) in ATTRS.items():
        out[name].attrs = {"units": units, "long_name": long_name}
    return out


ATTRS = {
    "fisher_cos4": ("1", "amplitude of the FI curve's cos 4θ component (relative to its mean)"),
    "fisher_phase": ("deg", "preferred orientation of the FI curve's cos 4θ component "
                     "(0: cardinal, 45: oblique)"),
    "energy_cos4": ("1", "amplitude of the training patches' energy's cos 4θ component"),
    "energy_phase": ("deg", "preferred orientation of the training patches' energy's cos 4θ "
                     "component"),
    "bias_index": ("1", "FI bias index (F_peak − F_flanks)/(F_peak + F_flanks) at the peaks "
                   "ψ and ψ + 90° (Henderson & Serences 2021)"),
    "bias_following_by_rotation": ("1", "bias index at the training rotation's own peaks, "
                                   "minus the same index in the networks of the other rotations"),
    "bias_following": ("1", "bias index at the own training peaks minus the other rotations' "
                       "networks' at those peaks, mean over rotations"),
    "energy_match": ("1", "correlation over θ of log FI with the log orientation energy of the "
                     "network's own training patches"),
    "energy_match_following_by_rotation": ("1", "correlation of log FI with the own training "
                                           "patches' log energy, minus the mean correlation "
                                           "with the other rotations' patches' energy"),
    "energy_match_following": ("1", "correlation of log FI with the own patches' log energy "
                               "minus with the other rotations', mean over rotations"),
    "phase_lag": ("deg", "cos 4θ phase of the FI minus that of the training patches' energy, "
                  "in (−45, 45]"),
    "phase_lag_mean": ("deg", "circular mean over rotations of the FI's cos 4θ phase lag "
                       "behind the training energy's"),
    "phase_shift": ("deg", "cos 4θ phase of the FI minus that of the network of the first "
                    "rotation (same replicate), taken within ±45° of the rotation's shift"),
    "phase_shift_error": ("deg", "FI cos 4θ phase shift minus the rotation's (against the "
                          "first rotation), in (−45, 45]"),
    "energy_phase_shift": ("deg", "cos 4θ phase of the training energy minus the first "
                           "rotation's, taken within ±45° of the rotation's shift"),
}


REPLICATE_ATTRS: dict[str, dict[str, str]] = {
    "fisher": {"units": "rad^-2", "method": "output_noise_gaussian",
               "long_name": "FI about grating orientation with unit-variance Gaussian noise on "
               "the layer's units, mean over 8 grating phases"},
    "energy": {"units": "rad^-1", "long_name": "orientation energy density of the training "
               "patches (whitened Fourier power, 1/16–3/8 cycles/pixel)"},
    "photo_accuracy": {"units": "1", "long_name": "photograph classification accuracy on fresh "
                       "patches after pretraining"},
    "pretrain_loss": {"units": "nat", "long_name": "photograph cross-entropy per pretraining "
                      "epoch"},
    "finetune_error": {"units": "rad", "long_name": "mean absolute decoding error |θ̂ − θ| "
                       "after fine-tuning, standard gratings"},
    "network": {"units": "1", "long_name": "the pretrained network, or the strategy that "
                "fine-tuned it on gratings"},
    "strategy": {"units": "1", "long_name": "fine-tuning strategy"},
    "pretrain_epoch": {"units": "1", "long_name": "pretraining epoch"},
    "rotation": {"units": "deg", "long_name": "rotation of the training patches"},
}
"""Units and long names of what a replicate returns and of the grid's coordinate (the
replicate sets ``photo_accuracy``'s ``chance``; the runner's own variables, such as ``failed``
and ``layer``, are labelled by :func:`~anglesim.studies._recipes.describe_variables`)."""


def add_measures(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with :func:`measures` added, and units and long names on every variable and
    coordinate."""
    return describe_variables(ds.assign(measures(ds).data_vars), REPLICATE_ATTRS)


# ---- summary ----------------------------------------------------------------------------------


def _line(values: xr.DataArray, unit: str = "", digits: int = 3) -> str:
    """"mean ± 95% t half-width" over ``replicate`` (the only dim left)."""
    mean, half = mean_ci(values)
    return f"{float(mean):+.{digits}f} ± {float(half):.{digits}f}{unit}"


def summarise(ds: xr.Dataset) -> str:
    """The bias measures per layer (pretrained), the cos 4θ phase shifts against the
    rotation, and what each fine-tuning strategy left of the bias at fc; mean ± 95% t
    half-width over replicates."""
    ok = successful(ds)
    pre = ok.sel(network="pretrained")
    lines = [f"natural_statistics: {int(ok.sizes['replicate'])} replicates per rotation; "
             "mean ± 95% t half-width over replicates",
             "photograph accuracy after pretraining (chance "
             f"{ok['photo_accuracy'].attrs.get('chance', math.nan):.3f}): " + "; ".join(
                 f"{float(r):g}° {_line(ok['photo_accuracy'].sel(rotation=r))}"
                 for r in ok["rotation"].values),
             "layer    bias index (own − other rotations)   energy correlation (own − other)"
             "   cos 4θ lag behind energy"]
    for layer in pre["layer"].values:
        at = pre.sel(layer=layer)
        lines.append(f"  {layer:<6} {_line(at['bias_following']):>26}   "
                     f"{_line(at['energy_match_following']):>30}   "
                     f"{_line(at['phase_lag_mean'], '°', 1):>16}")
    for rotation in ok["rotation"].values[1:]:
        cells = [f"{layer} {_line(pre['phase_shift'].sel(rotation=rotation, layer=layer), '°', 1)}"
                 for layer in pre["layer"].values]
        energy = _line(ok["energy_phase_shift"].sel(rotation=rotation), "°", 1)
        lines.append(f"cos 4θ phase shift at rotation {float(rotation):g}° (energy {energy}): "
                     + "; ".join(cells))
    lines.append("fine-tuning on gratings (prior 45° from the images' peak): bias index at "
                 "fc (own − other), and the decoding error (mean over angles and rotations)")
    for network in ok["network"].values:
        fc = ok["bias_following"].sel(network=network, layer="fc")
        text = f"  {network:<13} {_line(fc)}"
        if network in ok["strategy"].values:
            error = np.degrees(ok["finetune_error"].sel(strategy=network).mean(
                ("angle", "rotation")))
            text += f"   error {_line(error, '°', 1)}"
        lines.append(text)
    return "\n".join(lines)
