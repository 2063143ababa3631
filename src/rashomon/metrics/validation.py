"""Input checks for the metrics, kept apart from the arithmetic.

Every public metric calls one of the `check_*` functions first and then works on clean NumPy
arrays. Each problem raises `RashomonError` with a one-line message, kept here as a named
constant (fairlearn style) so tests and callers can match on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rashomon.errors import RashomonError

PROB_SUM_TOLERANCE = 1e-3

MISSING = "{name} is missing; pass an array"
NOT_FINITE = "{name} contains NaN or inf values; check the model outputs before auditing them"
PROBS_NDIM = (
    "{name} must be [M, N, C] (models, samples, classes), got shape {shape}; "
    "stack one [N, C] array per model along a new first axis"
)
PROBS_FEW_CLASSES = "{name} has {classes} class column(s); binary tasks need 2 columns [1 - p, p]"
PROBS_RANGE = "{name} has values outside [0, 1] (min {lo:.3g}, max {hi:.3g}); pass probabilities"
PROBS_NOT_NORMALISED = (
    "{name} rows sum to between {lo:.6g} and {hi:.6g}, not 1 (tolerance {tol:g}); "
    "pass softmax probabilities, not logits"
)
VECTOR_SHAPE = "{name} must be {want}, got shape {shape}"
PREDS_NDIM = "preds must be [M, N] integer labels (models, samples), got shape {shape}"
PREDS_NOT_INTEGER = "{name} must hold integer class labels, got dtype {dtype}; pass argmax labels"
REF_SHAPE = "ref must be [N] = [{n}] labels, one per sample, got shape {shape}"
LABELS_SHAPE = "{name} must be [N] = [{n}] labels, got shape {shape}; pass one label per sample"
LABELS_RANGE = (
    "{name} has labels outside [0, {classes}) (min {lo}, max {hi}); "
    "encode classes as 0..C-1 matching the probability columns"
)
NEGATIVE_LABELS = "{name} has negative labels (min {lo}); encode classes as 0..C-1"
MULTILABEL_SHAPE = "multilabel y must be [N, L] = [{n}, {labels}] of 0/1, got shape {shape}"
GROUPS_SHAPE = "groups {name!r} must be [N] = [{n}] integer codes, got shape {shape}"
ONE_GROUP = (
    "attribute {name!r} has only {count} group(s) in these samples; "
    "group metrics need >= 2 groups: use another attribute or a split that holds several"
)
FEW_MODELS = "{what} needs at least {need} models, got {got}; use a larger Rashomon set"
MODEL_COUNT_MISMATCH = "{what}: {a} models vs {b} models; pass sets of the same size"
SAMPLE_MISMATCH = "{what}: {a} samples vs {b} samples; pass arrays over the same samples"
THRESHOLD_RANGE = "threshold {t} is outside [0, 1]; pass a probability threshold"
TARGET_RANGE = "target sensitivity {t} is outside (0, 1]; pass e.g. 0.95"
NO_POSITIVES = "{what} needs positive samples in y, found none; use a split with positives"
UNKNOWN_KIND = "kind {kind!r} is unknown; use binary, multiclass or multilabel"
EMPTY = "{name} is empty; pass at least one sample and one model"
CLASS_WEIGHT = (
    "class_weight must hold {width} positive numbers (one per class or label), got {got}; "
    "pass the model's train_config['class_weight'] or None"
)


def as_numpy(x: Any) -> np.ndarray:
    """NumPy view of an array-like or torch tensor (moved to CPU, detached), without importing
    torch here."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def require_array(x: Any, name: str = "array") -> np.ndarray:
    """`as_numpy` of an input that must be given: None is refused with a message naming it."""
    if x is None:
        raise RashomonError(MISSING.format(name=name))
    return as_numpy(x)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise RashomonError(NOT_FINITE.format(name=name))


def _check_nonempty(arr: np.ndarray, name: str) -> None:
    if arr.size == 0:
        raise RashomonError(EMPTY.format(name=name))


def check_probs(probs: Any, multilabel: bool = False, name: str = "probs") -> np.ndarray:
    """[M, N, C] probabilities as float64. Rows must sum to 1 unless `multilabel` (then each
    column is the sigmoid probability of one label). `name` is the input's name in messages."""
    arr = require_array(probs, name)
    if arr.ndim != 3:
        raise RashomonError(PROBS_NDIM.format(name=name, shape=tuple(arr.shape)))
    _check_nonempty(arr, name)
    arr = arr.astype(np.float64, copy=False)
    _check_finite(arr, name)
    if not multilabel and arr.shape[2] < 2:
        raise RashomonError(PROBS_FEW_CLASSES.format(name=name, classes=arr.shape[2]))
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -PROB_SUM_TOLERANCE or hi > 1 + PROB_SUM_TOLERANCE:
        raise RashomonError(PROBS_RANGE.format(name=name, lo=lo, hi=hi))
    if not multilabel:
        sums = arr.sum(axis=2)
        if np.abs(sums - 1).max() > PROB_SUM_TOLERANCE:
            raise RashomonError(
                PROBS_NOT_NORMALISED.format(
                    name=name, lo=float(sums.min()), hi=float(sums.max()), tol=PROB_SUM_TOLERANCE
                )
            )
    return np.clip(arr, 0.0, 1.0)


def check_ref_probs(ref_probs: Any, n: int, multilabel: bool = False) -> np.ndarray:
    """[N, C] probabilities of the MAP model, checked as a one-model set."""
    arr = as_numpy(ref_probs)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise RashomonError(SAMPLE_MISMATCH.format(what="ref_probs vs probs", a=arr.shape[0], b=n))
    return check_probs(arr[None], multilabel=multilabel)[0]


