"""A study small enough for the command-line tests: a few SGD steps of a tiny MLP.

The grid is ``{"lr": [...]}``; a learning rate of 1e30 makes the loss NaN, so training raises
FloatingPointError and the replicate fails. Environment variables steer it from a test:
``TINY_GRID`` (JSON grid) and ``TINY_REPLICATES`` (read when the file is loaded; overrides
such as ``grid.lr=[0.05,1e30]`` do the same from the command line), ``TINY_SLEEP`` (seconds
each replicate waits before training, so a test can kill a run mid-replicate) and
``TINY_CALLS`` (a folder where each call leaves a file, so a test can count what was
computed).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from anglesim.distributions import Uniform
from anglesim.models import reference_mlp
from anglesim.stimuli import GratingSpec
from anglesim.study import ReplicateContext, Study
from anglesim.training import Phase, train

NAME = "tiny"
SPEC = GratingSpec(size=8, frequency=2.0, phase=0.0, contrast=1.0, noise_std=1.0)


def replicate(ctx: ReplicateContext) -> xr.Dataset:
    calls = os.environ.get("TINY_CALLS")
    if calls:
        lr = ctx.condition["lr"]
        Path(calls, f"lr={lr}-r{ctx.replicate}-{uuid.uuid4().hex}.call").touch()
    time.sleep(float(os.environ.get("TINY_SLEEP", "0")))
    model = reference_mlp(image_size=8, hidden=(16, 8), generator=ctx.seed_generator())
    phase = Phase("train", Uniform(), SPEC, loss="vector_mse", optimizer="sgd",
                  lr=float(ctx.condition["lr"]), epochs=2, steps_per_epoch=5, batch_size=16,
                  eval_angles=4, eval_repeats=1)
    history = train(model, [phase], ctx.seed)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).double().numpy()
    return xr.Dataset({"weights": ("w", weights),
                       "train_loss": ("epoch", history["train_loss"].values.astype(np.float64)),
                       "threads": ((), np.int64(torch.get_num_threads()))})


def describe(params: dict, grid: dict) -> dict:
    return {"spec": SPEC.to_config()}


STUDY = Study(
    name=NAME,
    question="Do a few SGD steps of a tiny MLP fail at a huge learning rate?",
    replicate=replicate,
    sizes={"quick": {"replicates": int(os.environ.get("TINY_REPLICATES", "2"))},
           "full": {"replicates": int(os.environ.get("TINY_REPLICATES", "2"))}},
    grid=json.loads(os.environ.get("TINY_GRID", '{"lr": [0.05, 0.1]}')),
    describe=describe,
)
