"""How a network's representation changed: CKA between blocks, weight drift, 2-D projections.

* :func:`linear_cka` — linear centered kernel alignment (Kornblith, Norouzi, Lee & Hinton 2019,
  "Similarity of Neural Network Representations Revisited", ICML) between two activation
  matrices of the same stimuli, and its debiased form (the unbiased HSIC estimator of Song et
  al. 2012, used for CKA by Nguyen, Raghu & Kornblith 2021, "Do Wide and Deep Networks Learn
  the Same Things?", ICLR).
* :func:`block_cka`, :func:`cka_matrix`, :func:`cka_drift` — the same between any blocks of
  two models on the same images; ``cka_drift`` is the per-block table CKA(pretrained,
  fine-tuned) over ``layer``.
* :func:`weight_distance` — ‖θ − θ₀‖ per block and the relative change ‖θ − θ₀‖/‖θ₀‖;
  :func:`drift_table` joins it with ``cka_drift``.
* :func:`pca` and :func:`activation_projection` — a block's activations projected on their
  first principal components, with θ per stimulus, for figures
  (:func:`anglesim.plotting.plot_activation_projection` draws one).

Activations of conv blocks ([N, C, H, W]) are flattened per stimulus to [N, C·H·W].
Computations run in float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from . import validation as check
from .models import AngleNet


def _as_matrix(name: str, value: Any) -> torch.Tensor:
    """[n, ...] numpy array or tensor → float64 tensor [n, p] (trailing dims flattened)."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise check.fail(name, "a numpy array or torch tensor [n_stimuli, n_features]", value)
    if value.ndim < 2:
        raise check.fail(name, "[n_stimuli, n_features]", f"shape {tuple(value.shape)}")
    value = value.detach().to(torch.float64).reshape(value.shape[0], -1)
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise check.fail(name, "finite everywhere", f"{bad} NaN or infinite entries")
    return value


def _gram(x: torch.Tensor) -> torch.Tensor:
    return x @ x.T


