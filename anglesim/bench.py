"""``anglesim bench``: how fast anglesim is, as ratios measured in one run.

anglesim studies are many small trainings, so speed decides how many replicates a researcher can
afford. Every figure here is a ratio of two timings taken in the same run, interleaved (A, B, A,
B, … keeping the best of each), so that it holds on a noisy shared machine where absolute
timings do not:

1. **render** — images/s of :func:`anglesim.stimuli.render` for the studies' standard stimulus
   (32×32 and 64×64, batches of 256, with and without its Gaussian pixel noise) against a
   straightforward per-image NumPy renderer of the same gratings written here (checked to give
   the same clean images), and against the machine's limit for writing the same bytes (filling
   a float32 tensor of the same size). Goals: ≥ 50× the NumPy renderer; within 10× of the write.
2. **train** — images/s of one training step (forward, loss, backward, Adam) of the default CNN
   (``studies/_common.standard_cnn()``) at batch 256, its FLOPs counted by
   :class:`torch.utils.flop_counter.FlopCounterMode`, and the achieved FLOP/s over the float32
   peak of a large square matmul measured alongside with the same threads: the model-FLOP
   utilisation (MFU). Goal: ≥ 0.4. The step with the model in the NCHW layout (torch's default)
   is timed too, since :func:`anglesim.models.build_model` puts CNNs in channels-last.
3. **fisher** — the propagated estimator's time per angle (:func:`anglesim.fisher.
   propagated_fisher`, every layer of a briefly trained default CNN, standard stimulus without
   its aperture, see ``bench_fisher``) against a per-angle loop
   that gets the same Jacobians by central finite differences, at equal or better accuracy: both
   are scored against the propagated estimator run in float64, and the cheapest finite-
   difference variant at least as accurate as the float32 estimator is the baseline. Goal: ≥ 20×.
   **fisher curve** — the FI curve at 100 angles of the reference MLP on the reference stimulus
   (clamped Bernoulli–Gaussian noise): the reference research's smoothed-derivative recipe
   (:func:`anglesim.fisher.savgol_fisher`) against the bias-corrected sampled linear estimator
   with far fewer forward passes, each scored by its error against a high-sample ground truth
   (the same bias-corrected estimator with many samples). Goal: the same or smaller error in
   ≥ 100× less time.
4. **replicates** — wall time of 4 quickstart replicates with 1 worker and 1 thread against all
   cores as workers of 1 thread (loky, and a dask LocalCluster), workers × threads = cores, and
   1 worker with all cores as threads: parallel efficiency T₁ / (cores · T). Goal: ≥ 0.85.
5. **quickstart** — ``anglesim quickstart`` end to end in a subprocess on all cores: wall time
   and peak resident memory (sum over the process tree, sampled; and the largest single
   process's maximum, from ``getrusage``). Goals: < 3 min and < 2 GB.

``--quick`` runs everything at reduced sizes in under 2 minutes: fewer timing rounds and
angles, item 3b on 20 angles with the recipe's counts divided by 5 (and a ground truth of 1,000
trials per side), item 4 on small quickstart-shaped replicates (:data:`REPLICATE_SIZES`) and
item 5 on ``anglesim quickstart --quick``; at those sizes worker start-up dominates and the
curve's errors are noisy, so the goals of items 3b, 4 and 5 are not judged. ``--smoke`` is
smaller still, for the test suite (item 5 with one replicate). Only full mode times item 4's
run with one worker and all cores as threads. Numbers are printed as a table;
``--json PATH`` writes them with the machine's description (cores, threads, versions, date, load).
Run ``python -m anglesim.bench`` or ``anglesim bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as _dt
import functools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SECTIONS = ("render", "train", "fisher", "fisher_curve", "replicates", "quickstart")
"""The benchmark's sections, in the order they run (``--only`` picks some)."""

MODES = ("smoke", "quick", "full")


