"""Gaussian sets scaled to the Rashomon set instead of the posterior's own width.

A Laplace posterior's covariance Σ comes from the marginal likelihood (or a prior grid), not
from ε: its samples may barely move (a set showing little multiplicity) or mostly leave the
set. Two ways to let ε decide how far the models go, both chosen on VALIDATION data only:

- `epsilon_scale`: one factor s for the whole covariance (Σ → s²Σ), found by bisection in
  log s so that a target share of the samples θ* + s·v lies within ε;
- `boundary_scales`: one factor t_m per direction v_m, the largest t with θ* + t·v_m still
  within ε (a line search to the ε level set), so every model is as different from θ* as ε
  allows along its direction.

Where the model is linear in the varied parameters (head-only sets; linearised "glm" sets) the
logits along a direction are f₀ + t·(f(θ* + v) − f₀), so one prediction of θ* + v gives every t
exactly; sampled networks over many weights are predicted again at each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.predict import model_probs
from rashomon.sets.base import ModelSet
from rashomon.sets.rashomon import model_scores, threshold

MAX_LOG2_SCALE = 12  # directions are followed to at most 2^12 times their posterior length
BISECTION_STEPS = 30
# Boundary models aim at ε·(1 − margin): inside the filter's bound despite float32 rounding of
# the stored predictions, and at the level set within that relative tolerance.
BOUNDARY_MARGIN = 1e-3


@dataclass
class PathEvaluator:
    """Validation scores of θ* + t_m·v_m for per-model factors t (one call per t vector)."""

    post: Any  # a posterior with `mean`, `to_set(vectors, kind)`
    deviations: torch.Tensor  # [M, P]
    x_val: torch.Tensor
    y_val: np.ndarray
    kind: str
    device: str | None
    max_memory: str | int | None
    multilabel: bool
    class_weight: Any = None  # the MAP model's training class weights (the filter's loss)
    calls: int = 0

    def __post_init__(self) -> None:
        probe = self.post.to_set(self.post.mean[None] + self.deviations[:1], kind=self.kind)
        self.linear = probe.head_only or probe.kind == "glm"
        self._f0: torch.Tensor | None = None
        self._f1: torch.Tensor | None = None

    def _logits(self, t: torch.Tensor) -> torch.Tensor:
        if self.linear:
            if self._f1 is None:
                ends = self.post.to_set(self.post.mean[None] + self.deviations, kind=self.kind)
                centre = self.post.to_set(self.post.mean[None], kind=self.kind)
                self._f1 = ends.logits(self.x_val, self.device, self.max_memory)
                self._f0 = centre.logits(self.x_val, self.device, self.max_memory)[0]
                self.calls += 1
            assert self._f0 is not None
            return self._f0[None] + t[:, None, None] * (self._f1 - self._f0[None])
        self.calls += 1
        vectors = self.post.mean[None] + t[:, None] * self.deviations
        mset: ModelSet = self.post.to_set(vectors, kind=self.kind)
        return mset.logits(self.x_val, self.device, self.max_memory)

    def labels(self, t: torch.Tensor) -> np.ndarray:
        """Each model's predicted labels [M, N] on validation (multilabel: [M, N·L] 0/1)."""
        logits = self._logits(t.float())
        if self.multilabel:
            return (logits > 0).reshape(len(logits), -1).numpy().astype(np.int64)
        return logits.argmax(-1).numpy()

    def scores(self, t: torch.Tensor, on: str) -> np.ndarray:
        """Each model's validation scores `on` (loss or accuracy) at scales `t`."""
        logits = self._logits(t.float())
        probs = torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, -1)
        return model_scores(probs.numpy(), self.y_val, self.class_weight)[on]


def _bound(
    reference: torch.nn.Module,
    task: Task,
    epsilon: float,
    on: str,
    device: str | None,
    class_weight: Any = None,
) -> float:
    """The validation score a model must not exceed (loss) or must reach (accuracy): the
    Rashomon filter's relative bound around the audited (MAP) model."""
    multilabel = task.kind == "multilabel"
    ref = model_probs(reference, task.val.x, multilabel, device or "cpu").numpy()
    ref_score = float(model_scores(ref[None], task.val.y.numpy(), class_weight)[on][0])
    return threshold(ref_score, epsilon, on, relative=True)


def _inside(scores: np.ndarray, bound: float, on: str) -> np.ndarray:
    tol = 1e-9 * max(1.0, abs(bound))
    return scores <= bound + tol if on == "loss" else scores >= bound - tol


def _evaluator(post, deviations, task, kind, device, max_memory, class_weight) -> PathEvaluator:
    return PathEvaluator(
        post,
        deviations,
        task.val.x,
        task.val.y.numpy(),
        kind,
        device,
        max_memory,
        task.kind == "multilabel",
        class_weight,
    )


