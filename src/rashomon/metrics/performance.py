"""Per-model performance, vectorised over the M models of a set: every function returns [M].

`probs` is [M, N, C] (binary C = 2), `y` is [N] integer labels. Binary decisions are
p(positive) >= threshold; multiclass decisions are the argmax (threshold unused).

- accuracy, balanced accuracy (mean recall over the classes present in y, as scikit-learn),
  sensitivity and specificity (binary) at a threshold;
- AUROC from average ranks (Mann–Whitney; ties count one half, which is what scikit-learn's
  trapezoidal ROC gives); multiclass: one-vs-rest macro AUROC;
- average precision as scikit-learn's `average_precision_score`: Σ_k (R_k − R_{k−1}) P_k over
  distinct score thresholds; multiclass: one-vs-rest macro;
- multilabel ([M, N, L] sigmoid probabilities, y [N, L]): per-label mean AUROC.

A score that is undefined (AUROC or AP with one class absent) is NaN, never an exception, so
per-group tables can hold it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rashomon.errors import RashomonError
from rashomon.metrics import validation as v


def _checked(probs: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    p = v.check_probs(probs)
    return p, v.check_labels(y, p.shape[1], p.shape[2])


def decisions(p: np.ndarray, threshold: float) -> np.ndarray:
    """[M, N] labels from clean [M, N, C] probabilities (binary: p1 >= threshold)."""
    if p.shape[-1] == 2:
        return (p[..., 1] >= threshold).astype(np.int64)
    return p.argmax(axis=-1).astype(np.int64)


# --------------------------------------------------------------------------- public


def accuracy(probs: Any, y: Any, threshold: float = 0.5) -> np.ndarray:
    """Accuracy per model [M] of probabilities [M, N, C] (binary: decided at `threshold`)."""
    p, yy = _checked(probs, y)
    return _accuracy(decisions(p, v.check_threshold(threshold)), yy)


def balanced_accuracy(probs: Any, y: Any, threshold: float = 0.5) -> np.ndarray:
    """Balanced accuracy per model [M] of probabilities [M, N, C] (binary: decided at
    `threshold`)."""
    p, yy = _checked(probs, y)
    return _balanced_accuracy(decisions(p, v.check_threshold(threshold)), yy)


def sensitivity(probs: Any, y: Any, threshold: float = 0.5) -> np.ndarray:
    """Binary true positive rate at `threshold`."""
    p, yy = _checked(probs, y)
    return _rate(decisions(_binary(p), v.check_threshold(threshold)), yy, positive=1)


def specificity(probs: Any, y: Any, threshold: float = 0.5) -> np.ndarray:
    """Binary true negative rate at `threshold`."""
    p, yy = _checked(probs, y)
    return 1.0 - _rate(decisions(_binary(p), v.check_threshold(threshold)), yy, positive=0)


def auroc(probs: Any, y: Any) -> np.ndarray:
    """Binary AUROC of p[..., 1]; multiclass one-vs-rest macro AUROC."""
    p, yy = _checked(probs, y)
    return _auroc(p, yy)


def average_precision(probs: Any, y: Any) -> np.ndarray:
    """Binary average precision of p[..., 1]; multiclass one-vs-rest macro."""
    p, yy = _checked(probs, y)
    return _average_precision(p, yy)


def multilabel_auroc(probs: Any, y: Any) -> np.ndarray:
    """Mean over labels of the per-label AUROC, for [M, N, L] sigmoid probabilities."""
    p = v.check_probs(probs, multilabel=True)
    yy = v.check_multilabel_targets(y, p.shape[1], p.shape[2])
    per_label = np.stack([binary_auroc(p[..., k], yy[:, k]) for k in range(p.shape[2])], axis=1)
    return _nanmean_rows(per_label)


# --------------------------------------------------------------------------- arithmetic


def _binary(p: np.ndarray) -> np.ndarray:
    if p.shape[-1] != 2:
        raise RashomonError(v.PROBS_FEW_CLASSES.format(classes=p.shape[-1]))
    return p


def _accuracy(d: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (d == y[None, :]).mean(axis=1)


def _rate(d: np.ndarray, y: np.ndarray, positive: int) -> np.ndarray:
    """Share of samples with label `positive` that are predicted 1 (TPR for 1, FPR for 0)."""
    mask = y == positive
    if not mask.any():
        return np.full(d.shape[0], np.nan)
    return (d[:, mask] == 1).mean(axis=1)


def _balanced_accuracy(d: np.ndarray, y: np.ndarray) -> np.ndarray:
    recalls = [(d[:, y == c] == c).mean(axis=1) for c in np.unique(y)]
    return np.mean(recalls, axis=0)


def _auroc(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    if p.shape[-1] == 2:
        return binary_auroc(p[..., 1], y)
    per_class = np.stack(
        [binary_auroc(p[..., c], (y == c).astype(np.int64)) for c in range(p.shape[-1])], axis=1
    )
    return _nanmean_rows(per_class)


def _average_precision(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    if p.shape[-1] == 2:
        return binary_average_precision(p[..., 1], y)
    per_class = np.stack(
        [
            binary_average_precision(p[..., c], (y == c).astype(np.int64))
            for c in range(p.shape[-1])
        ],
        axis=1,
    )
    return _nanmean_rows(per_class)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    finite = np.isfinite(a)
    counts = finite.sum(axis=1)
    sums = np.where(finite, a, 0.0).sum(axis=1)
    out = np.full(a.shape[0], np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def _tie_bounds(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position of row-sorted scores, the first and last index of its run of ties."""
    m, n = sorted_scores.shape
    idx = np.broadcast_to(np.arange(n), (m, n))
    starts_run = np.ones((m, n), dtype=bool)
    starts_run[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    ends_run = np.ones((m, n), dtype=bool)
    ends_run[:, :-1] = starts_run[:, 1:]
    first = np.maximum.accumulate(np.where(starts_run, idx, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends_run, idx, n - 1)[:, ::-1], axis=1)[:, ::-1]
    return first, last


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks along axis 1, ties given their average rank (scipy's 'average')."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, axis=1, kind="stable")
    first, last = _tie_bounds(np.take_along_axis(s, order, axis=1))
    ranks = np.empty_like(s)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def binary_auroc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[M] AUROC of clean scores [M, N] against 0/1 labels [N]; NaN if a class is absent."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos = np.asarray(y) == 1
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(s.shape[0], np.nan)
    rank_sum = average_ranks(s)[:, pos].sum(axis=1)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def binary_average_precision(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[M] average precision (scikit-learn's step-wise definition); NaN without positives."""
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    yy = np.asarray(y).astype(np.float64)
    n_pos = yy.sum()
    if n_pos == 0:
        return np.full(s.shape[0], np.nan)
    order = np.argsort(-s, axis=1, kind="stable")
    sorted_scores = np.take_along_axis(s, order, axis=1)
    tp = np.cumsum(yy[order], axis=1)
    first, last = _tie_bounds(sorted_scores)
    n = s.shape[1]
    is_end = last == np.arange(n)
    tp_before = np.where(first > 0, np.take_along_axis(tp, np.maximum(first - 1, 0), 1), 0.0)
    precision = tp / np.arange(1, n + 1)
    return np.where(is_end, (tp - tp_before) * precision, 0.0).sum(axis=1) / n_pos
