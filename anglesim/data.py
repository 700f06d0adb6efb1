"""Stimulus data: a prior and a grating spec turned into batches of (images, angles).

Two regimes, as in the research anglesim grows from (lrast/angleFinetuning):

* **on the fly** — every batch is freshly drawn from the prior and rendered with fresh noise,
  so the network never sees the same image twice (`stream`);
* **finite** — a fixed set of D images is rendered once and split into train, validation and
  test sets of 8D, 2D and 2D images (`reference_split`), for early stopping on validation loss.

A fixed evaluation grid of angles (`evaluation_grid`) makes error and Fisher-information curves
comparable between runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from . import validation as check
from .distributions import AnglePrior
from .stimuli import GratingSpec, render

RENDER_ARG = {"contrast": "contrasts", "frequency": "frequencies"}
"""The ``render`` keyword that sets each varied property (``Phase.vary``) per image."""


def resolve_device(device: Any, name: str = "device") -> torch.device:
    """``device`` (a ``torch.device`` or a string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
    ``"mps"``) as a ``torch.device`` this machine has; ValueError naming ``name`` otherwise."""
    try:
        dev = check.device(name, device, allow_none=False)
    except ValueError:
        raise check.fail(name, "a device such as 'cpu', 'cuda' or 'cuda:0'" if isinstance(
            device, str) else "a torch.device or a string such as 'cpu' or 'cuda'",
            device) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index is not None and dev.index >= count):
            raise check.fail(name, f"a device this machine has ({count} CUDA device(s) seen)",
                             device)
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise check.fail(name, "a device this machine has (no MPS here)", device)
    elif dev.type != "cpu":
        raise check.fail(name, "a 'cpu', 'cuda' or 'mps' device", device)
    return dev


def check_generator(generator: Any, name: str = "generator") -> torch.Generator | None:
    """``generator`` if it is None or a ``torch.Generator``; ValueError otherwise (a seed is
    not a generator: make one with :func:`anglesim.seeding.torch_generator`).
    :func:`anglesim.validation.generator` under the name the training loop imports."""
    return check.generator(name, generator, kind="torch")


def evaluation_grid(n_angles: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Evenly spaced angles θ_k = kπ/n, k = 0 … n−1, covering [0, π) once (float32)."""
    n_angles = check.integer("n_angles", n_angles, minimum=1)
    device = None if device is None else resolve_device(device)
    return torch.arange(n_angles, dtype=torch.float32, device=device) * (math.pi / n_angles)


def _draw_args(prior: Any, n: Any, generator: Any, device: Any) -> tuple[int, Any]:
    if not isinstance(prior, AnglePrior):
        raise check.fail("prior", "an AnglePrior (e.g. Uniform(), VonMises(loc, kappa))", prior)
    n = check.integer("n", n, minimum=1)
    check_generator(generator)
    return n, None if device is None else resolve_device(device)


def draw(
    prior: AnglePrior,
    spec: GratingSpec,
    n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw n angles from the prior and render their noisy images.

    Returns (images [n, 1, P, P], angles [n]).
    """
    n, device = _draw_args(prior, n, generator, device)
    angles = prior.sample(n, generator=generator, device=device)
    return render(angles, spec, generator=generator, inplace=True), angles


def draw_varied(
    prior: AnglePrior,
    spec: GratingSpec,
    n: int,
    vary: dict[str, tuple[float, float]] | None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Draw n angles, the varied properties, and render: (images, angles, {name: values [n]}).

    With ``vary`` None this is :func:`anglesim.data.draw` (same random numbers) and the dict
    is empty. Otherwise, after the angles, each property (in the order contrast, frequency) is
    drawn uniformly on its [lo, hi] in float64 from ``generator``, then the images are rendered
    with those values.
    """
    if not vary:
        images, angles = draw(prior, spec, n, generator, device)
        return images, angles, {}
    n, device = _draw_args(prior, n, generator, device)
    vary = check.instance("vary", vary, dict, "None or a dict {property: (lo, hi)}")
    for name, span in vary.items():
        check.choice("vary", name, RENDER_ARG)
        if (not isinstance(span, tuple | list) or len(span) != 2
                or check.real(f"vary[{name!r}][0]", span[0]) > check.real(f"vary[{name!r}][1]",
                                                                         span[1])):
            raise check.fail(f"vary[{name!r}]", "a range (lo, hi) with lo <= hi", span)
    angles = prior.sample(n, generator=generator, device=device)
    draw_device = generator.device if generator is not None else angles.device
    values = {}
    for name, (lo, hi) in vary.items():
        u = torch.rand(n, dtype=torch.float64, generator=generator, device=draw_device)
        values[name] = (lo + (hi - lo) * u).to(device=angles.device, dtype=angles.dtype)
    kwargs = {RENDER_ARG[name]: v for name, v in values.items()}
    return render(angles, spec, generator=generator, inplace=True, **kwargs), angles, values



def stream(
    prior: AnglePrior,
    spec: GratingSpec,
    batch_size: int,
    n_batches: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield n_batches fresh batches drawn on the fly (new angles and new noise each time)."""
    check.integer("batch_size", batch_size, minimum=1)
    n_batches = check.integer("n_batches", n_batches, minimum=1)
    for _ in range(n_batches):
        yield draw(prior, spec, batch_size, generator, device)


@dataclass
class FiniteDataset:
    """A fixed set of rendered images and their angles."""

    images: torch.Tensor
    angles: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("images", "angles"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise check.fail(name, "a tensor", getattr(self, name))
        if self.images.shape[0] != self.angles.shape[0]:
            raise ValueError(
                f"images and angles disagree in length: {self.images.shape[0]} vs "
                f"{self.angles.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.angles.shape[0])

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the set in minibatches (shuffled with the generator if asked, on the
        generator's device; the images stay where they are)."""
        batch_size = check.integer("batch_size", batch_size, minimum=1)
        check_generator(generator)
        check.boolean("shuffle", shuffle)
        n = len(self)
        if shuffle:
            on = generator.device if generator is not None else "cpu"
            order = torch.randperm(n, generator=generator, device=on).to(self.angles.device)
        else:
            order = torch.arange(n, device=self.angles.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield self.images[idx], self.angles[idx]


def make_finite(
    prior: AnglePrior,
    spec: GratingSpec,
    n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> FiniteDataset:
    """Render a fixed dataset of n images drawn from the prior."""
    images, angles = draw(prior, spec, n, generator, device)
    return FiniteDataset(images, angles)


def reference_split(
    prior: AnglePrior,
    spec: GratingSpec,
    d: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[FiniteDataset, FiniteDataset, FiniteDataset]:
    """Train, validation and test sets of 8D, 2D and 2D images, as in the reference research
    (lrast/angleFinetuning).

    All three are drawn independently from the same prior and spec; the validation set drives
    early stopping and the test set is held out for reporting.
    """
    d = check.integer("d", d, minimum=1)
    return tuple(make_finite(prior, spec, k * d, generator, device) for k in (8, 2, 2))

