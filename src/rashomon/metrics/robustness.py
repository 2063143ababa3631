"""Robustness arithmetic on arrays: per-model accuracy and AUROC of any task kind, per-patient
correctness, and corruption errors (Hendrycks & Dietterich, ICLR 2019).

- `corruption_errors`: CE_c(f) = Σ_s E_{s,c}(f) / Σ_s E_{s,c}(baseline), errors E = 1 − accuracy
  over the severities s audited; with the MAP model as the baseline (their AlexNet) its CE is 1.
- `mean_corruption_error`: mCE, the mean of CE_c over corruptions. Below 1 = more robust than
  the baseline.
- `relative_corruption_errors`: Σ_s (E_{s,c}(f) − E_clean(f)) / Σ_s (E_{s,c}(baseline) −
  E_clean(baseline)), the degradation relative to the model's own clean error; NaN for a
  corruption whose baseline degradation is ≤ 0 (the ratio has no meaning there).

Corrupting images, running networks on them and attacking them is the evaluate stage's
(`rashomon.evaluate.robustness`, whose `robustness_tables` says what each number of the
robustness table is).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rashomon.errors import RashomonError
from rashomon.metrics import validation as v
from rashomon.metrics.performance import accuracy as _accuracy
from rashomon.metrics.performance import auroc as _auroc
from rashomon.metrics.performance import multilabel_auroc

# The robustness table and the functions that fill it moved to rashomon.evaluate.robustness:
# they run networks, which this package of array arithmetic does not import.
_MOVED = ("COLUMNS", "MAP_INDEX", "head_set_probs", "robustness_tables", "whitebox_subset")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        # ImportError, not AttributeError: `from ... import` would replace the message
        raise ImportError(
            f"rashomon.metrics.robustness.{name} moved to rashomon.evaluate.robustness; "
            "import it from there"
        )
    raise AttributeError(f"module 'rashomon.metrics.robustness' has no attribute {name!r}")


def multilabel_accuracy(probs: Any, y: Any, threshold: float = 0.5) -> np.ndarray:
    """[M] share of (sample, label) pairs decided right, for [M, N, L] sigmoid probabilities."""
    p = v.check_probs(probs, multilabel=True)
    yy = v.check_multilabel_targets(y, p.shape[1], p.shape[2])
    return ((p >= v.check_threshold(threshold)) == yy[None].astype(bool)).mean(axis=(1, 2))


def model_accuracy(probs: Any, y: Any, kind: str) -> np.ndarray:
    """[M] accuracy; multilabel tasks count each label of each sample."""
    if v.check_kind(kind) == "multilabel":
        return multilabel_accuracy(probs, y)
    return _accuracy(probs, y)


def model_auroc(probs: Any, y: Any, kind: str) -> np.ndarray:
    """[M] AUROC (binary; one-vs-rest macro for multiclass; mean over labels for multilabel)."""
    if v.check_kind(kind) == "multilabel":
        return multilabel_auroc(probs, y)
    return _auroc(probs, y)


def patient_correct(probs: Any, y: Any, kind: str) -> np.ndarray:
    """[M, N] per-patient correctness: 1/0 for a label, the share of labels right (multilabel)."""
    if v.check_kind(kind) == "multilabel":
        p = v.check_probs(probs, multilabel=True)
        yy = v.check_multilabel_targets(y, p.shape[1], p.shape[2])
        return ((p >= 0.5) == yy[None].astype(bool)).mean(axis=2)
    p = v.check_probs(probs)
    yy = v.check_labels(y, p.shape[1], p.shape[2])
    return (p.argmax(-1) == yy[None]).astype(np.float64)


def _check_errors(errors: Any, baseline: Any) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(v.as_numpy(errors), dtype=np.float64)
    b = np.asarray(v.as_numpy(baseline), dtype=np.float64)
    if e.ndim != 3 or b.shape != e.shape[1:]:
        raise RashomonError(
            f"errors must be [M, K, S] and the baseline [K, S]; got {e.shape} and {b.shape}"
        )
    if ((e < 0) | (e > 1)).any() or ((b < 0) | (b > 1)).any():
        raise RashomonError("errors must be error rates in [0, 1]; pass 1 - accuracy")
    return e, b


def corruption_errors(errors: Any, baseline: Any) -> np.ndarray:
    """CE [M, K]: Σ_s errors[m, k, s] / Σ_s baseline[k, s] (Hendrycks & Dietterich, 2019).

    `errors` [M, K, S] are the models' error rates under K corruptions at S severities,
    `baseline` [K, S] the baseline model's. A corruption on which the baseline makes no error
    at any severity gives NaN."""
    e, b = _check_errors(errors, baseline)
    denom = b.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, e.sum(axis=2) / denom, np.nan)


def mean_corruption_error(errors: Any, baseline: Any) -> np.ndarray:
    """mCE [M]: the mean of `corruption_errors` over corruptions (NaNs skipped)."""
    return mean_over_corruptions(corruption_errors(errors, baseline))


def relative_corruption_errors(
    errors: Any, clean_errors: Any, baseline: Any, baseline_clean: float
) -> np.ndarray:
    """Relative CE [M, K]: Σ_s (errors[m,k,s] − clean_errors[m]) / Σ_s (baseline[k,s] −
    baseline_clean); NaN where the baseline's summed degradation is ≤ 0."""
    e, b = _check_errors(errors, baseline)
    c = np.asarray(v.as_numpy(clean_errors), dtype=np.float64)
    if c.shape != e.shape[:1]:
        raise RashomonError(f"clean_errors must be [M] = [{e.shape[0]}], got shape {c.shape}")
    num = (e - c[:, None, None]).sum(axis=2)
    denom = (b - float(baseline_clean)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, num / denom, np.nan)


def mean_over_corruptions(a: np.ndarray) -> np.ndarray:
    """[M] mean over the last axis of per-corruption values [M, K] (CE or relative CE), NaNs
    skipped; NaN where every value is."""
    finite = np.isfinite(a)
    counts = finite.sum(axis=-1)
    sums = np.where(finite, a, 0.0).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