# --------------------------------------------------------------------------------------------
# sizes


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is in one mode."""

    render_batch: int
    render_sizes: tuple[int, ...]
    rounds: int  # interleaved timing rounds; the best of each is kept
    min_seconds: float  # shortest single timed measurement (calls are repeated to reach it)
    matmul_n: int  # side of the square float32 matmul that measures the peak
    train_batch: int
    fisher_train_steps: int  # training steps of the CNN before its FI is measured
    fisher_angles: int
    fd_steps: tuple[tuple[str, float], ...]  # finite-difference variants (dtype, pixel step)
    curve_angles: int  # item 3b: angles of the FI curve (divides curve_savgol's n_dense)
    curve_savgol: dict  # savgol_fisher's counts
    curve_truth_trials: int  # ground truth: trials per side per angle
    curve_fast_trials: tuple[int, ...]  # the fast estimator's trial counts, smallest first
    curve_train_steps: int
    replicate_size: str  # item 4: "full" (the quickstart's) or "scaled" (REPLICATE_SIZES)
    n_replicates: int
    quickstart_args: tuple[str, ...]  # item 5: options of `anglesim quickstart` beyond the size
    unjudged: frozenset[str] = frozenset()  # sections whose sizes cannot judge their goals


SIZES: dict[str, Sizes] = {
    "full": Sizes(
        render_batch=256, render_sizes=(32, 64), rounds=7, min_seconds=0.05, matmul_n=2048,
        train_batch=256, fisher_train_steps=400, fisher_angles=8,
        fd_steps=(("float32", 1e-2), ("float32", 1e-3), ("float64", 1e-6)),
        curve_angles=100,
        curve_savgol=dict(n_dense=10_000, n_cov_angles=500, n_cov_samples=500, window=501),
        curve_truth_trials=2_000, curve_fast_trials=(25, 50, 100, 200, 400, 800),
        curve_train_steps=600, replicate_size="full", n_replicates=4,
        quickstart_args=(),
    ),
    "quick": Sizes(
        render_batch=256, render_sizes=(32, 64), rounds=4, min_seconds=0.02, matmul_n=1024,
        train_batch=256, fisher_train_steps=100, fisher_angles=2,
        fd_steps=(("float32", 1e-2), ("float64", 1e-6)),
        curve_angles=20,
        curve_savgol=dict(n_dense=2_000, n_cov_angles=100, n_cov_samples=100, window=101),
        curve_truth_trials=1_000, curve_fast_trials=(10, 25, 50, 100),
        curve_train_steps=100, replicate_size="scaled", n_replicates=4,
        quickstart_args=("--quick",),
        unjudged=frozenset({"replicates", "quickstart", "fisher_curve"}),
    ),
    "smoke": Sizes(
        render_batch=32, render_sizes=(32,), rounds=2, min_seconds=0.002, matmul_n=256,
        train_batch=256, fisher_train_steps=5, fisher_angles=1,
        fd_steps=(("float64", 1e-6),),
        curve_angles=10,
        curve_savgol=dict(n_dense=200, n_cov_angles=10, n_cov_samples=20, window=21),
        curve_truth_trials=100, curve_fast_trials=(10, 25),
        curve_train_steps=5, replicate_size="scaled", n_replicates=2,
        quickstart_args=("--quick", "--replicates", "1"),
        unjudged=frozenset({"replicates", "quickstart", "fisher_curve"}),
    ),
}
"""Sizes per mode. ``unjudged`` lists the sections whose goals are not judged in that mode
(their sizes differ from the ones the goal is defined for)."""

REPLICATE_SIZES: dict[str, dict[str, int]] = {
    "quick": dict(pre_epochs=2, ft_epochs=1, steps=20, batch=64, n_angles=2),
    "smoke": dict(pre_epochs=1, ft_epochs=1, steps=2, batch=16, n_angles=1),
}
"""The quickstart-shaped replicates of item 4 in quick and smoke modes (full mode runs the
quickstart's own full-size replicate)."""



# --------------------------------------------------------------------------------------------
# results


@dataclass
class Goal:
    """A target for one measured value: ``value >= target`` (op ">=") or ``<=``."""

    op: str
    target: float

    def met(self, value: float) -> bool:
        return value >= self.target if self.op == ">=" else value <= self.target

    def shortfall(self, value: float) -> float:
        """By what factor ``value`` misses the target (1.0 when met)."""
        if self.met(value) or value == 0 or not math.isfinite(value):
            return 1.0 if self.met(value) else math.inf
        return self.target / value if self.op == ">=" else value / self.target

    def text(self) -> str:
        return f"{'≥' if self.op == '>=' else '<'} {_fmt(self.target)}"


@dataclass
class Row:
    """One line of the benchmark's table."""

    section: str
    measure: str
    value: float
    unit: str
    goal: Goal | None = None
    judged: bool = True  # False: the goal exists but this mode's sizes cannot judge it
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None or not self.judged or not math.isfinite(self.value):
            return None
        return self.goal.met(self.value)

    def verdict(self) -> str:
        if self.goal is None:
            return ""
        if not self.judged:
            return "not judged at this size"
        if not math.isfinite(self.value):
            return "not measured"
        if self.met:
            return "met"
        return f"short {_fmt(self.goal.shortfall(self.value))}×"

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section, "measure": self.measure,
            "value": self.value if math.isfinite(self.value) else None, "unit": self.unit,
            "goal": None if self.goal is None else {"op": self.goal.op,
                                                    "target": self.goal.target},
            "met": self.met, "verdict": self.verdict(), "note": self.note,
        }


@dataclass
class Context:
    """What every section gets: the mode's sizes, threads, and where to report."""

    mode: str
    sizes: Sizes
    threads: int
    cores: int
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def add(self, section: str, measure: str, value: float, unit: str,
            goal: Goal | None = None, note: str = "") -> None:
        self.rows.append(Row(section, measure, float(value), unit, goal,
                             judged=section not in self.sizes.unjudged, note=note))


def _fmt(value: float) -> str:
    """A number with about 3 significant digits, thousands separated."""
    if value is None or not math.isfinite(value):
        return "—"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    if a == 0:
        return "0"
    return f"{value:.3g}"


# --------------------------------------------------------------------------------------------
# timing


