"""Per-group metrics and fairness gaps, vectorised over the M models of a set.

`probs` [M, N, C], `y` [N], `groups` [N] integer codes of one attribute (at least two groups
present, else RashomonError). Binary decisions are p(positive) >= threshold.

Per group ([M, G] arrays, groups in sorted code order): accuracy, tpr, fpr, selection_rate (share
decided positive), auroc, ece (15 equal-width bins) for binary tasks; accuracy, auroc
(one-vs-rest macro) and ece for multiclass tasks. A rate whose denominator is empty in a group
(e.g. TPR without positives) is NaN and the gaps ignore it.

Gaps ([M]), all max over groups minus min over groups, as fairlearn's `between_groups`:
- demographic_parity_diff: selection rate gap (fairlearn `demographic_parity_difference`);
- tpr_gap: equal opportunity difference; fpr_gap;
- equalized_odds_diff: max(tpr_gap, fpr_gap) (fairlearn `equalized_odds_difference`);
- auroc_gap, accuracy_gap, ece_gap; worst_group_auroc and worst_group_accuracy (the minimum).

Attributes computed from images or at random (`intensity`, `random`) are proxies or null
controls, not demographics: `group_table` and `gap_table` take `attribute_label` and `derived`
and write both into every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rashomon.metrics import validation as v
from rashomon.metrics.calibration import N_BINS, ece_from_confidence
from rashomon.metrics.performance import _auroc, _rate, decisions

BINARY_GROUP_METRICS = ("accuracy", "tpr", "fpr", "selection_rate", "auroc", "ece")
MULTICLASS_GROUP_METRICS = ("accuracy", "auroc", "ece")


def group_metrics(
    probs: Any, y: Any, groups: Any, threshold: float = 0.5, n_bins: int = N_BINS
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(group codes [G], {metric: [M, G]}) for one attribute."""
    p = v.check_probs(probs)
    yy = v.check_labels(y, p.shape[1], p.shape[2])
    g = v.check_groups(groups, p.shape[1])
    return _group_metrics(p, yy, g, v.check_threshold(threshold), n_bins)


def fairness_gaps(
    probs: Any, y: Any, groups: Any, threshold: float = 0.5, n_bins: int = N_BINS
) -> dict[str, np.ndarray]:
    """{gap name: [M]} for one attribute (see module docstring)."""
    _, per_group = group_metrics(probs, y, groups, threshold, n_bins)
    return gaps_from_group_metrics(per_group)


def _group_metrics(
    p: np.ndarray, y: np.ndarray, g: np.ndarray, threshold: float, n_bins: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    binary = p.shape[-1] == 2
    d = decisions(p, threshold)
    conf = p.max(axis=2)
    correct = (p.argmax(axis=2) == y[None, :]).astype(np.float64)
    codes = np.unique(g)
    names = BINARY_GROUP_METRICS if binary else MULTICLASS_GROUP_METRICS
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for code in codes:
        mask = g == code
        dg, yg = d[:, mask], y[mask]
        columns["accuracy"].append((dg == yg[None, :]).mean(axis=1))
        columns["auroc"].append(_auroc(p[:, mask], yg))
        columns["ece"].append(ece_from_confidence(conf[:, mask], correct[:, mask], n_bins))
        if binary:
            columns["tpr"].append(_rate(dg, yg, positive=1))
            columns["fpr"].append(_rate(dg, yg, positive=0))
            columns["selection_rate"].append(dg.mean(axis=1))
    return codes, {name: np.stack(cols, axis=1) for name, cols in columns.items()}


def _spread(a: np.ndarray) -> np.ndarray:
    """max − min over groups, ignoring NaN; NaN when fewer than two groups are defined."""
    finite = np.isfinite(a)
    hi = np.where(finite, a, -np.inf).max(axis=1)
    lo = np.where(finite, a, np.inf).min(axis=1)
    return np.where(finite.sum(axis=1) >= 2, hi - lo, np.nan)


def _worst(a: np.ndarray) -> np.ndarray:
    finite = np.isfinite(a)
    lo = np.where(finite, a, np.inf).min(axis=1)
    return np.where(finite.any(axis=1), lo, np.nan)


def gaps_from_group_metrics(per_group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-model gaps between groups (parity, TPR / FPR, equalized odds, AUROC, accuracy, ECE) and
    worst-group values, from per-group metrics."""
    gaps: dict[str, np.ndarray] = {}
    if "selection_rate" in per_group:
        gaps["demographic_parity_diff"] = _spread(per_group["selection_rate"])
        gaps["tpr_gap"] = _spread(per_group["tpr"])
        gaps["fpr_gap"] = _spread(per_group["fpr"])
        gaps["equalized_odds_diff"] = np.fmax(gaps["tpr_gap"], gaps["fpr_gap"])
    gaps["auroc_gap"] = _spread(per_group["auroc"])
    gaps["accuracy_gap"] = _spread(per_group["accuracy"])
    gaps["ece_gap"] = _spread(per_group["ece"])
    gaps["worst_group_auroc"] = _worst(per_group["auroc"])
    gaps["worst_group_accuracy"] = _worst(per_group["accuracy"])
    return gaps


def _level_name(code: int, level_names: Sequence[str] | None) -> str:
    if level_names is not None and 0 <= code < len(level_names):
        return str(level_names[code])
    return str(code)


def group_table(
    probs: Any,
    y: Any,
    groups: Any,
    attribute_label: str,
    derived: bool,
    level_names: Sequence[str] | None = None,
    threshold: float = 0.5,
    n_bins: int = N_BINS,
) -> pd.DataFrame:
    """Long table of per-group metrics: model, attribute, derived, group, n, metric, value."""
    g = v.check_groups(groups, v.as_numpy(probs).shape[1], attribute_label)
    codes, per_group = group_metrics(probs, y, g, threshold, n_bins)
    counts = {int(c): int((g == c).sum()) for c in codes}
    frames = []
    for metric, arr in per_group.items():
        m, n_groups = arr.shape
        frames.append(
            pd.DataFrame(
                {
                    "model": np.repeat(np.arange(m), n_groups),
                    "group": np.tile([_level_name(int(c), level_names) for c in codes], m),
                    "n": np.tile([counts[int(c)] for c in codes], m),
                    "metric": metric,
                    "value": arr.ravel(),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    table.insert(1, "attribute", attribute_label)
    table.insert(2, "derived", bool(derived))
    return table


def gap_table(
    probs: Any,
    y: Any,
    groups: Any,
    attribute_label: str,
    derived: bool,
    threshold: float = 0.5,
    n_bins: int = N_BINS,
) -> pd.DataFrame:
    """Wide table, one row per model: model, attribute, derived, then one column per gap."""
    g = v.check_groups(groups, v.as_numpy(probs).shape[1], attribute_label)
    gaps = fairness_gaps(probs, y, g, threshold, n_bins)
    table = pd.DataFrame(gaps)
    table.insert(0, "model", np.arange(len(table)))
    table.insert(1, "attribute", attribute_label)
    table.insert(2, "derived", bool(derived))
    return table
