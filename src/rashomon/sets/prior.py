"""The prior precision of a Gaussian weight posterior: the one parser of the `prior` option and
the one grid search, shared by laplace-torch's posteriors (`rashomon.sets.laplace`) and the
multilabel last-layer posterior (`rashomon.sets.bernoulli`).

A posterior here has `set_prior(precision)` and `sample(models, seed, kind) -> ModelSet`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rashomon.errors import RashomonError

PRIOR_METHODS = ("marglik", "grid")
GRID = tuple(float(v) for v in np.logspace(-4, 4, 17))
# Probability floors inside the log of the grid's NLL (multilabel: both terms of the BCE).
CATEGORICAL_FLOOR = 1e-12
BERNOULLI_FLOOR = 1e-7


def parse_prior(prior: Any) -> str | float:
    """ "marglik" (maximise the marginal likelihood), "grid" (`prior_by_grid`), or a positive
    precision given as a number or its text ("1e-4"); anything else is a one-line error."""
    if isinstance(prior, str) and prior in PRIOR_METHODS:
        return prior
    if isinstance(prior, bool):
        value = math.nan
    else:
        try:
            value = float(prior)
        except (TypeError, ValueError):
            raise RashomonError(
                f"unknown prior {prior!r}; use marglik, grid or a positive number"
            ) from None
    if not value > 0:
        raise RashomonError(f"prior precision must be positive, got {prior!r}")
    return value


def mean_prediction_nll(probs: torch.Tensor, y: torch.Tensor, multilabel: bool) -> float:
    """Validation NLL of a set's mean prediction `probs` [N, C] (multilabel: [N, L] sigmoid,
    the mean BCE over labels)."""
    if multilabel:
        p = probs.clamp(BERNOULLI_FLOOR, 1 - BERNOULLI_FLOOR)
        y = y.float()
        return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())
    p_true = probs[torch.arange(len(y)), y].clamp_min(CATEGORICAL_FLOOR)
    return float(-p_true.log().mean())


def prior_by_grid(
    post: Any,
    task: Any,
    grid: Sequence[float] = GRID,
    *,
    models: int = 32,
    seed: int = 0,
    kind: str = "nn",
    device: Any = None,
    max_memory: str | int | None = None,
) -> tuple[float, dict[float, float]]:
    """The precision of `grid` whose `models` sampled models (drawn with `seed`) give the lowest
    validation NLL of their mean prediction; sets it on `post` and returns it with the NLL of
    every value (inf where the posterior precision is not positive definite)."""
    if not grid:
        raise RashomonError("the prior grid is empty; give at least one precision")
    multilabel = task.kind == "multilabel"
    out: dict[float, float] = {}
    for value in grid:
        try:
            post.set_prior(float(value))
            mset = post.sample(models, seed=seed, kind=kind)
        except RuntimeError:  # posterior precision not positive definite at this value
            out[float(value)] = math.inf
            continue
        probs = mset.predict(task.val.x, device=device, max_memory=max_memory).mean(0)
        out[float(value)] = mean_prediction_nll(probs, task.val.y, multilabel)
    best = min(out, key=out.__getitem__)
    post.set_prior(best)
    return best, out