def race(fns: Mapping[str, Callable[[], Any]], rounds: int, min_seconds: float) -> dict[str, float]:
    """Best seconds per call of each function, timed interleaved.

    Each function is called once to warm up and once to calibrate how many calls make one
    measurement of at least ``min_seconds``; then ``rounds`` rounds time every function in
    turn, so that a change of the machine's load affects all of them alike, and the best
    (smallest) per-call time of each is returned.
    """
    numbers = {}
    for name, fn in fns.items():
        fn()
        started = time.perf_counter()
        fn()
        once = max(time.perf_counter() - started, 1e-9)
        numbers[name] = max(1, math.ceil(min_seconds / once))
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(numbers[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / numbers[name])
    return best


def _top_ops(fn: Callable[[], Any], n: int = 6) -> list[dict[str, Any]]:
    """The ``n`` torch operators with the most self CPU time in one call of ``fn``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count}
            for e in events[:n]]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _studies() -> Any:
    """The studies package's shared definitions (the standard stimulus and CNN)."""
    from .studies import _common as common

    return common


# --------------------------------------------------------------------------------------------
# 1. rendering


def numpy_render(angles: np.ndarray, spec: Any, rng: np.random.Generator | None,
                 noise: bool = True) -> np.ndarray:
    """A straightforward renderer: one image at a time with NumPy, [N, 1, P, P] float32.

    The same gratings as :func:`anglesim.stimuli.render` for specs with a fixed phase, additive
    Gaussian noise on every pixel, no shot noise, no clamp and the aperture applied before the
    noise (the studies' standard stimulus): x = contrast · cos(k (Y cos θ + X sin θ) + φ) ·
    mask + σ · N(0, 1). The baseline of the rendering benchmark.
    """
    if spec.phase is None or spec.noise_prob != 1.0 or spec.shot_prob > 0 or \
            spec.clamp is not None or spec.mask_after_noise:
        raise ValueError("numpy_render covers fixed-phase specs with additive Gaussian noise "
                         f"and the aperture before the noise, got {spec!r}")
    x = np.linspace(-spec.extent, spec.extent, spec.size)
    xx, yy = np.meshgrid(x, x, indexing="xy")
    if spec.aperture is None:
        mask = np.ones_like(xx)
    elif spec.aperture_edge == 0:
        mask = (xx**2 + yy**2 < (spec.aperture * spec.extent) ** 2).astype(np.float64)
    else:
        rho = np.sqrt(xx**2 + yy**2) / spec.extent
        t = np.clip((rho - (spec.aperture - spec.aperture_edge)) / spec.aperture_edge, 0, 1)
        mask = 0.5 * (1 + np.cos(np.pi * t))
    out = np.empty((len(angles), 1, spec.size, spec.size), dtype=np.float32)
    for i, theta in enumerate(angles):
        t = theta % np.pi
        img = spec.contrast * np.cos(spec.wavenumber * (yy * np.cos(t) + xx * np.sin(t))
                                     + spec.phase) * mask
        if noise and spec.noise_std > 0:
            img = img + spec.noise_std * rng.standard_normal((spec.size, spec.size))
        out[i, 0] = img
    return out


def bench_render(ctx: Context) -> None:
    """Item 1: rendering against a per-image NumPy renderer and against the write limit."""
    from .stimuli import render

    common = _studies()
    sz = ctx.sizes
    details: dict[str, Any] = {}
    for size in sz.render_sizes:
        spec = common.SPEC.replace(size=size)
        n = sz.render_batch
        angles = torch.linspace(0, math.pi, n + 1)[:-1]
        angles_np = angles.double().numpy()
        gen = torch.Generator().manual_seed(0)
        rng = np.random.default_rng(0)
        clean_np = numpy_render(angles_np, spec, None, noise=False)
        clean_torch = render(angles, spec, noise=False).numpy()
        mismatch = float(np.abs(clean_np - clean_torch).max())
        if mismatch > 1e-4:
            raise RuntimeError(f"the NumPy baseline draws other gratings (max difference "
                               f"{mismatch:g}); the comparison would be meaningless")
        buf = torch.empty(n, 1, size, size)
        t = race({
            "render": lambda spec=spec, angles=angles, gen=gen: render(angles, spec, gen),
            "render_clean": lambda spec=spec, angles=angles: render(angles, spec, noise=False),
            "render_inplace": lambda spec=spec, angles=angles, gen=gen: render(
                angles, spec, gen, inplace=True),
            "render_clean_inplace": lambda spec=spec, angles=angles: render(
                angles, spec, noise=False, inplace=True),
            "numpy": lambda spec=spec, a=angles_np, rng=rng: numpy_render(a, spec, rng),
            "numpy_clean": lambda spec=spec, a=angles_np: numpy_render(a, spec, None, False),
            "noise_draw": lambda buf=buf, gen=gen: torch.randn(buf.shape, generator=gen),
            "write": lambda buf=buf: buf.fill_(0.5),
        }, sz.rounds, sz.min_seconds)
        label = f"{size}×{size}"
        details[label] = {"seconds_per_batch": t, "batch": n, "clean_max_difference": mismatch,
                          "bytes": buf.numel() * 4}
        # in place is what training data and the sampled estimators use (same images)
        for kind, ours, base in (("noisy", "render", "numpy"),
                                 ("noisy, in place", "render_inplace", "numpy"),
                                 ("clean", "render_clean", "numpy_clean"),
                                 ("clean, in place", "render_clean_inplace", "numpy_clean")):
            ctx.add("render", f"{label} {kind}: anglesim.render", n / t[ours], "img/s")
            ctx.add("render", f"{label} {kind}: per-image NumPy baseline", n / t[base], "img/s")
            ctx.add("render", f"{label} {kind}: speed-up over NumPy", t[base] / t[ours], "×",
                    Goal(">=", 50))
            ctx.add("render", f"{label} {kind}: time ÷ write time of the same bytes",
                    t[ours] / t["write"], "×", Goal("<=", 10))
        ctx.add("render", f"{label}: write limit (fill of the same bytes)", n / t["write"],
                "img/s", note=f"{buf.numel() * 4 / t['write'] / 1e9:.1f} GB/s")
        ctx.add("render", f"{label}: share of the noisy render spent drawing the noise",
                t["noise_draw"] / t["render"], "", note="torch.randn with a CPU generator")
    ctx.details["render"] = details


# --------------------------------------------------------------------------------------------
# 2. training step


def matmul_peak(n: int, rounds: int, min_seconds: float) -> float:
    """FLOP/s of an n × n float32 matmul (2n³ FLOPs) with the current torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    t = race({"mm": lambda: torch.mm(a, b, out=c)}, rounds, min_seconds)["mm"]
    return 2 * n**3 / t


def _train_step(model: torch.nn.Module, batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                loss_name: str = "cosine") -> Callable[[], float]:
    """One Adam step of ``model`` on the (images, angles) that ``batch()`` returns, as
    :func:`anglesim.training.train` does (a fixed batch: ``lambda: (images, theta)``)."""
    from .losses import get_loss

    loss_fn = get_loss(loss_name, model.readout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> float:
        images, theta = batch()
        loss = loss_fn(model(images), theta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def count_flops(model: torch.nn.Module, images: torch.Tensor, theta: torch.Tensor,
                loss_name: str = "cosine") -> int:
    """FLOPs of one forward, loss and backward pass, by torch's FlopCounterMode (convolutions
    and matrix products; elementwise ops, pooling and the optimiser count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .losses import get_loss

    loss_fn = get_loss(loss_name, model.readout)
    net = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter:
        loss_fn(net(images), theta).backward()
    return int(counter.get_total_flops())


def bench_train(ctx: Context) -> None:
    """Item 2: the default CNN's training step, its FLOP/s and the model-FLOP utilisation."""
    from .data import draw
    from .distributions import Uniform
    from .models import build_model

    common = _studies()
    sz = ctx.sizes
    gen = torch.Generator().manual_seed(0)
    images, theta = draw(Uniform(), common.SPEC, sz.train_batch, gen)
    torch.manual_seed(0)
    model = build_model(common.standard_cnn())
    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    flops = count_flops(model, images, theta)
    a, b = torch.randn(sz.matmul_n, sz.matmul_n), torch.randn(sz.matmul_n, sz.matmul_n)
    c = torch.empty(sz.matmul_n, sz.matmul_n)
    step = _train_step(model, lambda: (images, theta))
    step_nchw = _train_step(nchw, lambda: (images, theta))
    draw_gen = torch.Generator().manual_seed(1)
    with_draw_model = copy.deepcopy(model)
    with_draw = _train_step_with_draw(with_draw_model, common.SPEC, sz.train_batch, draw_gen)
    t = race({"step": step, "step_nchw": step_nchw, "step_with_draw": with_draw,
              "matmul": lambda: torch.mm(a, b, out=c)}, sz.rounds, sz.min_seconds)
    peak = 2 * sz.matmul_n**3 / t["matmul"]
    achieved = flops / t["step"]
    n = sz.train_batch
    ctx.add("train", f"step at batch {n} (build_model's layout)", n / t["step"], "img/s")
    ctx.add("train", "step, model in NCHW layout", n / t["step_nchw"], "img/s")
    ctx.add("train", "speed-up of build_model's layout over NCHW", t["step_nchw"] / t["step"],
            "×")
    ctx.add("train", "step including drawing the batch (render)", n / t["step_with_draw"],
            "img/s")
    ctx.add("train", "FLOPs per step (FlopCounterMode)", flops / 1e6, "MFLOP")
    ctx.add("train", "achieved", achieved / 1e9, "GFLOP/s")
    ctx.add("train", f"float32 matmul peak ({sz.matmul_n}², same threads)", peak / 1e9,
            "GFLOP/s")
    ctx.add("train", "model-FLOP utilisation (achieved ÷ peak)", achieved / peak, "",
            Goal(">=", 0.4))
    details: dict[str, Any] = {"seconds": t, "flops_per_step": flops, "batch": n,
                               "matmul_n": sz.matmul_n}
    if ctx.mode != "smoke":
        details["profile_step"] = _top_ops(step)
    ctx.details["train"] = details


def _train_step_with_draw(model: torch.nn.Module, spec: Any, batch: int,
                          gen: torch.Generator) -> Callable[[], float]:
    """A training step that first draws its batch (uniform prior, fresh noise), as training
    on the fly does."""
    from .data import draw
    from .distributions import Uniform

    prior = Uniform()
    return _train_step(model, lambda: draw(prior, spec, batch, gen))


# --------------------------------------------------------------------------------------------
# 3a. Fisher information: propagated vs finite differences


def _trained_cnn(common: Any, steps: int, seed: int = 0) -> torch.nn.Module:
    """The default CNN after ``steps`` training steps on the standard stimulus (uniform prior),
    so that its Fisher information has the structure of a trained network."""
    from .distributions import Uniform
    from .models import build_model
    from .training import Phase, train

    torch.manual_seed(seed)
    model = build_model(common.standard_cnn())
    phase = Phase("pretrain", Uniform(), common.SPEC, loss="cosine", lr=2e-3, epochs=1,
                  steps_per_epoch=steps, batch_size=64, eval_angles=8, eval_repeats=1)
    train(model, [phase], seed)
    return model.eval()


def _ridge_fisher(a: torch.Tensor, xdot: torch.Tensor, variance: float, eps: float) -> float:
    """J = (Aẋ)ᵀ(σ²AAᵀ + ε_abs I)⁻¹(Aẋ), ε_abs = ε tr(σ²AAᵀ)/N, in float64 (A: [N, P]).

    The same quantity as :func:`anglesim.fisher.propagated_fisher` for pixel noise σ²I, written
    out plainly: with B = σA and u = ẋ/σ, the N × N system for N ≤ P, else the P × P one
    uᵀ(BᵀB + ε_abs I)⁻¹BᵀBu (push-through identity).
    """
    sigma = math.sqrt(variance)
    b = a.double() * sigma
    u = xdot.double() / sigma
    n_units, n_pix = b.shape
    if n_units <= n_pix:
        gram = b @ b.T
        left = right = b @ u
    else:
        gram = b.T @ b
        left, right = u, gram @ u
    trace = float(torch.trace(gram))
    if trace <= 0:
        return 0.0
    shifted = gram + (eps * trace / n_units) * torch.eye(gram.shape[0], dtype=gram.dtype)
    return float(left @ torch.linalg.solve(shifted, right))


def finite_difference_fisher(model: torch.nn.Module, spec: Any, angles: Sequence[float],
                             dtype: torch.dtype = torch.float64, step: float = 1e-6,
                             eps: float = 1e-6, chunk: int = 256) -> np.ndarray:
    """Propagated Fisher information with every derivative from central finite differences.

    The baseline of the Fisher benchmark: for each angle in turn, ẋ = (x(θ + h) − x(θ − h))/2h
    and each layer's Jacobian column j = (r(x + δeⱼ) − r(x − δeⱼ))/2δ from 2P perturbed images
    (P pixels, run through the network in batches of ``chunk``, every layer read from the same
    passes), then the same formula as :func:`anglesim.fisher.propagated_fisher` with pixel
    noise σ²I (``spec.noise_std``): "input" ẋᵀẋ/σ², each block (Aẋ)ᵀ(σ²AAᵀ + ε_abs I)⁻¹(Aẋ),
    "output" (aᵀẋ)²/(σ² aᵀa) for the decoded angle. Returns [layers, angles] in the order
    input, blocks, output. The network runs in ``dtype``; δ = ``step``, h = 10⁻⁵ (float64) or
    10⁻³ (float32).
    """
    from . import angles as ang
    from .stimuli import render_clean

    if not spec.gaussian_noise_only or spec.mask_after_noise:
        raise ValueError("finite_difference_fisher needs additive Gaussian noise on every pixel")
    net = copy.deepcopy(model).to(dtype).eval()
    names = list(net.block_names)
    variance = spec.noise_std**2
    p = spec.size**2
    h_theta = 1e-5 if dtype == torch.float64 else 1e-3
    out = np.zeros((len(names) + 2, len(angles)))
    with torch.no_grad():
        for k, theta in enumerate(angles):
            t = torch.tensor([float(theta)], dtype=torch.float64)
            x0 = render_clean(t, spec, dtype=dtype).reshape(1, p)
            xdot = ((render_clean(t + h_theta, spec, dtype=torch.float64)
                     - render_clean(t - h_theta, spec, dtype=torch.float64))
                    / (2 * h_theta)).reshape(p)
            columns: dict[str, list[torch.Tensor]] = {name: [] for name in names}
            decoded: list[torch.Tensor] = []
            for start in range(0, p, chunk):
                stop = min(start + chunk, p)
                bump = torch.zeros(stop - start, p, dtype=dtype)
                bump[torch.arange(stop - start), torch.arange(start, stop)] = step
                plus = net.activations((x0 + bump).reshape(-1, 1, spec.size, spec.size))
                minus = net.activations((x0 - bump).reshape(-1, 1, spec.size, spec.size))
                for name in names:
                    columns[name].append(((plus[name] - minus[name]).reshape(stop - start, -1)
                                          / (2 * step)).double())
                diff = ang.difference(net.decode(plus[names[-1]]), net.decode(minus[names[-1]]))
                decoded.append(diff.double() / (2 * step))
            out[0, k] = float(xdot @ xdot) / variance
            for i, name in enumerate(names, start=1):
                jac = torch.cat(columns[name]).T  # [N, P]
                out[i, k] = _ridge_fisher(jac, xdot, variance, eps)
            a = torch.cat(decoded)
            den = variance * float(a @ a)
            out[-1, k] = float(a @ xdot) ** 2 / den if den > 0 else 0.0
    return out


def _curve_error(values: np.ndarray, reference: np.ndarray) -> float:
    """Largest, over layers, relative L2 error over angles: ‖J − J_ref‖ / ‖J_ref‖."""
    num = np.sqrt(((values - reference) ** 2).sum(-1))
    den = np.sqrt((reference**2).sum(-1))
    return float(np.max(num / np.where(den > 0, den, 1.0)))


def bench_fisher(ctx: Context) -> None:
    """Item 3a: the propagated estimator against a finite-difference loop, equal accuracy."""
    from .data import evaluation_grid
    from .fisher import propagated_fisher

    common = _studies()
    sz = ctx.sizes
    # Without the aperture: at the noiseless image the aperture's blank corners are exactly 0,
    # every first-layer unit there equals its bias, and max-pooling meets exact ties, where the
    # network is not differentiable; autodiff then takes the first maximum's one-sided
    # derivative and central differences the mean of both sides, so neither would score
    # against the other. Without blank pixels the derivatives exist and both are scored
    # against the float64 reference. Timings do not depend on it (same sizes).
    spec = common.SPEC.replace(aperture=None)
    model = _trained_cnn(common, sz.fisher_train_steps)
    grid = evaluation_grid(sz.fisher_angles) + 0.1  # off the grid's symmetric points
    angles = grid.double().numpy()
    propagated_fisher(model, spec, grid[:1])  # warm-up
    reps = 1 if ctx.mode != "full" else 2
    t_prop = math.inf
    for _ in range(reps):
        started = time.perf_counter()
        prop = propagated_fisher(model, spec, grid)
        t_prop = min(t_prop, (time.perf_counter() - started) / len(angles))
    started = time.perf_counter()
    reference = propagated_fisher(copy.deepcopy(model).double(), spec, grid.double())
    t_ref = (time.perf_counter() - started) / len(angles)
    layers = [str(v) for v in reference["layer"].values]
    ref = reference.values
    err_prop = _curve_error(prop.values, ref)
    variants: list[dict[str, Any]] = []
    for dtype_name, step in sz.fd_steps:
        dtype = getattr(torch, dtype_name)
        started = time.perf_counter()
        fd = finite_difference_fisher(model, spec, angles, dtype=dtype, step=step)
        seconds = (time.perf_counter() - started) / len(angles)
        variants.append({"dtype": dtype_name, "step": step, "seconds_per_angle": seconds,
                         "error": _curve_error(fd, ref),
                         "error_by_layer": dict(zip(layers, _layer_errors(fd, ref),
                                                    strict=True))})
    good = [v for v in variants if v["error"] <= err_prop]
    chosen = min(good, key=lambda v: v["seconds_per_angle"]) if good else \
        min(variants, key=lambda v: v["error"])
    ctx.add("fisher", "propagated (float32), every layer", t_prop * 1e3, "ms/angle",
            note=f"error {err_prop:.2g}")
    for v in variants:
        ctx.add("fisher", f"finite differences ({v['dtype']}, δ = {v['step']:g})",
                v["seconds_per_angle"] * 1e3, "ms/angle", note=f"error {v['error']:.2g}")
    ctx.add("fisher", "speed-up over finite differences at equal accuracy",
            chosen["seconds_per_angle"] / t_prop, "×", Goal(">=", 20),
            note=f"baseline: {chosen['dtype']}, δ = {chosen['step']:g}"
                 + ("" if good else " (none as accurate: the most accurate one)"))
    details = {
        "angles": angles.tolist(), "layers": layers,
        "propagated_seconds_per_angle": t_prop, "propagated_error": err_prop,
        "propagated_error_by_layer": dict(zip(layers, _layer_errors(prop.values, ref),
                                              strict=True)),
        "reference": "propagated_fisher on a float64 copy of the model",
        "reference_seconds_per_angle": t_ref, "finite_differences": variants,
        "chosen_baseline": {k: chosen[k] for k in ("dtype", "step")},
        "train_steps": sz.fisher_train_steps,
        "error_metric": "max over layers of the relative L2 error over angles against the "
                        "float64 reference",
    }
    if ctx.mode != "smoke":
        details["profile_propagated"] = _top_ops(
            lambda: propagated_fisher(model, spec, grid[:1]))
    ctx.details["fisher"] = details


def _layer_errors(values: np.ndarray, reference: np.ndarray) -> list[float]:
    num = np.sqrt(((values - reference) ** 2).sum(-1))
    den = np.sqrt((reference**2).sum(-1))
    return [float(x) for x in num / np.where(den > 0, den, 1.0)]


# --------------------------------------------------------------------------------------------
# 3b. the whole FI curve on the reference MLP and stimulus


CURVE_DTHETA = 0.1
"""Δθ (rad) of the sampled estimators in item 3b: the central difference's bias is O(Δθ²)
(about 0.7% of FI for a (cos 2θ, sin 2θ) readout at 0.1 rad), while the estimator's variance
grows as Δθ shrinks (its 8/(JΔθ²) term)."""


def _trained_reference_mlp(spec: Any, steps: int, seed: int = 0) -> torch.nn.Module:
    """The reference MLP trained for ``steps`` steps (batch 64, uniform prior, cosine loss)
    on the reference stimulus, so that its FI curve has a trained network's structure."""
    from .distributions import Uniform
    from .models import reference_mlp
    from .training import Phase, train

    torch.manual_seed(seed)
    model = reference_mlp(spec.size)
    phase = Phase("train", Uniform(), spec, loss="cosine", lr=1e-3, epochs=1,
                  steps_per_epoch=steps, batch_size=64, eval_angles=8, eval_repeats=1)
    train(model, [phase], seed)
    return model.eval()


def bench_fisher_curve(ctx: Context) -> None:
    """Item 3b: the whole FI curve of the reference MLP on the reference stimulus.

    The reference research's recipe (:func:`anglesim.fisher.savgol_fisher` with its raw
    output vector, as the reference did) against the bias-corrected sampled linear estimator
    (:func:`anglesim.fisher.sampled_fisher` of the same output vector) with far fewer forward
    passes, each scored by its relative L2 error over the angles against the same
    bias-corrected estimator with many trials (the ground truth, computed with all cores).
    """
    from . import fisher
    from .stimuli import GratingSpec
    from .training import make_generator

    savgol = getattr(fisher, "savgol_fisher", None)
    sampled = getattr(fisher, "sampled_fisher", None)
    if savgol is None or sampled is None:
        ctx.add("fisher_curve", "not run: anglesim.fisher has no savgol_fisher / "
                "sampled_fisher", math.nan, "", Goal(">=", 100))
        return
    sz = ctx.sizes
    spec = GratingSpec.reference()
    model = _trained_reference_mlp(spec, sz.curve_train_steps)
    layer = model.block_names[-1]  # the raw output vector (cos 2θ, sin 2θ)
    n = sz.curve_angles
    counts = dict(sz.curve_savgol)
    if counts["n_dense"] % n:
        raise ValueError(f"n_dense={counts['n_dense']} must be a multiple of {n} angles")
    angles = np.arange(n) * (math.pi / n)

    started = time.perf_counter()
    sg = savgol(model, spec, generator=make_generator(1), output="raw", **counts)
    t_savgol = time.perf_counter() - started
    every = counts["n_dense"] // n
    sg_values = sg.values[::every]
    sg_corrected = sg_values - float(sg.attrs["derivative_noise_bias"])
    passes_savgol = counts["n_dense"] + counts["n_cov_angles"] * counts["n_cov_samples"]

    def curve(trials: int, seed: int) -> np.ndarray:
        return sampled(model, spec, angles, layers=layer, dtheta=CURVE_DTHETA,
                       n_trials=trials, generator=make_generator(seed)).values[0]

    ctx.log(f"  ground truth: {2 * sz.curve_truth_trials * n:,} forward passes …")
    started = time.perf_counter()
    with torch_threads(ctx.cores):
        truth = curve(sz.curve_truth_trials, 2)
    t_truth = time.perf_counter() - started
    truth_se = math.sqrt(float(np.mean(fisher.linear_fisher_variance(
        np.maximum(truth, 0), sz.curve_truth_trials, 2, CURVE_DTHETA) / truth**2)))
    err_savgol = _relative_error(sg_values, truth)
    fast: list[dict[str, Any]] = []
    for trials in sz.curve_fast_trials:
        started = time.perf_counter()
        est = curve(trials, 3)
        seconds = time.perf_counter() - started
        fast.append({"trials": trials, "seconds": seconds, "passes": 2 * trials * n,
                     "error": _relative_error(est, truth)})
        if fast[-1]["error"] <= err_savgol:
            break
    chosen = fast[-1]
    reached = chosen["error"] <= err_savgol
    ctx.add("fisher_curve", f"reference recipe, savgol_fisher ({passes_savgol:,} passes)",
            t_savgol, "s", note=f"error {err_savgol:.2g}")
    for f in fast:
        ctx.add("fisher_curve", f"sampled linear FI, {f['trials']} trials per side "
                f"({f['passes']:,} passes)", f["seconds"], "s", note=f"error {f['error']:.2g}")
    ctx.add("fisher_curve", "time saved at the same or smaller error",
            t_savgol / chosen["seconds"] if reached else math.nan, "×", Goal(">=", 100),
            note=f"{chosen['trials']} trials per side" if reached else
            "no trial count tried reached the recipe's error")
    ctx.details["fisher_curve"] = {
        "model": f"reference_mlp({spec.size}) trained {sz.curve_train_steps} steps",
        "stimulus": "GratingSpec.reference() (clamped Bernoulli-Gaussian noise)",
        "layer": layer, "angles": n, "dtheta": CURVE_DTHETA,
        "savgol": {**counts, "output": "raw", "seconds": t_savgol, "passes": passes_savgol,
                   "error": err_savgol,
                   "error_bias_corrected": _relative_error(sg_corrected, truth),
                   "derivative_noise_bias": float(sg.attrs["derivative_noise_bias"])},
        "truth": {"estimator": "sampled_fisher bias_corrected (Kanitscheider et al. 2015)",
                  "trials_per_side": sz.curve_truth_trials, "seconds": t_truth,
                  "threads": ctx.cores, "relative_standard_error": truth_se,
                  "mean_fisher": float(np.mean(truth))},
        "fast": fast,
        "error_metric": "relative L2 error over the angles against the ground truth; it "
                        "includes the ground truth's own sampling error "
                        "(relative_standard_error)",
        "train_steps": sz.curve_train_steps,
    }


def _relative_error(values: np.ndarray, truth: np.ndarray) -> float:
    """‖values − truth‖₂ / ‖truth‖₂ over the angles."""
    return float(np.sqrt(((values - truth) ** 2).sum() / (truth**2).sum()))


# --------------------------------------------------------------------------------------------
# 4. replicates


def scaled_quickstart_replicate(condition: dict, replicate: int, seed: int,
                                sizes: Mapping[str, int]) -> Any:
    """One quickstart replicate at any size: ``studies/quickstart.py``'s phases (pretrain on a
    uniform prior, fine-tune on a von Mises prior) and its measurements (propagated FI of every
    layer and the decoding error after each phase), with ``sizes`` in the form of its
    ``SIZES`` entries. The workload of the replicates benchmark in quick and smoke modes."""
    import xarray as xr

    from .cli import load_study
    from .data import evaluation_grid
    from .fisher import propagated_fisher
    from .models import build_model
    from .training import evaluate_error, make_generator, train

    module = load_study("quickstart")
    torch.manual_seed(seed)
    model = build_model(module.MODEL)
    plan = module.phases(float(condition["kappa"]), dict(sizes))
    grid = evaluation_grid(sizes["n_angles"])
    fisher, errors = [], []

    def measure(phase: Any, net: torch.nn.Module) -> None:
        fisher.append(propagated_fisher(net, module.SPEC, grid, sigma=module.SPEC.noise_std))
        errors.append(evaluate_error(net, module.SPEC, sizes["n_angles"], repeats=16,
                                     generator=make_generator(seed + 1)))

    train(model, plan, seed, on_phase_end=measure)
    names = [p.name for p in plan]
    return xr.Dataset({"fisher": xr.concat(fisher, dim="phase").assign_coords(phase=names),
                       "abs_error": xr.concat(errors, dim="phase").assign_coords(phase=names)})


def bench_replicates(ctx: Context) -> None:
    """Item 4: quickstart replicates on one core against all cores (loky and dask)."""
    from .cli import load_study
    from .replicates import run_study

    sz = ctx.sizes
    if sz.replicate_size == "full":
        module = load_study("quickstart")
        fn: Callable[..., Any] = functools.partial(module.replicate, size="full")
    else:
        fn = functools.partial(scaled_quickstart_replicate, sizes=REPLICATE_SIZES[ctx.mode])
    grid = {"kappa": [4.0]}
    cores = ctx.cores
    runs: dict[str, dict[str, Any]] = {"1 worker × 1 thread": dict(n_jobs=1,
                                                                   threads_per_worker=1)}
    if ctx.mode == "full":  # on a busy machine threads wait for each other: minutes
        runs[f"1 worker × {cores} threads"] = dict(n_jobs=1, threads_per_worker=cores)
    runs[f"{cores} loky workers × 1 thread"] = dict(n_jobs=cores, threads_per_worker=1)
    try:
        import distributed  # noqa: F401

        runs[f"{cores} dask workers × 1 thread (LocalCluster)"] = dict(
            n_jobs=cores, threads_per_worker=1, backend="dask")
    except ImportError:
        ctx.log("dask.distributed is not installed: the dask run is skipped")
    if cores < 2:
        runs = {k: v for k, v in runs.items() if k.startswith("1 worker × 1")}
    seconds: dict[str, float] = {}
    results = {}
    for label, options in runs.items():
        ctx.log(f"  replicates: {label} …")
        started = time.perf_counter()
        ds = run_study(fn, grid, sz.n_replicates, seed=0, progress=False, name="bench",
                       **options)
        seconds[label] = time.perf_counter() - started
        if bool(ds["failed"].any()):
            raise RuntimeError(f"a replicate failed in the {label} run: "
                               f"{ds['error'].values.ravel().tolist()}")
        results[label] = ds["fisher"].values
    serial_label = next(iter(runs))
    serial = seconds[serial_label]
    for label, s in seconds.items():
        ctx.add("replicates", f"{sz.n_replicates} replicates, {label}", s, "s")
    for label, s in seconds.items():
        if label == serial_label:
            continue
        goal = Goal(">=", 0.85) if "workers" in label else None
        ctx.add("replicates", f"parallel efficiency, {label}", serial / (cores * s), "",
                goal, note=f"speed-up {serial / s:.2f}× on {cores} cores")
    threaded = f"1 worker × {cores} threads"
    loky = f"{cores} loky workers × 1 thread"
    if threaded in seconds and loky in seconds:
        ctx.add("replicates", f"speed-up of {loky} over {threaded}",
                seconds[threaded] / seconds[loky], "×", note="workers × threads = cores in both")
    identical = all(np.array_equal(results[serial_label], r, equal_nan=True)
                    for label, r in results.items() if "× 1 thread" in label)
    ctx.add("replicates", "1-thread runs bit-identical whatever the workers", float(identical),
            "yes=1")
    ctx.details["replicates"] = {"seconds": seconds, "size": sz.replicate_size,
                                 "n_replicates": sz.n_replicates, "cores": cores,
                                 "efficiency": "T(1 worker × 1 thread) / (cores × T)"}


# --------------------------------------------------------------------------------------------
# 5. the quickstart end to end


_RUSAGE_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print('BENCH-RUSAGE ' + json.dumps({'code': code, 'maxrss_kib': usage.ru_maxrss}))\n"
)


