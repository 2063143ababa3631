"""Multi-objective selection: the validation Pareto front of accuracy vs a desideratum.

Model a dominates model b when a is at least as good on every objective and strictly better on
one. The front is the set of models no other model dominates (exact duplicates both stay). On the
front, the chosen model is the one with the best desideratum among front models whose validation
accuracy is within ``epsilon`` of the MAP model's (accuracy >= MAP accuracy - epsilon): accuracy
is traded for the desideratum only up to epsilon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.decide.desiderata import Desideratum
from rashomon.errors import RashomonError
from rashomon.metrics.validation import require_array


def pareto_front(objectives: Any, maximize: Sequence[bool] | None = None) -> np.ndarray:
    """Sorted indices of the non-dominated rows of ``objectives [M, K]`` (NaN rows excluded).

    ``maximize[j]`` says whether objective j is larger-is-better (default: all)."""
    obj = np.asarray(require_array(objectives, "objectives"), dtype=np.float64)
    if obj.ndim != 2:
        raise RashomonError(f"objectives must be [M, K], got shape {obj.shape}")
    mx = np.ones(obj.shape[1], bool) if maximize is None else np.asarray(maximize, bool)
    if mx.shape != (obj.shape[1],):
        raise RashomonError(f"maximize needs {obj.shape[1]} flags, got {len(mx)}")
    s = np.where(mx, obj, -obj)  # everything larger-is-better
    finite = np.isfinite(s).all(1)
    s = s[finite]
    # [M, M] comparisons per objective; for M = 1000 this is a few MB of booleans.
    ge = np.ones((len(s), len(s)), bool)
    gt = np.zeros((len(s), len(s)), bool)
    for j in range(s.shape[1]):
        col = s[:, j]
        ge &= col[:, None] >= col[None, :]
        gt |= col[:, None] > col[None, :]
    dominated = (ge & gt).any(0)  # column b is dominated by some row a
    return np.flatnonzero(finite)[~dominated]


def pareto_choice(
    val_accuracy: Any,
    val_value: Any,
    map_val_accuracy: float,
    *,
    higher_is_better: bool,
    epsilon: float = 0.01,
) -> tuple[np.ndarray, int | None]:
    """(front indices, chosen index or None when no front model is within epsilon of the MAP's
    validation accuracy)."""
    acc = np.asarray(require_array(val_accuracy, "val_accuracy"), dtype=np.float64)
    val = np.asarray(require_array(val_value, "val_value"), dtype=np.float64)
    front = pareto_front(np.stack([acc, val], 1), [True, higher_is_better])
    ok = front[acc[front] >= map_val_accuracy - epsilon - 1e-12]
    if len(ok) == 0:
        return front, None
    score = val[ok] if higher_is_better else -val[ok]
    return front, int(ok[np.argmax(score)])


def pareto_selection(
    val_values: pd.DataFrame | Mapping[str, Any],
    test_values: pd.DataFrame | Mapping[str, Any],
    map_val: Mapping[str, float],
    map_test: Mapping[str, float],
    desiderata: Sequence[Desideratum],
    *,
    accuracy: str = "accuracy",
    epsilon: float = 0.01,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For every desideratum other than ``accuracy``: the validation front of accuracy vs it and
    the chosen model (module docstring), judged on test.

    Returns (summary: one row per desideratum with n_front, chosen, chosen val/test accuracy and
    value, MAP's, oriented test gain of the value, test accuracy change; front: long table of
    front members, columns desideratum, model, val_accuracy, val_value, test_accuracy,
    test_value, chosen)."""
    if accuracy not in val_values or accuracy not in test_values:
        raise RashomonError(f"the Pareto front needs per-model {accuracy!r} on validation and test")
    va = np.asarray(val_values[accuracy], dtype=np.float64)
    ta = np.asarray(test_values[accuracy], dtype=np.float64)
    rows, members = [], []
    for d in desiderata:
        if d.name == accuracy:
            continue
        vv = np.asarray(val_values[d.name], dtype=np.float64)
        tv = np.asarray(test_values[d.name], dtype=np.float64)
        front, chosen = pareto_choice(
            va, vv, float(map_val[accuracy]), higher_is_better=d.higher_is_better, epsilon=epsilon
        )
        sign = 1.0 if d.higher_is_better else -1.0
        c = chosen if chosen is not None else None
        rows.append(
            {
                S.DESIDERATUM: d.name,
                S.HIGHER_IS_BETTER: d.higher_is_better,
                S.EPSILON: epsilon,
                S.N_FRONT: len(front),
                S.CHOSEN: -1 if c is None else c,
                S.CHOSEN_VAL_ACCURACY: np.nan if c is None else va[c],
                S.CHOSEN_VAL: np.nan if c is None else vv[c],
                S.CHOSEN_TEST_ACCURACY: np.nan if c is None else ta[c],
                S.CHOSEN_TEST: np.nan if c is None else tv[c],
                S.MAP_VAL_ACCURACY: float(map_val[accuracy]),
                S.MAP_VAL: float(map_val[d.name]),
                S.MAP_TEST_ACCURACY: float(map_test[accuracy]),
                S.MAP_TEST: float(map_test[d.name]),
                S.TEST_GAIN: np.nan if c is None else sign * (tv[c] - float(map_test[d.name])),
                S.TEST_ACCURACY_CHANGE: (
                    np.nan if c is None else ta[c] - float(map_test[accuracy])
                ),
            }
        )
        members.append(
            pd.DataFrame(
                {
                    S.DESIDERATUM: d.name,
                    S.MODEL: front,
                    S.VAL_ACCURACY: va[front],
                    S.VAL_VALUE: vv[front],
                    S.TEST_ACCURACY: ta[front],
                    S.TEST_VALUE: tv[front],
                    S.CHOSEN: front == (-1 if c is None else c),
                }
            )
        )
    columns = S.TABLES["pareto_front"].columns
    front_table = (
        pd.concat(members, ignore_index=True) if members else pd.DataFrame(columns=columns)
    )
    return pd.DataFrame(rows, columns=S.TABLES["pareto"].columns), front_table