def _hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012, eq. 5) of Gram matrices K, L [n, n], n >= 4:
    [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)), K̃ = K with zero diagonal."""
    n = k.shape[0]
    kt = k - torch.diag_embed(torch.diagonal(k))
    lt = l - torch.diag_embed(torch.diagonal(l))
    term1 = (kt * lt).sum()  # tr(K̃L̃) for symmetric matrices
    term2 = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (kt.sum(0) @ lt.sum(1))
    return (term1 + term2 - term3) / (n * (n - 3))


def linear_cka(X: Any, Y: Any, debiased: bool = False) -> float:
    """Linear CKA between activations X [n, p1] and Y [n, p2] of the same n stimuli.

    With column-centred X and Y (Kornblith et al. 2019, eq. 3 with linear kernels),
    CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) ∈ [0, 1]: 1 for X = Y, invariant to orthogonal
    transforms and isotropic scaling of either argument (not to arbitrary invertible maps).

    ``debiased=True`` replaces each HSIC by its unbiased estimator on the Gram matrices
    (Song et al. 2012; Nguyen et al. 2021), which removes the positive bias of CKA between
    unrelated high-dimensional representations (≈ 0 for independent noise; it can be
    slightly negative; needs n >= 4).

    X and Y are numpy arrays or torch tensors (trailing dims are flattened). Returns NaN when
    either has no variance across stimuli (e.g. a dead layer).
    """
    debiased = check.boolean("debiased", debiased)
    x, y = _as_matrix("X", X), _as_matrix("Y", Y)
    n = x.shape[0]
    if y.shape[0] != n:
        raise check.fail("Y", f"{n} rows (the stimuli of X)", f"{y.shape[0]} rows")
    if n < (4 if debiased else 2):
        raise check.fail("X", f"at least {4 if debiased else 2} stimuli (rows)"
                         f"{' when debiased' if debiased else ''}", f"{n} rows")
    y = y.to(x.device)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    if debiased:
        k, l = _gram(x), _gram(y)
        hxy, hxx, hyy = _hsic_unbiased(k, l), _hsic_unbiased(k, k), _hsic_unbiased(l, l)
    elif max(x.shape[1], y.shape[1]) <= n:  # feature-space form: cheaper when p <= n
        hxy = torch.linalg.matrix_norm(y.T @ x) ** 2
        hxx = torch.linalg.matrix_norm(x.T @ x) ** 2
        hyy = torch.linalg.matrix_norm(y.T @ y) ** 2
    else:  # Gram form, ⟨K, L⟩ / (‖K‖ ‖L‖) with centred features: cheaper when p > n
        k, l = _gram(x), _gram(y)
        hxy, hxx, hyy = (k * l).sum(), (k * k).sum(), (l * l).sum()
    return _ratio(hxy, torch.sqrt(hxx * hyy))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    den = float(den)
    if not den > 0 or not np.isfinite(den):
        return float("nan")
    return float(num) / den


# --------------------------------------------------------------------------------------------
# models


def _model_activations(
    model: AngleNet, images: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    if not isinstance(model, AngleNet):
        raise ValueError(f"model must be an AngleNet, got {type(model).__name__}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            acts = model.activations(images.to(device), list(layers))
    finally:
        model.train(was_training)
    return acts


def block_cka(
    model_a: AngleNet,
    model_b: AngleNet,
    images: torch.Tensor,
    layer_a: str,
    layer_b: str | None = None,
    debiased: bool = False,
) -> float:
    """Linear CKA between block ``layer_a`` of ``model_a`` and block ``layer_b`` (default: the
    same name) of ``model_b`` on the same ``images`` [N, C, P, P] (both in eval mode)."""
    layer_b = layer_a if layer_b is None else layer_b
    xa = _model_activations(model_a, images, [layer_a])[layer_a]
    xb = _model_activations(model_b, images, [layer_b])[layer_b]
    return linear_cka(xa, xb, debiased=debiased)


def cka_matrix(
    model_a: AngleNet,
    model_b: AngleNet,
    images: torch.Tensor,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    debiased: bool = False,
) -> xr.DataArray:
    """CKA between every block of ``layers_a`` (default: all of model_a's) and every block of
    ``layers_b`` (default: all of model_b's) on ``images``: a DataArray over
    (``layer_a``, ``layer_b``)."""
    layers_a = list(model_a.block_names if layers_a is None else layers_a)
    layers_b = list(model_b.block_names if layers_b is None else layers_b)
    acts_a = _model_activations(model_a, images, layers_a)
    acts_b = _model_activations(model_b, images, layers_b)
    values = np.array([[linear_cka(acts_a[a], acts_b[b], debiased=debiased) for b in layers_b]
                       for a in layers_a])
    return xr.DataArray(
        values, dims=("layer_a", "layer_b"), coords={"layer_a": layers_a, "layer_b": layers_b},
        name="cka", attrs={"long_name": "debiased linear CKA" if debiased else "linear CKA",
                           "debiased": int(debiased)},
    )


def cka_drift(
    pretrained: AngleNet,
    finetuned: AngleNet,
    images: torch.Tensor,
    layers: Sequence[str] | None = None,
    debiased: bool = False,
) -> xr.DataArray:
    """CKA(pretrained, fine-tuned) of each block (default: all) on the same ``images``, over
    ``layer``: 1 where fine-tuning left a block's representation unchanged up to rotation and
    scale, lower where it moved."""
    layers = list(pretrained.block_names if layers is None else layers)
    missing = [name for name in layers if name not in finetuned.block_names]
    if missing:
        raise ValueError(f"finetuned has no block(s) {missing}; it has {finetuned.block_names}")
    acts_a = _model_activations(pretrained, images, layers)
    acts_b = _model_activations(finetuned, images, layers)
    values = np.array([linear_cka(acts_a[name], acts_b[name], debiased=debiased)
                       for name in layers])
    return xr.DataArray(
        values, dims=("layer",), coords={"layer": layers}, name="cka",
        attrs={"long_name": ("debiased " if debiased else "") + "linear CKA, pretrained vs "
               "fine-tuned", "debiased": int(debiased)},
    )


# --------------------------------------------------------------------------------------------
# weights


def _block_of(key: str) -> str:
    parts = key.split(".")
    if len(parts) < 3 or parts[0] not in ("blocks", "heads"):
        raise ValueError(f"parameter {key!r} is not inside a block or head")
    return parts[1]


def weight_distance(
    model: AngleNet, reference: AngleNet | Mapping[str, torch.Tensor]
) -> xr.Dataset:
    """Per block (and extra head): ``distance`` ‖θ − θ₀‖ (Frobenius norm over all the block's
    parameters), ``reference_norm`` ‖θ₀‖ and ``relative_change`` ‖θ − θ₀‖/‖θ₀‖, over
    ``layer``.

    ``reference`` is the model before fine-tuning or a copy of its ``state_dict()``; both must
    have the same parameters (merge LoRA adapters first: :func:`anglesim.finetune.merge_lora`).
    """
    if not isinstance(model, AngleNet):
        raise ValueError(f"model must be an AngleNet, got {type(model).__name__}")
    now = dict(model.named_parameters())
    if isinstance(reference, AngleNet):
        before = {k: v for k, v in reference.named_parameters()}
    elif isinstance(reference, Mapping):
        buffers = dict(model.named_buffers())
        before = {k: v for k, v in reference.items() if k not in buffers}
    else:
        raise ValueError(
            f"reference must be an AngleNet or a state_dict, got {type(reference).__name__}")
    if set(now) != set(before):
        raise ValueError(
            "model and reference have different parameters: only in model "
            f"{sorted(set(now) - set(before))[:4]}, only in reference "
            f"{sorted(set(before) - set(now))[:4]} (merge LoRA adapters first?)"
        )
    layers = model.block_names + list(model.heads)
    sq_diff = dict.fromkeys(layers, 0.0)
    sq_ref = dict.fromkeys(layers, 0.0)
    for key, value in now.items():
        ref = before[key].detach().to(device=value.device, dtype=torch.float64)
        if ref.shape != value.shape:
            raise ValueError(f"{key} has shape {tuple(value.shape)} in model but "
                             f"{tuple(ref.shape)} in reference")
        block = _block_of(key)
        sq_diff[block] += float(((value.detach().double() - ref) ** 2).sum())
        sq_ref[block] += float((ref**2).sum())
    dist = np.sqrt([sq_diff[name] for name in layers])
    norm = np.sqrt([sq_ref[name] for name in layers])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(norm > 0, dist / np.where(norm > 0, norm, 1.0), np.nan)
    ds = xr.Dataset(
        {"distance": ("layer", dist), "reference_norm": ("layer", norm),
         "relative_change": ("layer", rel)},
        coords={"layer": layers},
    )
    ds["distance"].attrs = {"long_name": "weight distance ‖θ − θ₀‖"}
    ds["reference_norm"].attrs = {"long_name": "reference weight norm ‖θ₀‖"}
    ds["relative_change"].attrs = {"long_name": "relative weight change ‖θ − θ₀‖/‖θ₀‖"}
    return ds


def drift_table(
    pretrained: AngleNet,
    finetuned: AngleNet,
    images: torch.Tensor,
    layers: Sequence[str] | None = None,
) -> xr.Dataset:
    """Per block: ``cka`` and ``cka_debiased`` (pretrained vs fine-tuned on ``images``),
    ``distance`` and ``relative_change`` of the weights, over ``layer`` (default: all blocks)."""
    layers = list(pretrained.block_names if layers is None else layers)
    weights = weight_distance(finetuned, pretrained).sel(layer=layers)
    return xr.Dataset({
        "cka": cka_drift(pretrained, finetuned, images, layers),
        "cka_debiased": cka_drift(pretrained, finetuned, images, layers, debiased=True),
        "distance": weights["distance"],
        "relative_change": weights["relative_change"],
    })


# --------------------------------------------------------------------------------------------
# projections


def pca(X: Any, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Project X [n, p] (numpy or torch; trailing dims flattened) on its first principal
    components: returns (coordinates [n, n_components], explained-variance ratios).

    Centred SVD, X − x̄ = U S Vᵀ; coordinates U S. Each component's sign is fixed so that its
    largest-magnitude loading is positive (deterministic output).
    """
    x = _as_matrix("X", X)
    n, p = x.shape
    n_components = check.integer("n_components", n_components, minimum=1, maximum=min(n, p))
    x = x - x.mean(0, keepdim=True)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    vh = vh[:n_components]
    sign = torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True))).squeeze(1)
    sign[sign == 0] = 1.0
    coords = (u[:, :n_components] * s[:n_components]) * sign
    total = (s**2).sum()
    ratio = (s[:n_components] ** 2 / total) if total > 0 else torch.zeros(n_components)
    return coords.cpu().numpy(), ratio.cpu().numpy()


def activation_projection(
    model: AngleNet,
    images: torch.Tensor,
    theta: Any,
    layer: str,
    n_components: int = 2,
) -> xr.DataArray:
    """Block ``layer``'s activations for ``images`` on their first principal components: a
    DataArray over (``stimulus``, ``component``) with coordinate ``theta`` (radians) per
    stimulus and the explained-variance ratios in ``attrs["explained_variance_ratio"]``."""
    theta = np.asarray(theta.detach().cpu() if isinstance(theta, torch.Tensor) else theta,
                       dtype=np.float64)
    if theta.ndim != 1 or theta.shape[0] != images.shape[0]:
        raise ValueError(
            f"theta must be one angle per image ({images.shape[0]}), got shape {theta.shape}")
    acts = _model_activations(model, images, [layer])[layer]
    coords, ratio = pca(acts, n_components)
    return xr.DataArray(
        coords,
        dims=("stimulus", "component"),
        coords={"stimulus": np.arange(coords.shape[0]), "theta": ("stimulus", theta),
                "component": [f"pc{i + 1}" for i in range(n_components)]},
        name="projection",
        attrs={"layer": layer, "explained_variance_ratio": ratio.tolist(),
               "long_name": f"PCA projection of {layer} activations"},
    )
