"""One row per model, one column per metric: the table the evaluate stage writes per set.

    table = per_model_table(probs, y, groups={"intensity": codes, "random": codes2},
                            attributes_derived={"intensity": True, "random": True},
                            threshold=0.5, kind="binary")

Column names:
- overall metrics: accuracy, balanced_accuracy, auroc, auprc, sensitivity, specificity (binary),
  nll, brier, ece, ece_adaptive;
- per group: `{metric}[{attribute}={level}]` for accuracy, tpr, fpr, selection_rate, auroc, ece
  (multiclass: accuracy, auroc, ece);
- gaps per attribute: `{gap}[{attribute}]` (demographic_parity_diff, tpr_gap, fpr_gap,
  equalized_odds_diff, auroc_gap, accuracy_gap, ece_gap, worst_group_auroc, worst_group_accuracy);
- multilabel tasks ([M, N, L] sigmoid probabilities, y [N, L]) are audited per label as binary
  tasks: every column above gets a `label{l}.` prefix, and the unprefixed overall columns are the
  means over labels (so `auroc` is the per-label mean AUROC).
Which attributes are derived (proxies, null controls) travels in `table.attrs
["attributes_derived"]`; `spread_table` writes it into its `derived` column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rashomon.metrics import validation as v
from rashomon.metrics.calibration import N_BINS, _brier, _ece, _nll
from rashomon.metrics.fairness import _group_metrics, _level_name, gaps_from_group_metrics
from rashomon.metrics.performance import (
    _accuracy,
    _auroc,
    _average_precision,
    _balanced_accuracy,
    _nanmean_rows,
    _rate,
    decisions,
)

COLUMN_PATTERN = re.compile(r"^(?P<metric>[^\[\]]+?)(?:\[(?P<group>[^\]]+)\])?$")


def split_column(name: str) -> tuple[str, str | None, str | None]:
    """`metric[attr=level]` → (metric, attr, level); `metric[attr]` → (metric, attr, None);
    `metric` → (metric, None, None)."""
    match = COLUMN_PATTERN.match(name)
    if match is None or match.group("group") is None:
        return name, None, None
    attr, _, level = match.group("group").partition("=")
    return match.group("metric"), attr, (level if level else None)


def per_model_table(
    probs: Any,
    y: Any,
    groups: Mapping[str, Any] | None = None,
    attributes_derived: Mapping[str, bool] | None = None,
    threshold: float = 0.5,
    kind: str = "binary",
    level_names: Mapping[str, Sequence[str]] | None = None,
    n_bins: int = N_BINS,
) -> pd.DataFrame:
    """Per-model performance, calibration, per-group metrics and gaps (see module docstring)."""
    kind = v.check_kind(kind)
    t = v.check_threshold(threshold)
    multilabel = kind == "multilabel"
    p = v.check_probs(probs, multilabel=multilabel)
    n = p.shape[1]
    groups_np = {a: v.check_groups(g, n, a) for a, g in (groups or {}).items()}
    names = dict(level_names or {})
    if multilabel:
        yy = v.check_multilabel_targets(y, n, p.shape[2])
        parts: dict[str, np.ndarray] = {}
        overall: dict[str, list[np.ndarray]] = {}
        for label in range(p.shape[2]):
            pl = np.stack([1.0 - p[..., label], p[..., label]], axis=-1)
            cols = _columns(pl, yy[:, label], groups_np, names, t, n_bins)
            for name, values in cols.items():
                parts[f"label{label}.{name}"] = values
                if split_column(name)[1] is None:
                    overall.setdefault(name, []).append(values)
        columns = {name: _nanmean_rows(np.stack(vals, axis=1)) for name, vals in overall.items()}
        columns.update(parts)
    else:
        yy = v.check_labels(y, n, p.shape[2])
        columns = _columns(p, yy, groups_np, names, t, n_bins)
    table = pd.DataFrame(columns)
    table.index.name = "model"
    table.attrs["attributes_derived"] = {
        a: bool((attributes_derived or {}).get(a, False)) for a in groups_np
    }
    table.attrs["kind"] = kind
    return table


def _columns(
    p: np.ndarray,
    y: np.ndarray,
    groups: dict[str, np.ndarray],
    level_names: dict[str, Sequence[str]],
    threshold: float,
    n_bins: int,
) -> dict[str, np.ndarray]:
    d = decisions(p, threshold)
    cols: dict[str, np.ndarray] = {
        "accuracy": _accuracy(d, y),
        "balanced_accuracy": _balanced_accuracy(d, y),
        "auroc": _auroc(p, y),
        "auprc": _average_precision(p, y),
    }
    if p.shape[-1] == 2:
        cols["sensitivity"] = _rate(d, y, positive=1)
        cols["specificity"] = 1.0 - _rate(d, y, positive=0)
    cols["nll"] = _nll(p, y)
    cols["brier"] = _brier(p, y)
    cols["ece"] = _ece(p, y, n_bins, adaptive=False)
    cols["ece_adaptive"] = _ece(p, y, n_bins, adaptive=True)
    for attr, g in groups.items():
        codes, per_group = _group_metrics(p, y, g, threshold, n_bins)
        for metric, arr in per_group.items():
            for j, code in enumerate(codes):
                level = _level_name(int(code), level_names.get(attr))
                cols[f"{metric}[{attr}={level}]"] = arr[:, j]
        for gap, values in gaps_from_group_metrics(per_group).items():
            cols[f"{gap}[{attr}]"] = values
    return cols
