"""Natural statistics: does a network pretrained on photographs, without orientation labels,
carry Fisher information (FI) about orientation where the photographs' orientation energy is —
more so with depth, and turning with the photographs — and how much of that survives
fine-tuning on gratings?

Henderson & Serences (2021, J Vision 21(8):10) trained VGG-16 on ImageNet rotated by 0°, 22.5°
and 45° and found the FI of its units about orientation peaking at the orientations most common
in the rotated training images, emerging in the middle layers and growing with depth. This
study asks the same of anglesim's standard CNN (:data:`CNN`: two 5 × 5 conv blocks and a
64-unit ``fc`` block) trained on natural patches (:class:`~anglesim.stimuli.NaturalPatches`,
32 px grey patches of the eleven photographs inside scikit-image, behind a circular aperture),
rotated by the grid's ``rotation`` (0°, 22.5°, 45°; a patch turned by φ turns a grating θ in it
into θ + φ).

Each replicate:

1. builds the CNN with a photograph head (a ``"classes"`` head, one unit per photograph) from
   the replicate's ``init`` stream, and pretrains it to tell which photograph each patch was
   cut from (a :class:`~anglesim.training.Phase` on the patches: no orientation labels);
   records the photograph accuracy on fresh patches and measures the training patches'
   orientation energy (:func:`~anglesim.stimuli.orientation_energy`, ``energy``);
2. measures the FI about the orientation of a grating (the studies' standard stimulus
   :data:`SPEC`, at a random phase: the FI is averaged over 8 phases) of every layer, with
   Gaussian noise of unit variance on each of the layer's units
   (:func:`~anglesim.fisher.output_noise_fisher`): J(θ) = ‖∂r/∂θ‖², how strongly the layer's
   units respond to a change of orientation — the units' sensitivity that efficient coding
   allocates, and the quantity Henderson & Serences computed from their units' responses.
   (Pixel noise propagated through the network instead would give a layer that loses no
   information — ``conv1`` here, 2048 units from 1024 pixels — exactly the pixels' FI, flat
   in θ: no bias could show there.);
3. fine-tunes copies of the pretrained network on gratings (:data:`SPEC`) whose orientations
   come from a von Mises prior centred 45° from the training images' dominant orientation
   (the oblique 45° for upright patches; φ + 45° for patches turned by φ), with each strategy
   of :data:`STRATEGIES` — ``full``, ``linear_probe`` (the heads only), ``surgical`` (the
   first block and the orientation head) and ``lp_ft`` — the same data for every strategy,
   and measures every fine-tuned network's FI and decoding error.

The rotations are paired (``pair_axes``): replicate r of every rotation starts from the same
weights and sees the same photographs and positions, only turned, so measures can be taken
against the other rotations, which cancels what the pixel grid, the square pooling windows and
the initial weights give every curve (:mod:`.analysis`). The measures — Henderson & Serences's
bias index over layers, the cos 4θ phase of the FI against the energy's and against the
rotation, the correlation of FI with the energy — are derived after the run and stored with
the Dataset; the claims are declared below (:data:`CLAIMS`), before any full run.

Run: ``anglesim run natural_statistics [--quick]``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import xarray as xr

from anglesim.claims import Contrast
from anglesim.distributions import VonMises
from anglesim.fisher import output_noise_fisher
from anglesim.models import build_model
from anglesim.stimuli import NaturalPatches, orientation_energy
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, Task, evaluate_error, train

from .._recipes import CNN, SPEC
from .analysis import add_measures, summarise
from .figure import plot_natural_statistics

NAME = "natural_statistics"
PATCHES = NaturalPatches(size=32)
"""The training patches: 32 px, grey, every photograph at half its resolution, circular
aperture, each patch standardised."""
PHOTO = Task(head="photo", target="photograph", loss="cross_entropy")
"""The pretraining task: which photograph a patch was cut from."""
FISHER_SPEC = SPEC.replace(phase=None)
"""The gratings the FI is measured on: the standard stimulus at a random phase (the FI is
averaged over 8 phases)."""
LAYERS = ("conv1", "conv2", "fc")
"""The layers whose FI is measured: every block of the CNN before its heads."""
FINETUNE_OFFSET = 45.0
"""The fine-tuning prior's centre, in degrees from the training images' dominant orientation."""
FINETUNE_KAPPA = 4.0
"""The fine-tuning prior's concentration (von Mises on 2θ)."""
STRATEGIES = {
    "full": {},
    "linear_probe": {"lr_scale": 10.0},
    "surgical": {"blocks": ["conv1", "head"]},
    "lp_ft": {"probe_lr_scale": 10.0},  # probe_epochs: half the phase's epochs
}
"""The fine-tuning strategies and their parameters. The orientation head is new (pretraining
trained the photograph head only), so ``surgical`` trains it with the first block; the
heads-only rates are 10× the phase's, as in the fine-tuning-under-shift studies (a linear head
does not converge at trunk rates within the step budget)."""