def epsilon_scale(
    post: Any,
    deviations: torch.Tensor,
    task: Task,
    epsilon: float,
    *,
    target_share: float = 0.5,
    on: str = "loss",
    kind: str = "nn",
    device: str | None = None,
    max_memory: str | int | None = None,
    steps: int = 20,
    reference: torch.nn.Module | None = None,
    class_weight: Any = None,
) -> tuple[float, dict[str, Any]]:
    """The factor s such that a share `target_share` of θ* + s·v (v = `deviations`) lies within
    ε of the audited model (`reference`, default the posterior's own network) on validation;
    bisection in log2 s over [2^-MAX, 2^MAX]."""
    if not 0 < target_share < 1:
        raise RashomonError(f"target_share must lie in (0, 1), got {target_share}")
    ev = _evaluator(post, deviations, task, kind, device, max_memory, class_weight)
    bound = _bound(reference or post.model, task, epsilon, on, device, class_weight)
    M = len(deviations)

    def share(log2s: float) -> float:
        t = torch.full((M,), 2.0**log2s)
        return float(_inside(ev.scores(t, on), bound, on).mean())

    lo, hi = -float(MAX_LOG2_SCALE), float(MAX_LOG2_SCALE)
    s_lo, s_hi = share(lo), share(hi)
    if s_lo < target_share:
        raise RashomonError(
            f"even at 2^-{MAX_LOG2_SCALE} of the posterior's width only {s_lo:.0%} of the "
            f"models lie within ε = {epsilon:g}; use a larger epsilon"
        )
    if s_hi >= target_share:
        lo = hi  # the directions never leave the set: take the widest scale tried
    for _ in range(steps if s_hi < target_share else 0):
        mid = (lo + hi) / 2
        if share(mid) >= target_share:
            lo = mid
        else:
            hi = mid
    scale = 2.0**lo
    info = {
        "scale": scale,
        "target_share": target_share,
        "share_within_epsilon": share(lo),
        "target_epsilon": epsilon,
        "search_models": M,
        "evaluations": ev.calls,
    }
    return scale, info


