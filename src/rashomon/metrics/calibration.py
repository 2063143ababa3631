"""Per-model calibration, vectorised over the M models of a set: every function returns [M].

`probs` is [M, N, C] (binary C = 2), `y` is [N] integer labels.

- nll: mean −log p(y) (probabilities floored at 1e-12 so a confident mistake stays finite). It is
  also the loss the Rashomon filter compares (`rashomon.sets.rashomon.model_scores`), so it takes
  what that loss needs: multilabel targets y [N, L] with [M, N, L] sigmoid probabilities (binary
  cross-entropy averaged over samples and labels), and the training `class_weight` [C] (each
  patient's −log p(y) times its class's weight) or per-label positive weights [L] (multiplying
  the positive term, as `BCEWithLogitsLoss(pos_weight=...)` does).
- brier: binary tasks use scikit-learn's `brier_score_loss`, mean (p(positive) − y)²; multiclass
  tasks use the sum-of-squares form mean_n Σ_c (p_c − 1[y = c])² (for C = 2 that would be twice
  the binary value, hence the split).
- ece: top-label expected calibration error, Σ_b |B_b|/N · |accuracy_b − confidence_b|, with
  confidence the largest class probability and correctness of its argmax. `adaptive=False`: 15
  equal-width bins (lo, hi] over [0, 1] (confidence 0 falls in the first bin); `adaptive=True`:
  15 equal-mass bins over each model's sorted confidences, sizes as `numpy.array_split` (the first
  N mod B bins hold one sample more).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rashomon.metrics import validation as v

N_BINS = 15
PROB_FLOOR = 1e-12


def _checked(probs: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    p = v.check_probs(probs)
    return p, v.check_labels(y, p.shape[1], p.shape[2])


def nll(probs: Any, y: Any, class_weight: Any = None) -> np.ndarray:
    """[M] mean negative log-likelihood of each model; see the module docstring."""
    p, yy, multilabel = v.check_probs_and_targets(probs, y)
    w = v.check_class_weight(class_weight, p.shape[2])
    return _multilabel_nll(p, yy, w) if multilabel else _nll(p, yy, w)


def brier(probs: Any, y: Any) -> np.ndarray:
    """Brier score per model [M] of probabilities [M, N, C] against labels `y`."""
    p, yy = _checked(probs, y)
    return _brier(p, yy)


def ece(probs: Any, y: Any, n_bins: int = N_BINS, adaptive: bool = False) -> np.ndarray:
    """Expected calibration error per model [M]: top-class confidence in `n_bins` bins, of equal
    width or (`adaptive`) equal mass."""
    p, yy = _checked(probs, y)
    return _ece(p, yy, n_bins, adaptive)


def adaptive_ece(probs: Any, y: Any, n_bins: int = N_BINS) -> np.ndarray:
    """Expected calibration error per model [M] with equal-mass bins."""
    return ece(probs, y, n_bins=n_bins, adaptive=True)


# --------------------------------------------------------------------------- arithmetic


def _nll(p: np.ndarray, y: np.ndarray, class_weight: np.ndarray | None = None) -> np.ndarray:
    picked = np.take_along_axis(p, y[None, :, None].repeat(p.shape[0], 0), axis=2)[..., 0]
    per_patient = -np.log(np.maximum(picked, PROB_FLOOR))
    if class_weight is not None:
        per_patient = per_patient * class_weight[y][None]
    return per_patient.mean(axis=1)


def _multilabel_nll(
    p: np.ndarray, y: np.ndarray, pos_weight: np.ndarray | None = None
) -> np.ndarray:
    pc = np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR)
    pos = y * np.log(pc) * (1.0 if pos_weight is None else pos_weight)
    return -(pos + (1 - y) * np.log1p(-pc)).mean(axis=(1, 2))


def _brier(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    if p.shape[-1] == 2:
        return ((p[..., 1] - y[None, :]) ** 2).mean(axis=1)
    onehot = np.eye(p.shape[-1])[y]
    return ((p - onehot[None]) ** 2).sum(axis=2).mean(axis=1)


def _ece(p: np.ndarray, y: np.ndarray, n_bins: int, adaptive: bool) -> np.ndarray:
    conf = p.max(axis=2)
    correct = (p.argmax(axis=2) == y[None, :]).astype(np.float64)
    return ece_from_confidence(conf, correct, n_bins, adaptive)


def ece_from_confidence(
    conf: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS, adaptive: bool = False
) -> np.ndarray:
    """[M] ECE from confidences and 0/1 correctness, both [M, N]."""
    m, n = conf.shape
    if adaptive:
        order = np.argsort(conf, axis=1, kind="stable")
        sizes = np.full(n_bins, n // n_bins)
        sizes[: n % n_bins] += 1
        bins = np.broadcast_to(np.repeat(np.arange(n_bins), sizes), (m, n))
        conf = np.take_along_axis(conf, order, axis=1)
        correct = np.take_along_axis(correct, order, axis=1)
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins = np.searchsorted(edges[1:-1], conf, side="left")
    flat = (np.arange(m)[:, None] * n_bins + bins).ravel()
    size = m * n_bins
    conf_sum = np.bincount(flat, weights=conf.ravel(), minlength=size).reshape(m, n_bins)
    acc_sum = np.bincount(flat, weights=correct.ravel(), minlength=size).reshape(m, n_bins)
    # |Σ acc − Σ conf| / N per bin equals |B|/N · |acc_b − conf_b|.
    return np.abs(acc_sum - conf_sum).sum(axis=1) / n
