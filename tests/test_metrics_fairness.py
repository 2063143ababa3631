"""Per-group metrics and fairness gaps against fairlearn's MetricFrame and difference functions,
model by model."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, roc_auc_score

import rashomon.metrics as rm
from rashomon.errors import RashomonError


@pytest.fixture
def fair_set():
    rng = np.random.default_rng(0)
    n = 150
    y = rng.integers(0, 2, size=n)
    groups = rng.integers(0, 3, size=n)
    shift = 0.1 * groups  # groups see differently scaled scores, so gaps are not zero
    p1 = np.clip(0.35 * y[None] + shift[None] + rng.uniform(0, 0.55, size=(5, n)), 0, 1)
    return np.stack([1 - p1, p1], axis=-1), y, groups


def test_group_metrics_match_metricframe(fair_set):
    probs, y, groups = fair_set
    codes, per_group = rm.group_metrics(probs, y, groups)
    np.testing.assert_array_equal(codes, [0, 1, 2])
    for m in range(len(probs)):
        pred = (probs[m, :, 1] >= 0.5).astype(int)
        frame = MetricFrame(
            metrics={
                "accuracy": accuracy_score,
                "tpr": true_positive_rate,
                "fpr": false_positive_rate,
                "selection_rate": selection_rate,
            },
            y_true=y,
            y_pred=pred,
            sensitive_features=groups,
        )
        for name in ("accuracy", "tpr", "fpr", "selection_rate"):
            np.testing.assert_allclose(per_group[name][m], frame.by_group[name].to_numpy())
        auroc = MetricFrame(
            metrics=roc_auc_score, y_true=y, y_pred=probs[m, :, 1], sensitive_features=groups
        )
        np.testing.assert_allclose(per_group["auroc"][m], auroc.by_group.to_numpy())
        for j, code in enumerate(codes):
            mask = groups == code
            assert per_group["ece"][m, j] == pytest.approx(
                rm.ece(probs[m : m + 1, mask], y[mask])[0]
            )


def test_gaps_match_fairlearn(fair_set):
    probs, y, groups = fair_set
    gaps = rm.fairness_gaps(probs, y, groups)
    _, per_group = rm.group_metrics(probs, y, groups)
    for m in range(len(probs)):
        pred = (probs[m, :, 1] >= 0.5).astype(int)
        kw = {"sensitive_features": groups}
        assert gaps["demographic_parity_diff"][m] == pytest.approx(
            demographic_parity_difference(y, pred, **kw)
        )
        assert gaps["equalized_odds_diff"][m] == pytest.approx(
            equalized_odds_difference(y, pred, **kw)
        )
        assert gaps["tpr_gap"][m] == pytest.approx(equal_opportunity_difference(y, pred, **kw))
        auroc = per_group["auroc"][m]
        assert gaps["auroc_gap"][m] == pytest.approx(auroc.max() - auroc.min())
        assert gaps["worst_group_auroc"][m] == pytest.approx(auroc.min())
        assert gaps["worst_group_accuracy"][m] == pytest.approx(per_group["accuracy"][m].min())
    assert (gaps["auroc_gap"] > 0).all()


def test_threshold_is_used_for_group_decisions(fair_set):
    probs, y, groups = fair_set
    gaps = rm.fairness_gaps(probs, y, groups, threshold=0.7)
    pred = (probs[0, :, 1] >= 0.7).astype(int)
    assert gaps["demographic_parity_diff"][0] == pytest.approx(
        demographic_parity_difference(y, pred, sensitive_features=groups)
    )


def test_multiclass_group_metrics():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=90)
    groups = np.repeat([0, 1], 45)
    probs = rng.dirichlet(np.ones(3), size=(2, 90))
    _, per_group = rm.group_metrics(probs, y, groups)
    assert set(per_group) == {"accuracy", "auroc", "ece"}
    for j in range(2):
        mask = groups == j
        np.testing.assert_allclose(per_group["auroc"][:, j], rm.auroc(probs[:, mask], y[mask]))
        np.testing.assert_allclose(
            per_group["accuracy"][:, j], rm.accuracy(probs[:, mask], y[mask])
        )
    gaps = rm.fairness_gaps(probs, y, groups)
    assert "tpr_gap" not in gaps
    np.testing.assert_allclose(
        gaps["accuracy_gap"], np.abs(per_group["accuracy"][:, 0] - per_group["accuracy"][:, 1])
    )


def test_group_without_positives_gives_nan_rate_and_gap_from_others():
    y = np.array([0, 0, 1, 0, 1, 1])
    groups = np.array([0, 0, 1, 1, 2, 2])
    probs = np.stack([np.full((1, 6), 0.4), np.full((1, 6), 0.6)], axis=-1)
    _, per_group = rm.group_metrics(probs, y, groups)
    assert np.isnan(per_group["tpr"][0, 0])
    assert rm.fairness_gaps(probs, y, groups)["tpr_gap"][0] == 0.0


def test_tables_mark_derived_attributes(fair_set):
    probs, y, groups = fair_set
    table = rm.group_table(
        probs, y, groups, "intensity", derived=True, level_names=["lo", "mid", "hi"]
    )
    assert table["derived"].all() and (table["attribute"] == "intensity").all()
    row = table[(table["model"] == 2) & (table["group"] == "mid") & (table["metric"] == "tpr")]
    _, per_group = rm.group_metrics(probs, y, groups)
    assert row["value"].item() == pytest.approx(per_group["tpr"][2, 1])
    assert row["n"].item() == int((groups == 1).sum())
    gaps = rm.gap_table(probs, y, groups, "random", derived=True)
    assert gaps["derived"].all() and len(gaps) == len(probs)


def test_one_group_is_an_error(fair_set):
    probs, y, _ = fair_set
    with pytest.raises(RashomonError, match="needs >= 2 groups|only 1 group"):
        rm.fairness_gaps(probs, y, np.zeros(len(y), dtype=int))