def boundary_scales(
    post: Any,
    deviations: torch.Tensor,
    task: Task,
    epsilon: float,
    *,
    on: str = "loss",
    kind: str = "nn",
    device: str | None = None,
    max_memory: str | int | None = None,
    steps: int = BISECTION_STEPS,
    class_weight: Any = None,
    reference: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-direction factors t_m [M]: the largest t (to a relative 2^-steps) with θ* + t·v_m
    within ε on validation, found by doubling, then bisection, for all directions at once.
    A direction still inside at 2^MAX_LOG2_SCALE keeps that factor (flagged `unbounded`)."""
    ev = _evaluator(post, deviations, task, kind, device, max_memory, class_weight)
    bound = _bound(
        reference or post.model, task, epsilon * (1 - BOUNDARY_MARGIN), on, device, class_weight
    )
    M = len(deviations)
    centre = _inside(ev.scores(torch.zeros(M), on), bound, on)
    if not centre.all():  # the posterior's own centre lies outside (another mode's network)
        info = {"target_epsilon": epsilon, "centre_outside": True, "evaluations": ev.calls}
        return torch.zeros(M), info
    lo = torch.zeros(M, dtype=torch.float64)
    hi = torch.ones(M, dtype=torch.float64)
    # Bracket: double t until the model leaves the set (at most MAX_LOG2_SCALE doublings).
    open_ = torch.ones(M, dtype=torch.bool)
    for _ in range(MAX_LOG2_SCALE + 1):
        inside = torch.from_numpy(_inside(ev.scores(hi, on), bound, on))
        grow = open_ & inside
        lo = torch.where(grow, hi, lo)
        open_ = grow
        if not bool(open_.any()):
            break
        hi = torch.where(open_, hi * 2, hi)
    unbounded = open_.clone()
    hi = torch.where(unbounded, lo, hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        inside = torch.from_numpy(_inside(ev.scores(mid, on), bound, on))
        lo = torch.where(inside, mid, lo)
        hi = torch.where(inside, hi, mid)
    info = {
        "target_epsilon": epsilon,
        "centre_outside": False,
        "unbounded_directions": int(unbounded.sum()),
        "evaluations": ev.calls,
        "bracket_relative_width": float(((hi - lo) / hi.clamp_min(1e-30)).max()),
    }
    # lo is inside by construction: every model sits within ε, at most 2^-steps from its edge.
    return lo.float(), info


def mean_pairwise_disagreement(labels: np.ndarray) -> float:
    """Share of patients on which two distinct models of the set give different labels,
    averaged over all pairs: per patient 1 − Σ_c n_c (n_c − 1) / (M (M − 1)) for the M models'
    label counts n_c (multilabel: per patient-label pair)."""
    labels = np.asarray(labels)
    m = labels.shape[0]
    if m < 2:
        raise RashomonError("pairwise disagreement needs at least two models")
    agree = np.zeros(labels.shape[1], dtype=np.float64)
    for c in np.unique(labels):
        n_c = (labels == c).sum(axis=0).astype(np.float64)
        agree += n_c * (n_c - 1)
    return float((1.0 - agree / (m * (m - 1))).mean())


def disagreement_scale(
    post: Any,
    deviations: torch.Tensor,
    task: Any,
    *,
    kind: str = "nn",
    device: str | None = None,
    max_memory: str | int | None = None,
    steps: int = 20,
    reference: torch.nn.Module | None = None,
) -> tuple[float, dict[str, Any]]:
    """The factor s at which the models θ* + s·v disagree with each other on validation, on
    average over pairs, as often as the audited model errs there (its validation error rate).

    Jiang et al. (ICLR 2022) found that two networks trained by SGD from different seeds
    disagree on about the test error rate of either; this scale sets a set's spread to that
    level with no retraining. Bisection in log2 s, the disagreement being monotone in s up to
    sampling noise; validation data only."""
    ev = _evaluator(post, deviations, task, kind, device, max_memory, None)
    ref_model = reference or post.model
    multilabel = task.kind == "multilabel"
    ref = model_probs(ref_model, task.val.x, multilabel, device or "cpu").numpy()
    y = task.val.y.numpy()
    if multilabel:
        target = float(((ref > 0.5) != (y > 0.5)).mean())
    else:
        target = float((ref.argmax(-1) != y).mean())
    if target <= 0:
        raise RashomonError(
            "the audited model makes no error on validation, so the disagreement scale has no "
            "target; use scale=epsilon or scale=boundary"
        )
    M = len(deviations)

    def disagreement(log2s: float) -> float:
        return mean_pairwise_disagreement(ev.labels(torch.full((M,), 2.0**log2s)))

    lo, hi = -float(MAX_LOG2_SCALE), float(MAX_LOG2_SCALE)
    d_hi = disagreement(hi)
    if d_hi < target:
        lo = hi  # even the widest scale tried disagrees less than the model errs
    for _ in range(steps if d_hi >= target else 0):
        mid = (lo + hi) / 2
        if disagreement(mid) < target:
            lo = mid
        else:
            hi = mid
    scale = 2.0**lo
    info = {
        "scale": scale,
        "target_disagreement": target,
        "disagreement": disagreement(lo),
        "search_models": M,
        "evaluations": ev.calls,
        "reached": bool(d_hi >= target),
    }
    return scale, info


SCALES = ("posterior", "epsilon", "boundary", "disagreement")


def scaled_set(
    post: Any,
    task: Any,
    models: int,
    *,
    seed: int = 0,
    kind: str = "nn",
    scale: str = "posterior",
    epsilon: float | None = None,
    target_share: float = 0.5,
    search_models: int = 200,
    on: str = "loss",
    class_weight: Any = None,
    device: str | None = None,
    max_memory: str | int | None = None,
    reference: torch.nn.Module | None = None,
) -> ModelSet:
    """`models` draws of a Gaussian posterior as a ModelSet. `scale` "posterior": θ* + v,
    v ~ N(0, Σ); "epsilon": θ* + s·v with the one s of `epsilon_scale` (searched on the first
    `search_models` draws); "boundary": θ* + t_m·v_m, each direction followed to the ε level set
    (`boundary_scales`). The scaled sets are against `reference` (default the posterior's own
    network) at ε `epsilon`, on validation; `meta["scaling"]` records the search."""
    import time

    if scale not in SCALES:
        raise RashomonError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    if scale == "posterior":
        return post.sample(models, seed=seed, kind=kind)
    start = time.perf_counter()
    dev = post.sample_deviations(models, seed=seed)
    if scale == "disagreement":
        s, info = disagreement_scale(
            post,
            dev[:search_models],
            task,
            kind=kind,
            device=device,
            max_memory=max_memory,
            reference=reference,
        )
        info["scale_seconds"] = round(time.perf_counter() - start, 3)
        return post.to_set(post.mean[None] + s * dev, kind, seed=seed, scaling={scale: info})
    if epsilon is None:
        raise RashomonError(f"scale {scale!r} needs the ε to scale the set to; pass epsilon")
    common = dict(
        on=on,
        class_weight=class_weight,
        kind=kind,
        device=device,
        max_memory=max_memory,
        reference=reference,
    )
    if scale == "epsilon":
        search = dev[:search_models]
        s, info = epsilon_scale(post, search, task, epsilon, target_share=target_share, **common)
        vectors = post.mean[None] + s * dev
    else:
        t, info = boundary_scales(post, dev, task, epsilon, **common)
        vectors = post.mean[None] + t[:, None] * dev
    info["scale_seconds"] = round(time.perf_counter() - start, 3)
    return post.to_set(vectors, kind, seed=seed, scaling={scale: info})
