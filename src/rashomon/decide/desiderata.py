"""Desiderata as per-split metric functions ``metric(probs [N, C], y [N], groups) -> float``.

Selection needs each metric as a function of one model's test probabilities so that test patients
can be resampled (bootstrap CI of the gain). These are small, self-contained definitions; any
callable with the same signature (e.g. from ``rashomon.metrics``) can replace them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rashomon import metrics as rm
from rashomon.errors import RashomonError
from rashomon.metrics.validation import check_probs, check_vector, require_array

Metric = Callable[[np.ndarray, np.ndarray, Mapping[str, np.ndarray]], float]


@dataclass(frozen=True)
class Desideratum:
    """A named property of a model; ``metric`` evaluates one model on one split (needed for the
    bootstrap CI; without it selection still runs, minus the CI)."""

    name: str
    higher_is_better: bool
    metric: Metric | None = None


# One model's value of the per-model metrics of `rashomon.metrics`, so selection ranks models by
# exactly the numbers the evaluate stage reports.
def accuracy(probs: np.ndarray, y: np.ndarray, groups: Mapping[str, np.ndarray] | None = None):
    """Accuracy of one model's probabilities [N, C] on labels `y` (`groups` unused)."""
    return float(rm.accuracy(probs[None], y)[0])


def balanced_accuracy(probs, y, groups=None) -> float:
    """Balanced accuracy of one model's probabilities [N, C] (`groups` unused)."""
    return float(rm.balanced_accuracy(probs[None], y)[0])


def nll(probs, y, groups=None) -> float:
    """Negative log-likelihood of one model's probabilities [N, C] (`groups` unused)."""
    return float(rm.nll(probs[None], y)[0])


def brier(probs, y, groups=None) -> float:
    """Brier score of one model's probabilities [N, C] (`groups` unused)."""
    return float(rm.brier(probs[None], y)[0])


def ece(probs, y, groups=None) -> float:
    """Expected calibration error of the top-class confidence, 15 equal-width bins."""
    return float(rm.ece(probs[None], y)[0])


def tpr_gap(attribute: str, positive: int = 1) -> Metric:
    """Largest difference in true-positive rate (sensitivity) between groups of ``attribute``
    (equal-opportunity gap); groups without positives are skipped, NaN if fewer than two remain."""

    def metric(probs, y, groups) -> float:
        g = np.asarray(groups[attribute])
        pred = probs.argmax(-1)
        rates = [
            (pred[(g == v) & (y == positive)] == positive).mean()
            for v in np.unique(g)
            if ((g == v) & (y == positive)).any()
        ]
        return float(max(rates) - min(rates)) if len(rates) > 1 else float("nan")

    metric.__name__ = f"tpr_gap_{attribute}"
    return metric


def dp_gap(attribute: str, positive: int = 1) -> Metric:
    """Largest difference in positive-prediction rate between groups (demographic parity gap)."""

    def metric(probs, y, groups) -> float:
        g = np.asarray(groups[attribute])
        pred = probs.argmax(-1) == positive
        rates = [pred[g == v].mean() for v in np.unique(g)]
        return float(max(rates) - min(rates)) if len(rates) > 1 else float("nan")

    metric.__name__ = f"dp_gap_{attribute}"
    return metric


def worst_group_accuracy(attribute: str) -> Metric:
    """A metric: the lowest accuracy over the levels of `attribute`."""

    def metric(probs, y, groups) -> float:
        g = np.asarray(groups[attribute])
        pred = probs.argmax(-1)
        return float(min((pred[g == v] == y[g == v]).mean() for v in np.unique(g)))

    metric.__name__ = f"worst_group_accuracy_{attribute}"
    return metric


def default_desiderata(attributes: Sequence[str] = (), num_classes: int = 2) -> list[Desideratum]:
    """Accuracy, balanced accuracy, NLL, Brier, ECE, and per attribute the worst-group accuracy
    (plus TPR and demographic-parity gaps for binary tasks)."""
    out = [
        Desideratum("accuracy", True, accuracy),
        Desideratum("balanced_accuracy", True, balanced_accuracy),
        Desideratum("nll", False, nll),
        Desideratum("brier", False, brier),
        Desideratum("ece", False, ece),
    ]
    for a in attributes:
        out.append(Desideratum(f"worst_group_accuracy:{a}", True, worst_group_accuracy(a)))
        if num_classes == 2:
            out.append(Desideratum(f"tpr_gap:{a}", False, tpr_gap(a)))
            out.append(Desideratum(f"dp_gap:{a}", False, dp_gap(a)))
    return out


def metric_table(
    probs: Any,
    y: Any,
    groups: Mapping[str, Any] | None,
    desiderata: Sequence[Desideratum],
) -> pd.DataFrame:
    """Per-model values ``[M rows x desiderata]`` of every desideratum with a metric function."""
    p = check_probs(probs)
    yy = check_vector(y, p.shape[1], "y").astype(np.int64)
    gg = {k: check_vector(v, p.shape[1], f"groups[{k!r}]") for k, v in (groups or {}).items()}
    cols = {}
    for d in desiderata:
        if d.metric is None:
            raise RashomonError(f"desideratum {d.name!r} has no metric function; give one")
        cols[d.name] = [d.metric(p[m], yy, gg) for m in range(p.shape[0])]
    return pd.DataFrame(cols)


def single_model_values(probs: Any, y: Any, groups, desiderata) -> dict[str, float]:
    """The desiderata of one model (``probs [N, C]``), e.g. the MAP model."""
    p = require_array(probs, "probs")
    return metric_table(p[None], y, groups, desiderata).iloc[0].to_dict()
