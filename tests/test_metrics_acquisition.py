"""Fairness gaps within acquisition strata (rashomon.metrics.acquisition), on a synthetic task
whose sex gap is purely acquisition-driven: men are mostly filmed AP, women mostly PA, and the
model misses half the AP positives whatever the sex, none of the PA ones. Every value below is
computed by hand from the patient counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rashomon import metrics as rm
from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics.acquisition import (
    acquisition_attributes,
    is_acquisition,
    within_stratum_gaps,
    within_stratum_table,
)

F, M = 0, 1
AP, PA = 0, 1

# (view, sex, label, patients, of whom the model calls positive)
MODEL_A = [
    (AP, M, 1, 8, 4),  # AP positives: TPR 0.5 for both sexes
    (AP, F, 1, 2, 1),
    (PA, M, 1, 2, 2),  # PA positives: TPR 1 for both sexes
    (PA, F, 1, 8, 8),
    (AP, M, 0, 5, 2),  # AP negatives: FPR 0.4 for both sexes
    (AP, F, 0, 5, 2),
    (PA, M, 0, 5, 0),  # PA negatives: FPR 0
    (PA, F, 0, 5, 0),
]
# model B finds every AP man with opacity: a real within-AP sex gap of 0.5
MODEL_B = [(AP, M, 1, 8, 8), *MODEL_A[1:]]


def _patients(cells) -> tuple[np.ndarray, ...]:
    """view, sex, y and the [N, 2] one-hot decisions, patient by patient."""
    view, sex, y, pred = [], [], [], []
    for v, s, label, n, called in cells:
        view += [v] * n
        sex += [s] * n
        y += [label] * n
        pred += [1] * called + [0] * (n - called)
    onehot = np.eye(2)[np.asarray(pred)]
    return np.asarray(view), np.asarray(sex), np.asarray(y), onehot


VIEW, SEX, Y, PROBS_A = _patients(MODEL_A)
PROBS_B = _patients(MODEL_B)[3]


def _value(long: pd.DataFrame, model: int, stratum: str, metric: str) -> float:
    row = long[(long[S.MODEL] == model) & (long[S.STRATUM] == stratum) & (long[S.METRIC] == metric)]
    assert len(row) == 1, (model, stratum, metric)
    return float(row[S.VALUE].iloc[0])


def test_a_view_gap_is_not_a_sex_gap_within_view():
    assert len(Y) == 40 and (_patients(MODEL_B)[2] == Y).all()
    long = within_stratum_gaps(
        np.stack([PROBS_A, PROBS_B]), Y, SEX, VIEW, stratum_levels=["AP", "PA"]
    )
    # model A, marginally: TPR men (4 + 2)/10 = 0.6, women (1 + 8)/10 = 0.9, a gap of 0.3 ...
    assert _value(long, 0, "all", "tpr_gap") == pytest.approx(0.3)
    # ... which is the view's: among AP films 0.5 against 0.5, among PA films 1 against 1
    assert _value(long, 0, "AP", "tpr_gap") == pytest.approx(0.0)
    assert _value(long, 0, "PA", "tpr_gap") == pytest.approx(0.0)
    assert _value(long, 0, "pooled", "tpr_gap") == pytest.approx(0.0)
    # FPR 0.4 on AP, 0 on PA, for both sexes (5 men and 5 women each): no gap anywhere
    for stratum in ("all", "AP", "PA", "pooled"):
        assert _value(long, 0, stratum, "fpr_gap") == pytest.approx(0.0)
    # selection rate: men 8/20, women 11/20 overall; AP 6/13 against 3/7; PA 2/7 against 8/13
    assert _value(long, 0, "all", "demographic_parity_diff") == pytest.approx(0.15)
    assert _value(long, 0, "AP", "demographic_parity_diff") == pytest.approx(3 / 91)
    assert _value(long, 0, "PA", "demographic_parity_diff") == pytest.approx(30 / 91)
    # pooled over 20 AP and 20 PA patients
    assert _value(long, 0, "pooled", "demographic_parity_diff") == pytest.approx(33 / 182)
    # accuracy: men 14/20, women 17/20; AP 7/13 against 4/7; PA 1 against 1
    assert _value(long, 0, "all", "accuracy_gap") == pytest.approx(0.15)
    assert _value(long, 0, "AP", "accuracy_gap") == pytest.approx(3 / 91)
    assert _value(long, 0, "pooled", "accuracy_gap") == pytest.approx(3 / 182)
    # model B: AP men 8/8 against AP women 1/2, a within-AP gap of 0.5, none on PA; pooled
    # over 10 AP and 10 PA positives 0.25, more than its marginal gap 1.0 − 0.9 = 0.1
    assert _value(long, 1, "AP", "tpr_gap") == pytest.approx(0.5)
    assert _value(long, 1, "pooled", "tpr_gap") == pytest.approx(0.25)
    assert _value(long, 1, "all", "tpr_gap") == pytest.approx(0.1)
    # the marginal gaps are rashomon.metrics.fairness's, model by model
    gaps = rm.fairness_gaps(np.stack([PROBS_A, PROBS_B]), Y, SEX)
    for metric in ("tpr_gap", "fpr_gap", "demographic_parity_diff", "accuracy_gap"):
        for m in (0, 1):
            assert _value(long, m, "all", metric) == pytest.approx(gaps[metric][m])
    # the counts: 20 AP patients, 10 of them positive, the fewest in one sex 2 (AP women)
    ap = long[(long[S.MODEL] == 0) & (long[S.STRATUM] == "AP") & (long[S.METRIC] == "tpr_gap")]
    assert ap[[S.PATIENTS, S.RATE_PATIENTS, S.SMALLEST_GROUP]].iloc[0].tolist() == [20, 10, 2]
    pooled = long[(long[S.STRATUM] == "pooled") & (long[S.METRIC] == "fpr_gap")].iloc[0]
    assert (pooled[S.RATE_PATIENTS], pooled[S.SMALLEST_GROUP]) == (20, 10)


def test_a_stratum_without_the_rates_patients_is_left_out_of_the_pool():
    # no PA woman is positive: the PA TPR gap is undefined, the pool is AP's alone
    keep = ~((VIEW == PA) & (SEX == F) & (Y == 1))
    long = within_stratum_gaps(
        np.stack([PROBS_B[keep]]), Y[keep], SEX[keep], VIEW[keep], stratum_levels=["AP", "PA"]
    )
    assert np.isnan(_value(long, 0, "PA", "tpr_gap"))
    assert _value(long, 0, "pooled", "tpr_gap") == pytest.approx(0.5)
    pa = long[(long[S.STRATUM] == "PA") & (long[S.METRIC] == "tpr_gap")].iloc[0]
    assert pa[S.SMALLEST_GROUP] == 0


def test_the_summary_table_for_the_map_model_and_the_set():
    groups = {"sex": SEX, "view": VIEW, "intensity": (np.arange(40) % 3)}
    derived = {"sex": False, "view": False, "intensity": True}
    levels = {"sex": ["F", "M"], "view": ["AP", "PA"], "intensity": ["low", "mid", "high"]}
    table = within_stratum_table(np.stack([PROBS_A, PROBS_B]), PROBS_A, Y, groups, derived, levels)
    assert list(table.columns) == list(S.TABLES["within_stratum"].columns)
    # sex is the one non-acquisition attribute, view and intensity are the strata
    assert set(table[S.ATTRIBUTE]) == {"sex"} and not table[S.DERIVED].any()
    assert set(table[S.STRATUM_ATTRIBUTE]) == {"view", "intensity"}
    tpr = table[(table[S.STRATUM_ATTRIBUTE] == "view") & (table[S.METRIC] == "tpr_gap")]
    tpr = tpr.set_index(S.STRATUM)
    assert tpr.index.tolist() == ["all", "AP", "PA", "pooled"]
    assert tpr[S.MAP_GAP].tolist() == pytest.approx([0.3, 0.0, 0.0, 0.0])
    # the set: models A and B
    assert tpr[S.SET_GAP_MEAN].tolist() == pytest.approx([0.2, 0.25, 0.0, 0.125])
    assert tpr.loc["AP", S.SET_GAP_Q05] == pytest.approx(0.025)  # 5 % of the way from 0 to 0.5
    assert tpr.loc["AP", S.SET_GAP_Q95] == pytest.approx(0.475)
    assert set(table.loc[table[S.STRATUM_ATTRIBUTE] == "intensity", S.STRATUM]) == {
        "all",
        "low",
        "mid",
        "high",
        "pooled",
    }
    # declared: only view; an unknown name is refused
    only = within_stratum_table(
        np.stack([PROBS_A]), PROBS_A, Y, groups, derived, levels, acquisition=["view"]
    )
    assert set(only[S.ATTRIBUTE]) == {"sex", "intensity"} and set(only[S.STRATUM_ATTRIBUTE]) == {
        "view"
    }
    assert bool(only.loc[only[S.ATTRIBUTE] == "intensity", S.DERIVED].all())
    with pytest.raises(RashomonError, match=r"evaluate.acquisition names \['scanner'\]"):
        within_stratum_table(PROBS_A[None], PROBS_A, Y, groups, derived, acquisition=["scanner"])
    # nothing to stratify by, or a multilabel task: the columns only
    none = within_stratum_table(PROBS_A[None], PROBS_A, Y, {"sex": SEX}, derived)
    assert none.empty and list(none.columns) == list(S.TABLES["within_stratum"].columns)


def test_multiclass_has_the_accuracy_gap_only():
    probs = np.eye(3)[Y][None]  # one-hot of the binary labels: wrong on the class-2 patient
    y = np.r_[Y[:-1], 2]
    long = within_stratum_gaps(probs, y, SEX, VIEW)
    assert set(long[S.METRIC]) == {"accuracy_gap"}
    assert set(long[S.STRATUM]) == {"all", "0", "1", "pooled"}


@pytest.mark.parametrize(
    ("name", "acquisition"),
    [
        ("view", True),
        ("View", True),
        ("ViewPosition", True),
        ("viewposition", True),
        ("view_position", True),
        ("scanner_model", True),
        ("acquisition-site", True),
        ("device", True),
        ("intensity", True),
        ("sex", False),
        ("age_group", False),
        ("reviewer", False),
        ("website", False),
        ("random", False),
    ],
)
def test_the_naming_rule(name, acquisition):
    assert is_acquisition(name) is acquisition


def test_acquisition_attributes_default_and_declared():
    names = ["sex", "age_group", "view", "intensity", "random"]
    assert acquisition_attributes(names) == ["view", "intensity"]
    assert acquisition_attributes(names, ["view"]) == ["view"]
    assert acquisition_attributes(names, []) == []
