"""Named random streams derived from one seed: the only place anglesim makes seeds.

Each consumer of randomness asks for its own stream by name (``"init"`` for weights, ``"data"``
for training batches, ``"eval"`` for evaluation draws, ``"fisher"`` for sampled estimators,
``"strategy"`` for a fine-tuning strategy's own draws, …). A stream's seed is
``SeedSequence(entropy=seed, spawn_key=(crc32(name),))``: streams with different names are
statistically independent, and the same (seed, name) gives the same numbers on the same machine
(across CPU models floating-point results may differ in their last bits; say so when quoting).

Ad-hoc offsets (``seed + 1``, ``seed + 7919``) made two studies correlate streams by accident
(one evaluated with the seed another network trained with); named streams cannot collide that
way unless they share a name.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from . import validation as check

__all__ = ["STREAMS", "drawing_from", "numpy_generator", "root_generator", "root_seed",
           "stream_seed", "torch_generator"]

STREAMS = ("init", "data", "eval", "fisher", "strategy", "noise", "split", "control")
"""The stream names anglesim itself uses; any other non-empty name is allowed too."""


def stream_seed(seed: int, name: str, *index: int) -> int:
    """A 63-bit integer seed for stream ``name`` of ``seed`` (and optional sub-indices).

    ``index`` distinguishes members of a family of streams (``stream_seed(s, "data", i)`` for
    the i-th of several fine-tunings), each independent of the others and of other names.
    """
    seed = check.integer("seed", seed, minimum=0)
    name = check.text("name", name)
    keys = [check.integer(f"index[{i}]", k, minimum=0) for i, k in enumerate(index)]
    seq = np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(name.encode()), *keys))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def root_seed(seed: int) -> int:
    """The 64-bit seed of ``SeedSequence(seed)`` itself, without a stream name: its first two
    32-bit words, the high word first.

    The derivation of ``anglesim.training.make_generator``, on which some studies' published
    data streams rest; new code names a stream (:func:`stream_seed`).
    """
    seed = check.integer("seed", seed, minimum=0)
    high, low = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32)
    return int(high) << 32 | int(low)


def torch_generator(seed: int, name: str, *index: int,
                    device: str | torch.device | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default CPU) seeded from stream ``name``."""
    gen = torch.Generator(device=device if device is not None else "cpu")
    gen.manual_seed(stream_seed(seed, name, *index))
    return gen


def root_generator(seed: int, device: str | torch.device | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default CPU) seeded from the seed's root, unnamed
    ``SeedSequence(seed)`` (:func:`root_seed`).

    This is the stream the studies written before named streams drew their training data from
    (formerly ``anglesim.training.make_generator``), kept so their stored results replay
    exactly; new code asks :func:`torch_generator` for a named stream instead.
    """
    gen = torch.Generator(device=device if device is not None else "cpu")
    gen.manual_seed(root_seed(seed))
    return gen


def numpy_generator(seed: int, name: str, *index: int) -> np.random.Generator:
    """A ``numpy.random.Generator`` seeded from stream ``name``."""
    return np.random.default_rng(stream_seed(seed, name, *index))


def describe(seed: int, names: Any = STREAMS) -> dict[str, int]:
    """``{name: stream_seed(seed, name)}`` for provenance records."""
    return {n: stream_seed(seed, n) for n in names}


@contextlib.contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Inside the block, torch's global CPU draws come from ``generator`` (a CPU generator).

    For code that draws from the global generator and takes none of its own (``nn.Linear``'s
    default initialisation, say): the global state is saved and restored around the block, so
    nothing outside it changes, and ``generator`` advances by exactly the draws made inside, as
    if they had been made from it. Drawing from a generator seeded with ``s`` gives the same
    numbers as ``torch.manual_seed(s)`` followed by the same draws.
    """
    generator = check.generator("generator", generator, allow_none=False)
    if generator.device.type != "cpu":
        raise check.fail("generator", "a CPU torch.Generator", generator)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.set_state(generator.get_state())
        yield generator
        generator.set_state(torch.default_generator.get_state())