def measure_command(cmd: Sequence[str], poll_seconds: float = 0.1) -> dict[str, Any]:
    """Run ``cmd`` in a subprocess: its wall time, exit code and peak memory.

    ``peak_tree_bytes`` is the largest total memory of the process and all its descendants,
    sampled every ``poll_seconds``: the sum of their proportional set sizes (PSS: each shared
    page, such as torch's libraries, counted once over the processes that share it) where the
    system reports it, else of their resident sizes; ``peak_tree_kind`` says which (None
    without psutil). ``max_process_bytes`` is the largest maximum resident size of any one
    descendant, from ``getrusage(RUSAGE_CHILDREN)`` in a wrapper process.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _RUSAGE_WRAPPER, *cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, kind = 0, None
    if psutil is not None:
        root = psutil.Process(proc.pid)
        kind = "pss"
        while proc.poll() is None:
            total = 0
            with contextlib.suppress(psutil.Error):
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        if kind == "pss":
                            try:
                                total += p.memory_full_info().pss
                                continue
                            except (AttributeError, psutil.AccessDenied):
                                kind = "rss"
                        total += p.memory_info().rss
            peak = max(peak, total)
            time.sleep(poll_seconds)
    output, _ = proc.communicate()
    seconds = time.perf_counter() - started
    usage: dict[str, Any] = {}
    lines = []
    for line in output.splitlines():
        if line.startswith("BENCH-RUSAGE "):
            usage = json.loads(line.split(" ", 1)[1])
        else:
            lines.append(line)
    return {"seconds": seconds, "code": usage.get("code", proc.returncode),
            "peak_tree_bytes": peak if psutil is not None else None, "peak_tree_kind": kind,
            "max_process_bytes": usage.get("maxrss_kib", 0) * 1024, "output": "\n".join(lines)}


def bench_quickstart(ctx: Context) -> None:
    """Item 5: ``anglesim quickstart`` end to end: wall time and peak resident memory."""
    sz = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="anglesim-bench-") as tmp:
        cmd = [sys.executable, "-m", "anglesim", "quickstart", "--n-jobs", str(ctx.cores),
               "--results", tmp, "--no-cache", "--quiet", *sz.quickstart_args]
        ctx.log(f"  quickstart: {' '.join(cmd[2:])} …")
        run = measure_command(cmd)
    if run["code"] != 0:
        raise RuntimeError(f"the quickstart failed (exit {run['code']}):\n{run['output'][-2000:]}")
    size = " ".join(sz.quickstart_args) or "full size"
    ctx.add("quickstart", f"wall time ({size}, --n-jobs {ctx.cores})", run["seconds"], "s",
            Goal("<=", 180))
    if run["peak_tree_bytes"] is not None:
        ctx.add("quickstart", "peak memory, all processes together", run["peak_tree_bytes"]
                / 2**30, "GiB", Goal("<=", 2.0),
                note=f"sum of {run['peak_tree_kind'].upper()} over the process tree, sampled")
    ctx.add("quickstart", "largest single process's peak resident memory",
            run["max_process_bytes"] / 2**30, "GiB",
            None if run["peak_tree_bytes"] is not None else Goal("<=", 2.0),
            note="getrusage(RUSAGE_CHILDREN)")
    ctx.details["quickstart"] = {k: v for k, v in run.items() if k != "output"}
    ctx.details["quickstart"]["command"] = cmd[2:]


# --------------------------------------------------------------------------------------------
# running, reporting


BENCHES: dict[str, Callable[[Context], None]] = {
    "render": bench_render,
    "train": bench_train,
    "fisher": bench_fisher,
    "fisher_curve": bench_fisher_curve,
    "replicates": bench_replicates,
    "quickstart": bench_quickstart,
}


def machine_info(threads: int) -> dict[str, Any]:
    """The machine and software the numbers come from."""
    import joblib

    from . import __version__
    from .io import provenance

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cores": joblib.cpu_count(),
        "logical_cpus": os.cpu_count(),
        "cpu": cpu,
        "torch_threads": threads,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "anglesim": __version__,
        "git_rev": provenance()["git_rev"],
        "platform": platform.platform(),
    }


def run_benchmarks(mode: str = "full", only: Sequence[str] | None = None,
                   threads: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark's sections (all, or ``only``) in ``mode``; return the report dict.

    The report holds ``machine`` (:func:`machine_info`), ``mode``, ``rows`` (one dict per table
    line: section, measure, value, unit, goal, met, verdict, note), ``details`` (raw timings,
    errors and profiles per section), ``seconds`` per section and the load average at the end.
    Items 1–3 run with ``threads`` torch threads (1, as each study worker does, by default).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    chosen = list(SECTIONS) if not only else list(only)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    import joblib

    from .replicates import configure_malloc

    configure_malloc()  # as every study worker does
    ctx = Context(mode=mode, sizes=SIZES[mode], threads=threads, cores=joblib.cpu_count(),
                  log=log)
    report: dict[str, Any] = {"benchmark": "anglesim bench", "mode": mode,
                              "machine": machine_info(threads), "seconds": {}}
    for name in SECTIONS:
        if name not in chosen:
            continue
        log(f"[{name}] …")
        started = time.perf_counter()
        with torch_threads(threads):
            BENCHES[name](ctx)
        report["seconds"][name] = time.perf_counter() - started
    try:
        report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        report["load_average_at_end"] = None
    report["rows"] = [r.to_json() for r in ctx.rows]
    report["details"] = ctx.details
    return report


def format_table(report: Mapping[str, Any]) -> str:
    """The report's rows as an aligned text table, with a header naming the machine."""
    m = report["machine"]
    head = (f"anglesim bench ({report['mode']}) — {m['date']}, {m['cores']} cores ({m['cpu']}), "
            f"torch {m['torch']}, {m['torch_threads']} torch thread(s) for items 1-3, "
            f"load average {m['load_average_at_start']} at start, "
            f"{report.get('load_average_at_end')} at end")
    table = [("section", "measure", "value", "unit", "goal", "verdict", "note")]
    for r in report["rows"]:
        goal = "" if r["goal"] is None else Goal(r["goal"]["op"], r["goal"]["target"]).text()
        value = _fmt(r["value"]) if r["value"] is not None else "—"
        table.append((r["section"], r["measure"], value, r["unit"], goal, r["verdict"],
                      r["note"]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [head]
    for k, row in enumerate(table):
        cells = [row[i].rjust(widths[i]) if i == 2 else row[i].ljust(widths[i])
                 for i in range(len(row))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The options of ``anglesim bench`` / ``python -m anglesim.bench``."""
    p = argparse.ArgumentParser(prog="anglesim bench", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="reduced sizes, under 2 minutes (items 3b, 4 and 5 not judged)")
    size.add_argument("--smoke", action="store_true",
                      help="smallest sizes, only to check that everything runs (tests)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the numbers, with the machine's description, as JSON")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None, metavar="SECTION",
                   help=f"run only these sections ({', '.join(SECTIONS)})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for items 1-3 (default 1, as each study worker uses)")
    return p


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments; print the table; write JSON if asked."""
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    report = run_benchmarks(mode, args.only, args.threads,
                            log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
        print(f"json: {args.json}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def main(argv: list[str] | None = None) -> int:
    """``python -m anglesim.bench [--quick | --smoke] [--json PATH] [--only …]``."""
    args = build_parser().parse_args(argv)
    try:
        return run_from_args(args)
    except ValueError as err:
        print(f"anglesim bench: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