def _check_integer(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        _check_finite(arr, name)
        if not np.array_equal(arr, np.round(arr)):
            raise RashomonError(PREDS_NOT_INTEGER.format(name=name, dtype=arr.dtype))
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise RashomonError(PREDS_NOT_INTEGER.format(name=name, dtype=arr.dtype))
    return arr.astype(np.int64, copy=False)


def check_preds(preds: Any, name: str = "preds") -> np.ndarray:
    """[M, N] integer labels as int64."""
    arr = as_numpy(preds)
    if arr.ndim != 2:
        raise RashomonError(PREDS_NDIM.format(shape=tuple(arr.shape)))
    _check_nonempty(arr, name)
    arr = _check_integer(arr, name)
    if arr.min() < 0:
        raise RashomonError(NEGATIVE_LABELS.format(name=name, lo=int(arr.min())))
    return arr


def check_ref(ref: Any, n: int) -> np.ndarray:
    """[N] integer labels of the reference (MAP) model."""
    arr = as_numpy(ref)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise RashomonError(REF_SHAPE.format(n=n, shape=tuple(arr.shape)))
    arr = _check_integer(arr, "ref")
    if arr.size and arr.min() < 0:
        raise RashomonError(NEGATIVE_LABELS.format(name="ref", lo=int(arr.min())))
    return arr


def check_labels(y: Any, n: int, num_classes: int, name: str = "y") -> np.ndarray:
    """[N] integer labels in [0, num_classes)."""
    arr = as_numpy(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise RashomonError(LABELS_SHAPE.format(name=name, n=n, shape=tuple(arr.shape)))
    arr = _check_integer(arr, name)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= num_classes:
        raise RashomonError(LABELS_RANGE.format(name=name, classes=num_classes, lo=lo, hi=hi))
    return arr


def check_multilabel_targets(y: Any, n: int, num_labels: int) -> np.ndarray:
    """[N, L] 0/1 targets."""
    arr = as_numpy(y)
    if arr.ndim != 2 or arr.shape != (n, num_labels):
        raise RashomonError(MULTILABEL_SHAPE.format(n=n, labels=num_labels, shape=arr.shape))
    arr = _check_integer(arr, "y")
    if arr.min() < 0 or arr.max() > 1:
        raise RashomonError(
            LABELS_RANGE.format(name="y", classes=2, lo=int(arr.min()), hi=int(arr.max()))
        )
    return arr


def check_probs_and_targets(probs: Any, y: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """(probabilities, targets, multilabel?): [M, N, C] softmax probabilities with [N] labels (or
    one [N, 1] label column), or [M, N, L] sigmoid probabilities with [N, L] 0/1 targets."""
    arr = require_array(probs, "probs")
    shape = np.shape(as_numpy(y))
    width = arr.shape[-1] if arr.ndim else 0
    multilabel = len(shape) == 2 and not (shape[1] == 1 and width > 1)
    p = check_probs(arr, multilabel=multilabel)
    if multilabel:
        return p, check_multilabel_targets(y, p.shape[1], p.shape[2]), True
    return p, check_labels(y, p.shape[1], p.shape[2]), False


def check_class_weight(class_weight: Any, width: int) -> np.ndarray | None:
    """Training class weights [C] (or per-label positive weights [L]) as float64; None stays
    None (unweighted)."""
    if class_weight is None:
        return None
    w = np.asarray(as_numpy(class_weight), dtype=np.float64).reshape(-1)
    if w.shape != (width,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise RashomonError(CLASS_WEIGHT.format(width=width, got=w.tolist()))
    return w


def check_vector(x: Any, n: int | None, name: str) -> np.ndarray:
    """A 1-D array of `n` entries (any length when `n` is None), dtype as given."""
    arr = require_array(x, name)
    if arr.ndim != 1 or (n is not None and len(arr) != n):
        want = f"[{n}]" if n is not None else "1-D"
        raise RashomonError(VECTOR_SHAPE.format(name=name, want=want, shape=arr.shape))
    return arr


def check_groups(groups: Any, n: int, name: str = "groups") -> np.ndarray:
    """[N] integer group codes holding at least two distinct groups."""
    arr = as_numpy(groups)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise RashomonError(GROUPS_SHAPE.format(name=name, n=n, shape=tuple(arr.shape)))
    arr = _check_integer(arr, name)
    count = int(np.unique(arr).size)
    if count < 2:
        raise RashomonError(ONE_GROUP.format(name=name, count=count))
    return arr


def check_threshold(threshold: float) -> float:
    """`threshold` as a float in [0, 1]; anything else is a RashomonError."""
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise RashomonError(THRESHOLD_RANGE.format(t=threshold))
    return t


def check_kind(kind: str) -> str:
    """`kind` when it is binary, multiclass or multilabel; anything else is a RashomonError."""
    if kind not in ("binary", "multiclass", "multilabel"):
        raise RashomonError(UNKNOWN_KIND.format(kind=kind))
    return kind


def require_models(m: int, need: int, what: str) -> None:
    """Refuse fewer than `need` models for `what`."""
    if m < need:
        raise RashomonError(FEW_MODELS.format(what=what, need=need, got=m))


def require_same_samples(a: int, b: int, what: str) -> None:
    """Refuse two arrays whose sample counts `a` and `b` differ."""
    if a != b:
        raise RashomonError(SAMPLE_MISMATCH.format(what=what, a=a, b=b))
