"""The empirical Rashomon set: models whose VALIDATION loss or accuracy is within ε of a
reference (the MAP model), and how many of M survive each ε.

Pure functions of arrays (NumPy or torch in, NumPy out). `probs` is [M, N, C] softmax
probabilities, or [M, N, L] sigmoid probabilities for multilabel tasks (then `y` is [N, L] and
loss/accuracy are averaged over labels).

The loss is the one the MAP model was trained on: with `class_weight` (the model's
`train_config["class_weight"]`, recorded by the sample stage) each patient's NLL counts with its
class's weight, as in training (multilabel: the weight multiplies the positive term, as
`BCEWithLogitsLoss(pos_weight=...)` does), so "as good as the trained model" means as good on
the objective it was trained to minimise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rashomon.errors import RashomonError
from rashomon.metrics import validation as v
from rashomon.metrics.calibration import nll

ON = ("loss", "accuracy")
DEFAULT_EPSILONS = (0.005, 0.01, 0.02, 0.05)
# The smallest Rashomon set: multiplicity needs at least two models to compare.
MIN_SET_MODELS = 2


def model_scores(probs: Any, y: Any, class_weight: Any = None) -> dict[str, np.ndarray]:
    """Per-model mean NLL ("loss", `rashomon.metrics.calibration.nll`) and accuracy, each
    float64 [M]. y [N] ints: softmax probabilities; y [N, L] 0/1: sigmoid probabilities per label
    (multilabel). `class_weight` [C] (or [L]) weights each patient's NLL as the training loss did
    (None: unweighted). A model whose probabilities are not all finite (weights so far out that
    its outputs overflow) scores NaN on both, so that no bound keeps it."""
    arr = v.require_array(probs, "probs")
    if arr.ndim == 3 and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        finite = np.isfinite(arr).all(axis=(1, 2))
        out = {key: np.full(len(arr), np.nan) for key in ("loss", "accuracy")}
        if finite.any():
            for key, value in model_scores(arr[finite], y, class_weight).items():
                out[key][finite] = value
        return out
    p, yy, multilabel = v.check_probs_and_targets(arr, y)
    loss = nll(p, yy, class_weight)
    if multilabel:
        acc = ((p > 0.5) == (yy > 0.5)).mean(axis=(1, 2))
    else:
        acc = (p.argmax(axis=2) == yy[None]).mean(axis=1)
    return {"loss": loss, "accuracy": acc}


def _reference(
    scores: np.ndarray, ref: Any, y: np.ndarray, on: str, class_weight: Any = None
) -> float:
    """The reference value: MAP probabilities [N, C] → their score; a number → itself;
    None → the best model of the set (lowest loss / highest accuracy)."""
    if ref is None:
        return float(scores.min() if on == "loss" else scores.max())
    arr = v.as_numpy(ref)
    if arr.ndim == 0:
        return float(arr)
    if arr.ndim == 2:
        arr = arr[None]
    return float(model_scores(arr, y, class_weight)[on][0])


def threshold(ref_value: float, epsilon: float, on: str, relative: bool) -> float:
    """The loss a model may not exceed, or the accuracy it must reach."""
    if on == "loss":
        return ref_value * (1 + epsilon) if relative else ref_value + epsilon
    return ref_value * (1 - epsilon) if relative else ref_value - epsilon


def _validate(epsilon: float, on: str) -> None:
    if on not in ON:
        raise RashomonError(f"unknown criterion on={on!r}; choose one of: {', '.join(ON)}")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise RashomonError(f"epsilon must be a non-negative number, got {epsilon}")


def rashomon_mask(
    P_val: Any,
    y_val: Any,
    epsilon: float,
    on: str = "loss",
    relative: bool = True,
    ref: Any = None,
    min_models: int = MIN_SET_MODELS,
    class_weight: Any = None,
) -> np.ndarray:
    """Boolean [M]: models whose validation loss (mean NLL) is at most ref·(1+ε) (relative) or
    ref+ε (absolute), or whose accuracy is at least ref·(1−ε) or ref−ε.

    `ref`: the MAP model's validation probabilities [N, C] (recommended) or its score; None uses
    the best model of the set. `class_weight`: the MAP model's training class weights (the loss
    is then the class-weighted NLL it was trained on). Filter on validation data only, never on
    test data.
    Fewer than `min_models` kept raises RashomonError (min_models=0 never raises).
    """
    _validate(epsilon, on)
    y = v.as_numpy(y_val)
    scores = model_scores(P_val, y, class_weight)[on]
    bound = threshold(_reference(scores, ref, y, on, class_weight), epsilon, on, relative)
    # Tolerance: the MAP model's own score recomputed from stored float32 probabilities must
    # pass its own bound.
    tol = 1e-9 * max(1.0, abs(bound))
    keep = scores <= bound + tol if on == "loss" else scores >= bound - tol
    if int(keep.sum()) < min_models:
        raise RashomonError(
            f"epsilon {epsilon} on {on} keeps {int(keep.sum())} of {len(keep)} models; "
            "use a larger epsilon or more models"
        )
    return keep


def survival_table(
    P_val: Any,
    y_val: Any,
    map_probs: Any = None,
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    on: str | Sequence[str] = ("loss", "accuracy"),
    relative: bool = True,
    class_weight: Any = None,
) -> list[dict[str, Any]]:
    """How many of M models survive each ε (rows: epsilon, on, models_in_set, models, threshold)."""
    y = v.as_numpy(y_val)
    crits = [on] if isinstance(on, str) else list(on)
    all_scores = model_scores(P_val, y, class_weight)
    rows = []
    for crit in crits:
        for eps in epsilons:
            _validate(eps, crit)
            scores = all_scores[crit]
            ref_value = _reference(scores, map_probs, y, crit, class_weight)
            bound = threshold(ref_value, eps, crit, relative)
            tol = 1e-9 * max(1.0, abs(bound))
            keep = scores <= bound + tol if crit == "loss" else scores >= bound - tol
            rows.append(
                {
                    "epsilon": float(eps),
                    "on": crit,
                    "models_in_set": int(keep.sum()),
                    "models": int(len(keep)),
                    "threshold": float(bound),
                }
            )
    return rows