SIZES = {
    "full": dict(pre_epochs=80, pre_steps=50, pre_batch=64, pre_lr=2e-3, ft_epochs=8,
                 ft_steps=50, ft_batch=32, ft_lr=1e-3, n_angles=48, energy_patches=2000,
                 accuracy_patches=1024, error_repeats=8, replicates=8),
    "quick": dict(pre_epochs=2, pre_steps=3, pre_batch=16, pre_lr=2e-3, ft_epochs=2,
                  ft_steps=2, ft_batch=16, ft_lr=1e-3, n_angles=16, energy_patches=64,
                  accuracy_patches=64, error_repeats=1, replicates=2),
}


def pretrain_phase(rotation: float, sz: dict) -> Phase:
    """Photograph classification on the patches turned by ``rotation`` (degrees)."""
    return Phase("pretrain", source=PATCHES, rotation=math.radians(rotation), tasks=[PHOTO],
                 lr=sz["pre_lr"], epochs=sz["pre_epochs"], steps_per_epoch=sz["pre_steps"],
                 batch_size=sz["pre_batch"])


def finetune_phase(rotation: float, strategy: str, sz: dict) -> Phase:
    """Orientation of :data:`SPEC` gratings under a von Mises prior centred at rotation +
    :data:`FINETUNE_OFFSET`, with ``strategy``; the photograph head stays as it is."""
    params = copy.deepcopy(STRATEGIES[strategy])
    if strategy == "lp_ft":
        params["probe_epochs"] = max(1, sz["ft_epochs"] // 2)
    prior = VonMises(math.radians(rotation + FINETUNE_OFFSET) % math.pi, FINETUNE_KAPPA)
    return Phase("finetune", prior, SPEC, lr=sz["ft_lr"], epochs=sz["ft_epochs"],
                 steps_per_epoch=sz["ft_steps"], batch_size=sz["ft_batch"],
                 trainable=[*LAYERS, "head"], eval_angles=8, eval_repeats=1,
                 strategy=strategy, strategy_params=params)


def model_config() -> dict:
    """The CNN with its photograph head (one unit per photograph)."""
    return {**CNN.to_config(),
            "heads": {"photo": {"readout": "classes", "n_bins": len(PATCHES.photographs)}}}


def replicate(ctx: ReplicateContext) -> xr.Dataset:
    """Pretrain on the patches at the condition's rotation, measure, fine-tune with every
    strategy, measure again (see the module docstring)."""
    sz, on = ctx.params, ctx.on_device
    rotation = float(ctx.condition["rotation"])
    angles = ctx.angles
    device = torch.device(ctx.device or "cpu")

    def fisher(net) -> np.ndarray:
        return output_noise_fisher(net, FISHER_SPEC, angles, layers=list(LAYERS),
                                   **on).values

    model = build_model(model_config(), generator=ctx.generator("init", device="cpu"))
    history = train(model, [pretrain_phase(rotation, sz)], ctx.seed, **on)
    with torch.no_grad():
        held_out = PATCHES.draw(sz["accuracy_patches"], ctx.generator("eval", device="cpu"),
                                rotation=math.radians(rotation), device=device)
        guess = model(held_out.images, head="photo").argmax(1)
        accuracy = float((guess == held_out.labels).double().mean())
    seen = PATCHES.draw(sz["energy_patches"], ctx.generator("energy", device="cpu"),
                        rotation=math.radians(rotation))
    energy = orientation_energy(seen.images, n_angles=angles.numel())

    curves = [fisher(model)]
    errors = []
    for strategy in STRATEGIES:
        net = copy.deepcopy(model)
        train(net, [finetune_phase(rotation, strategy, sz)], ctx.stream_seed("finetune"), **on)
        curves.append(fisher(net))
        errors.append(evaluate_error(net, SPEC, angles.numel(), sz["error_repeats"],
                                     ctx.generator("error")).values)

    ds = xr.Dataset(
        {
            "fisher": (("network", "layer", "angle"), np.stack(curves)),
            "energy": (("angle",), energy.values),
            "photo_accuracy": ((), accuracy),
            "pretrain_loss": (("pretrain_epoch",), history["train_loss"].values),
            "finetune_error": (("strategy", "angle"), np.stack(errors)),
        },
        coords={"network": ["pretrained", *STRATEGIES], "layer": list(LAYERS),
                "angle": angles.double().numpy(), "strategy": list(STRATEGIES),
                "pretrain_epoch": np.arange(history.sizes["epoch"])},
    )
    ds["photo_accuracy"].attrs["chance"] = 1 / len(PATCHES.photographs)
    return ds


def describe(sz: dict, grid: dict) -> dict:
    """What besides the sizes and the code determines the results (the cache key)."""
    rotation = float(grid["rotation"][0])
    return {"patches": PATCHES.to_config(), "spec": SPEC.to_config(),
            "fisher_spec": FISHER_SPEC.to_config(), "model": model_config(),
            "strategies": STRATEGIES, "finetune_offset_deg": FINETUNE_OFFSET,
            "finetune_kappa": FINETUNE_KAPPA,
            "pretrain": pretrain_phase(rotation, sz).to_config(),
            "finetune_example": finetune_phase(rotation, "lp_ft", sz).to_config()}


# ---- claims, declared before the full run ------------------------------------------------------

CLAIMS = [
    Contrast(
        name="energy_match_follows_rotation",
        statement="each layer's FI correlates more with its own training patches' orientation "
                  "energy than with the energy of the other rotations' patches",
        measure="energy_match_following", against=0.0, direction="greater",
        where={"network": "pretrained"}, over=["layer"]),
    Contrast(
        name="bias_follows_rotation",
        statement="the bias index at the training images' own peaks exceeds the same index "
                  "in networks trained at the other rotations",
        measure="bias_following", against=0.0, direction="greater",
        where={"network": "pretrained", "layer": ["conv2", "fc"]}, over=["layer"]),
    Contrast(
        name="bias_emerges_mid_network",
        statement="the rotation-following bias index is larger in conv2 than in conv1",
        measure="bias_following", arm={"layer": "conv2"}, against={"layer": "conv1"},
        paired=True, where={"network": "pretrained"}, direction="greater"),
    Contrast(
        name="bias_grows_with_depth",
        statement="the rotation-following bias index is larger in fc than in conv2",
        measure="bias_following", arm={"layer": "fc"}, against={"layer": "conv2"},
        paired=True, where={"network": "pretrained"}, direction="greater"),
    Contrast(
        name="cos4_phase_moves_with_rotation",
        statement="the cos 4θ phase of the FI moves with the rotation of the training "
                  "patches, within ±11.25° (half the rotation step)",
        measure="phase_shift_error", against=0.0, direction="equivalent", margin=11.25,
        where={"network": "pretrained", "layer": ["conv2", "fc"], "rotation": [22.5, 45.0]},
        over=["layer", "rotation"]),
    Contrast(
        name="full_finetuning_erodes_bias",
        statement="full fine-tuning on gratings lowers the rotation-following bias index at fc",
        measure="bias_following", arm={"network": "full"}, against={"network": "pretrained"},
        paired=True, where={"layer": "fc"}, direction="less"),
    Contrast(
        name="surgical_keeps_more_bias_than_full",
        statement="surgical fine-tuning of the first block leaves more of the bias index at fc "
                  "than full fine-tuning",
        measure="bias_following", arm={"network": "surgical"}, against={"network": "full"},
        paired=True, where={"layer": "fc"}, direction="greater"),
    Contrast(
        name="lp_ft_keeps_more_bias_than_full",
        statement="LP-FT leaves more of the bias index at fc than full fine-tuning",
        measure="bias_following", arm={"network": "lp_ft"}, against={"network": "full"},
        paired=True, where={"layer": "fc"}, direction="greater"),
]
"""The study's planned contrasts (primary, declared before any full run; a pilot of two
networks at 0° and 45° chose the FI estimator and the sizes)."""


STUDY = Study(
    name=NAME,
    devices=("cpu", "cuda"),  # params["device"] reaches train, the FI estimator, the draws
    question="Does a network pretrained on natural patches carry orientation information where "
             "their orientation energy is, growing with depth and turning with the patches, "
             "and what of it survives fine-tuning on gratings?",
    replicate=replicate,
    sizes=SIZES,
    grid={"rotation": [0.0, 22.5, 45.0]},
    describe=describe,
    postprocess=add_measures,
    figure=plot_natural_statistics,
    summary=summarise,
    # Paired: replicate r of every rotation starts from the same weights and sees the same
    # photographs and positions, turned, so measures can be taken against the other rotations.
    pair_axes=("rotation",),
    # NaN by design: a cos 4θ phase is undefined for a flat curve; measures against the other
    # rotations need at least two rotations
    allow_nan=("fisher_phase", "phase_lag", "phase_lag_mean", "phase_shift",
               "phase_shift_error", "bias_following_by_rotation", "bias_following",
               "energy_match_following_by_rotation", "energy_match_following"),
    claims=CLAIMS,
)
