"""Stimulus data: a prior and a grating spec turned into batches of (images, angles).

Two regimes, as in the research anglesim grows from:

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

import torch

from .distributions import AnglePrior
from .stimuli import GratingSpec, render

RENDER_ARG = {"contrast": "contrasts", "frequency": "frequencies"}
"""The ``render`` keyword that sets each varied property (``Phase.vary``) per image."""


def evaluation_grid(n_angles: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Evenly spaced angles θ_k = kπ/n, k = 0 … n−1, covering [0, π) once (float32)."""
    if not isinstance(n_angles, int) or n_angles < 1:
        raise ValueError(f"n_angles must be a positive integer, got {n_angles!r}")
    return torch.arange(n_angles, dtype=torch.float32, device=device) * (math.pi / n_angles)


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
    _check_positive("batch_size", batch_size)
    _check_positive("n_batches", n_batches)
    for _ in range(n_batches):
        yield draw(prior, spec, batch_size, generator, device)


@dataclass
class FiniteDataset:
    """A fixed set of rendered images and their angles."""

    images: torch.Tensor
    angles: torch.Tensor

    def __post_init__(self) -> None:
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
        """One pass over the set in minibatches (shuffled with the generator if asked)."""
        _check_positive("batch_size", batch_size)
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
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
    _check_positive("n", n)
    images, angles = draw(prior, spec, n, generator, device)
    return FiniteDataset(images, angles)


def reference_split(
    prior: AnglePrior,
    spec: GratingSpec,
    d: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[FiniteDataset, FiniteDataset, FiniteDataset]:
    """Train, validation and test sets of 8D, 2D and 2D images, as in the reference research.

    All three are drawn independently from the same prior and spec; the validation set drives
    early stopping and the test set is held out for reporting.
    """
    _check_positive("d", d)
    return tuple(make_finite(prior, spec, k * d, generator, device) for k in (8, 2, 2))


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
