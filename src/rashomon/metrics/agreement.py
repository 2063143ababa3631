"""How far one model set's multiplicity agrees with another's, the reference (the retrained set,
the ground truth of the validity study): pure functions of the sets' test probabilities.

- `set_multiplicity`: ambiguity, discrepancy, mean disagreement and mean Rashomon capacity of a
  set against its MAP model, with the per-patient disagreement and "arbitrary patient" flags (at
  least one model of the set flips the MAP model's label);
- `flag_agreement`: precision and recall of a set's flags against the reference's;
- `rank_agreement`: Spearman rank correlation of per-patient values (disagreement);
- `desideratum_spread`: max − min over a set's models of each desideratum;
- `compare_sets`: all of them for several sets against the reference, as tables.

Multilabel sets ([M, N, L] sigmoid probabilities, recognised by rows that do not sum to one) are
audited per label as binary tasks: each (patient, label) pair counts as one sample.
Used by `rashomon compare` (run directories side by side) and the validate stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics.capacity import rashomon_capacity
from rashomon.metrics.multiplicity import ambiguity, disagreement, discrepancy, predict_labels

NOT_DESIDERATA = (S.MODEL,)


@dataclass
class SetArrays:
    """One set's test predictions at the matched ε and what it cost to build."""

    name: str
    probs: np.ndarray  # [M_kept, N, C] test probabilities of the models within ε
    map_probs: np.ndarray  # [N, C] the MAP model's
    models: int = 0  # M before filtering
    per_model_test: pd.DataFrame | None = None  # desiderata of the kept models, one row each
    cost: dict[str, float] = field(default_factory=dict)
    source: str = ""
    run_dir: str = ""


def as_binary(probs: np.ndarray, map_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multilabel [M, N, L] / [N, L] sigmoid probabilities → binary [M, N·L, 2] / [N·L, 2]; a
    softmax set (rows summing to one) is returned unchanged."""
    probs = np.asarray(probs, dtype=np.float64)
    map_probs = np.asarray(map_probs, dtype=np.float64)
    if np.allclose(map_probs.sum(axis=-1), 1.0, atol=1e-3):
        return probs, map_probs
    p = probs.reshape(probs.shape[0], -1)
    q = map_probs.reshape(-1)
    return np.stack([1 - p, p], axis=-1), np.stack([1 - q, q], axis=-1)


def set_multiplicity(
    probs: np.ndarray, map_probs: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Ambiguity, discrepancy, mean disagreement and mean capacity of a set against its MAP
    model, plus the per-sample disagreement and arbitrary-patient flags the agreement needs."""
    probs, map_probs = as_binary(probs, map_probs)
    preds = predict_labels(probs, threshold)
    ref = predict_labels(map_probs[None], threshold)[0]
    per_sample = disagreement(preds, num_classes=probs.shape[-1])
    flags = (preds != ref[None, :]).any(axis=0)
    return {
        "ambiguity": ambiguity(preds, ref),
        "discrepancy": discrepancy(preds, ref),
        "mean_disagreement": float(per_sample.mean()),
        "mean_capacity": float(rashomon_capacity(probs).mean()),
        "arbitrary_share": float(flags.mean()),
        "disagreement": per_sample,
        "flags": flags,
    }


def flag_agreement(flags: np.ndarray, truth_flags: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a set's arbitrary-patient flags against the ground truth's (NaN
    when the set flags nobody, resp. the ground truth flags nobody)."""
    flags = np.asarray(flags, dtype=bool)
    truth_flags = np.asarray(truth_flags, dtype=bool)
    hits = float((flags & truth_flags).sum())
    precision = hits / flags.sum() if flags.any() else math.nan
    recall = hits / truth_flags.sum() if truth_flags.any() else math.nan
    return float(precision), float(recall)


def rank_agreement(values: np.ndarray, truth_values: np.ndarray) -> float:
    """Spearman rank correlation of two per-sample arrays (NaN when either is constant)."""
    from scipy.stats import spearmanr

    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(truth_values, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def desideratum_spread(per_model: pd.DataFrame | None) -> dict[str, float]:
    """Max − min over the set's models of every numeric desideratum column (MAP row excluded)."""
    if per_model is None or per_model.empty:
        return {}
    rows = per_model[per_model[S.MODEL] >= 0]
    numeric = rows.drop(columns=[c for c in NOT_DESIDERATA if c in rows]).select_dtypes("number")
    return {c: float(numeric[c].max() - numeric[c].min()) for c in numeric.columns}


def compare_sets(
    sets: Sequence[SetArrays], truth: SetArrays, threshold: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compare table (one row per set, then the ground-truth row) and the per-patient table
    (each set's disagreement and flag per test sample)."""
    _check_same_patients([*sets, truth])
    truth_m = set_multiplicity(truth.probs, truth.map_probs, threshold)
    truth_spread = desideratum_spread(truth.per_model_test)
    rows = []
    per_patient = {}
    for s, is_truth in [*((s, False) for s in sets), (truth, True)]:
        m = truth_m if is_truth else set_multiplicity(s.probs, s.map_probs, threshold)
        precision, recall = flag_agreement(m["flags"], truth_m["flags"])
        row: dict[str, Any] = {
            "set": s.name,
            "source": s.source,
            "ground_truth": is_truth,
            "models": s.models,
            "models_in_set": s.probs.shape[0],
            **{
                k: m[k]
                for k in (
                    "ambiguity",
                    "discrepancy",
                    "mean_disagreement",
                    "mean_capacity",
                    "arbitrary_share",
                )
            },
            "spearman_disagreement": rank_agreement(m["disagreement"], truth_m["disagreement"]),
            "flag_precision": precision,
            "flag_recall": recall,
        }
        for key, value in s.cost.items():
            row[f"cost:{key}"] = value
        spread = desideratum_spread(s.per_model_test)
        for metric, value in spread.items():
            row[f"spread:{metric}"] = value
            ref = truth_spread.get(metric)
            row[f"spread_ratio:{metric}"] = value / ref if ref else math.nan
        row["run_dir"] = s.run_dir
        rows.append(row)
        per_patient[f"disagreement:{s.name}"] = m["disagreement"]
        per_patient[f"arbitrary:{s.name}"] = m["flags"]
    table = pd.DataFrame(rows)
    front = [c for c in table.columns if not c.startswith(("cost:", "spread")) and c != "run_dir"]
    back = sorted(c for c in table.columns if c.startswith("cost:"))
    back += sorted(c for c in table.columns if c.startswith("spread"))
    table = table[front + back + ["run_dir"]]
    patients = pd.DataFrame(per_patient)
    patients.insert(0, S.SAMPLE, np.arange(len(patients)))
    return table, patients


def _check_same_patients(sets: Sequence[SetArrays]) -> None:
    n = {s.name: s.map_probs.shape[0] for s in sets}
    if len(set(n.values())) > 1:
        raise RashomonError(
            f"the sets hold different numbers of test samples ({n}); compare runs of one task"
        )
    for s in sets:
        if s.probs.ndim != 3 or s.probs.shape[1:] != s.map_probs.shape:
            raise RashomonError(
                f"set {s.name!r}: probabilities {s.probs.shape} do not match its MAP model's "
                f"{s.map_probs.shape}; re-run its sample stage"
            )
