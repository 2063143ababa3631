"""Best-in-set selection, bootstrap CI of the gain, Spearman, Pareto front, decide_all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rashomon.decide import decide_all
from rashomon.decide.desiderata import (
    Desideratum,
    accuracy,
    dp_gap,
    ece,
    metric_table,
    tpr_gap,
)
from rashomon.decide.pareto import pareto_choice, pareto_front, pareto_selection
from rashomon.decide.selection import (
    best_in_set,
    bootstrap_gain,
    compare_with_baseline,
    pick_on_validation,
    spearman,
    symmetric_interval,
    verdict,
)
from rashomon.errors import RashomonError


def test_pick_on_validation_uses_validation_not_test():
    val = np.array([0.80, 0.90, 0.85, 0.90])
    test = np.array([0.95, 0.70, 0.80, 0.75])  # the test-best model is 0
    d = Desideratum("accuracy", True)
    table = best_in_set(
        {"accuracy": val}, {"accuracy": test}, {"accuracy": 0.86}, {"accuracy": 0.78}, [d]
    )
    row = table.iloc[0]
    assert row["chosen"] == 1 and row["n_tied_on_val"] == 2  # ties broken by lowest index
    assert row["chosen_test"] == 0.70 and row["oracle_test"] == 0.95
    assert row["test_gain"] == pytest.approx(0.70 - 0.78)
    assert row["chosen_test_percentile"] == pytest.approx(0.25)
    np.testing.assert_allclose(
        [row["set_test_q25"], row["set_test_q50"]], np.quantile(test, [0.25, 0.5])
    )
    # Lower-is-better: the smallest validation value wins and gains flip sign.
    best, ties = pick_on_validation([0.3, 0.1, 0.2], higher_is_better=False)
    assert (best, ties) == (1, 1)
    lower = best_in_set(
        {"ece": [0.3, 0.1, 0.2]},
        {"ece": [0.05, 0.2, 0.1]},
        {"ece": 0.15},
        {"ece": 0.1},
        [Desideratum("ece", False)],
    ).iloc[0]
    assert lower["chosen"] == 1 and lower["test_gain"] == pytest.approx(-0.1)


def test_spearman_matches_scipy_and_handles_constants():
    rng = np.random.default_rng(3)
    v, t = rng.normal(size=40), rng.normal(size=40)
    t[:20] += v[:20]
    want = stats.spearmanr(v, t)
    assert spearman(v, t) == pytest.approx((want.statistic, want.pvalue))
    assert np.isnan(spearman(np.ones(5), np.arange(5))[0])


def test_bootstrap_gain_ci_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    correct_a = rng.random(n) < 0.85
    correct_b = rng.random(n) < 0.80
    pa = np.where((y == 1) == correct_a, 0.8, 0.2)
    pb = np.where((y == 1) == correct_b, 0.8, 0.2)
    probs_a, probs_b = np.stack([1 - pa, pa], 1), np.stack([1 - pb, pb], 1)
    gain, lo, hi, reps = bootstrap_gain(accuracy, probs_a, probs_b, y, n_boot=4000, seed=1)
    assert gain == pytest.approx(correct_a.mean() - correct_b.mean())
    ref = stats.bootstrap(
        (correct_a.astype(float), correct_b.astype(float)),
        lambda a, b, axis: a.mean(axis) - b.mean(axis),
        paired=True,
        n_resamples=4000,
        method="percentile",
        random_state=2,
    ).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.006) and hi == pytest.approx(ref.high, abs=0.006)
    assert len(reps) == 4000
    # Lower-is-better metrics: gain is oriented so that positive means better.
    g2, lo2, hi2, _ = bootstrap_gain(
        ece, probs_a, probs_b, y, higher_is_better=False, n_boot=200, seed=0
    )
    assert g2 == pytest.approx(ece(probs_b, y) - ece(probs_a, y))
    assert lo2 <= g2 <= hi2


def test_bootstrap_resamples_groups_with_patients():
    y = np.array([1, 1, 1, 1, 0, 0])
    g = np.array([0, 0, 1, 1, 0, 1])
    perfect = np.eye(2)[y] * 0.9 + 0.05
    gap = tpr_gap("site")
    gain, lo, hi, reps = bootstrap_gain(
        gap, perfect, perfect, y, {"site": g}, higher_is_better=False, n_boot=50
    )
    assert gain == 0 and lo == 0 and hi == 0  # identical models: every replicate gains 0


def test_gain_interval_holds_the_estimate_where_the_percentile_interval_did_not():
    """The BreastMNIST report crash: on a gap metric the percentile interval of the replicates
    excluded the full-sample gain. Three groups of 20 patients; the MAP model predicts positive
    for 6 of every 20 (demographic-parity gap exactly 0), the chosen model for nobody (gap 0):
    the gain is 0, while every resampled MAP gap is above 0 but for ties."""
    g = np.repeat([0, 1, 2], 20)
    y = np.tile([0, 1], 30)
    map_pred = np.tile(np.r_[np.ones(6), np.zeros(14)], 3)

    def probs(pred):
        return np.stack([1 - pred, pred], axis=1) * 0.9 + 0.05

    gap = dp_gap("site")
    gain, lo, hi, reps = bootstrap_gain(
        gap, probs(np.zeros(60)), probs(map_pred), y, {"site": g}, higher_is_better=False
    )
    assert gain == 0.0
    assert np.percentile(reps, 2.5) > 0  # the old interval: above its own point estimate
    assert 2 * gain - np.percentile(reps, 2.5) < 0  # the basic interval: a "real loss"
    half = np.quantile(np.abs(reps), 0.95)  # the new one: 0 ± the pivot's 95 % quantile
    assert (lo, hi) == (pytest.approx(-half), pytest.approx(half)) and lo < gain < hi
    assert verdict(0.5, lo, hi) == "selection noise"  # the old interval said "real gain"


def test_verdict_rule():
    assert verdict(0.1, 0.01, 0.05) == "selection noise"
    assert verdict(np.nan, 0.01, 0.05) == "selection noise"
    assert verdict(0.5, -0.01, 0.05) == "selection noise"
    assert verdict(0.5, 0.01, 0.05) == "real gain"
    assert verdict(0.5, -0.05, -0.01) == "real loss"
    assert verdict(0.5, np.nan, np.nan) == "ranks transfer (no CI)"


def test_pareto_front_hand_example():
    # (accuracy, gap) with gap lower-is-better.
    obj = np.array(
        [
            [0.90, 0.10],  # 0 front (most accurate)
            [0.88, 0.05],  # 1 front
            [0.85, 0.05],  # 2 dominated by 1
            [0.80, 0.01],  # 3 front
            [0.89, 0.12],  # 4 dominated by 0
            [0.88, 0.05],  # 5 duplicate of 1: neither dominates, both stay
            [np.nan, 0.0],  # 6 NaN: excluded
        ]
    )
    np.testing.assert_array_equal(pareto_front(obj, [True, False]), [0, 1, 3, 5])
    front, chosen = pareto_choice(obj[:, 0], obj[:, 1], 0.90, higher_is_better=False, epsilon=0.02)
    assert chosen == 1  # best gap among front models with accuracy >= 0.88
    _, chosen = pareto_choice(obj[:, 0], obj[:, 1], 0.90, higher_is_better=False, epsilon=0.0)
    assert chosen == 0
    _, chosen = pareto_choice(obj[:, 0], obj[:, 1], 0.95, higher_is_better=False, epsilon=0.0)
    assert chosen is None


def test_pareto_selection_tables():
    val = pd.DataFrame({"accuracy": [0.90, 0.88, 0.80], "gap": [0.10, 0.05, 0.01]})
    test = pd.DataFrame({"accuracy": [0.87, 0.86, 0.79], "gap": [0.12, 0.04, 0.02]})
    des = [Desideratum("accuracy", True), Desideratum("gap", False)]
    summary, front = pareto_selection(
        val, test, {"accuracy": 0.9, "gap": 0.1}, {"accuracy": 0.87, "gap": 0.12}, des, epsilon=0.02
    )
    row = summary.iloc[0]
    assert row["chosen"] == 1 and row["n_front"] == 3
    assert row["test_gain"] == pytest.approx(0.08)
    assert row["test_accuracy_change"] == pytest.approx(-0.01)
    assert front["chosen"].tolist() == [False, True, False]


def test_best_in_set_with_bootstrap_and_baseline():
    rng = np.random.default_rng(1)
    m, n = 30, 200
    y_val, y_test = rng.integers(0, 2, n), rng.integers(0, 2, n)
    quality = rng.uniform(0.6, 0.95, m)  # each model's chance of being right, same on both splits

    def probs(y):
        right = rng.random((m, n)) < quality[:, None]
        p1 = np.where(right == (y == 1), 0.9, 0.1)
        return np.stack([1 - p1, p1], -1)

    pv, pt = probs(y_val), probs(y_test)
    des = [Desideratum("accuracy", True, accuracy)]
    vv, tv = metric_table(pv, y_val, None, des), metric_table(pt, y_test, None, des)
    np.testing.assert_allclose(vv["accuracy"], (pv.argmax(-1) == y_val).mean(1))
    table = best_in_set(
        vv,
        tv,
        {"accuracy": 0.6},
        {"accuracy": float(tv["accuracy"].min())},
        des,
        test_probs=pt,
        map_test_probs=pt[int(tv["accuracy"].argmin())],
        test_y=y_test,
        n_boot=300,
    )
    row = table.iloc[0]
    assert row["chosen"] == int(vv["accuracy"].argmax())
    assert row["spearman_rho"] > 0.8  # validation ranks models as test does here
    assert row["gain_ci_low"] > 0 and row["verdict"] == "real gain" and not row["selection_noise"]
    both = compare_with_baseline(table, {"accuracy": 0.5})
    assert both["selection_minus_constrained"].iloc[0] == pytest.approx(row["chosen_test"] - 0.5)
    with pytest.raises(RashomonError, match="no column 'ece'"):
        best_in_set(vv, tv, {}, {}, [Desideratum("ece", False)])


def test_decide_all_end_to_end_binary():
    rng = np.random.default_rng(2)
    m = 25

    def split(n):
        y = rng.integers(0, 2, n)
        base = rng.normal(0, 1.5, n) + (2 * y - 1) * 1.5
        p1 = 1 / (1 + np.exp(-(base[None] + rng.normal(0, 0.5, (m, n)))))
        mp = 1 / (1 + np.exp(-base))
        return np.stack([1 - p1, p1], -1), y, np.stack([1 - mp, mp], -1)

    vp, vy, mvp = split(120)
    tp, ty, mtp = split(150)
    mask = np.ones(m, bool)
    mask[:5] = False
    out = decide_all(
        val_probs=vp,
        val_y=vy,
        test_probs=tp,
        test_y=ty,
        map_val_probs=mvp,
        map_test_probs=mtp,
        val_groups={"random": rng.integers(0, 2, 120)},
        test_groups={"random": rng.integers(0, 2, 150)},
        rashomon_mask=mask,
        ensemble_sizes=[1, 3, 30],
        n_boot=100,
        lsi=rng.gamma(1, 1, 40),
        train_preds=rng.integers(0, 2, (m, 40)),
        map_train_preds=rng.integers(0, 2, 40),
    )
    assert set(out) >= {
        "selection",
        "pareto",
        "pareto_front",
        "ensembles",
        "ensemble_min_k",
        "patients",
        "lsi",
        "lsi_summary",
        "notes",
    }
    sel = out["selection"].set_index("desideratum")
    acc_val = (vp[mask].argmax(-1) == vy).mean(1)
    assert sel.loc["accuracy", "chosen"] == int(np.argmax(acc_val))
    assert sel.loc["accuracy", "models_in_set"] == 20
    assert out["notes"]["note"].str.contains("k=30 skipped").any()
    assert sorted(out["ensembles"]["k"].unique()) == [1, 3]
    assert out["lsi"]["top_lsi"].sum() == 16
    flips = (tp[mask].argmax(-1) != mtp.argmax(-1)).mean(0)
    assert len(out["patients"]) == int((flips > 0).sum())


def test_decide_all_refuses_selection_around_a_degenerate_map_model():
    rng = np.random.default_rng(5)
    m, n = 8, 60
    val_y, test_y = rng.integers(0, 2, n), rng.integers(0, 2, n)
    p = rng.uniform(0.2, 0.8, (m, n, 1))
    probs = np.concatenate([1 - p, p], axis=-1)
    sure = np.tile([0.3, 0.7], (n, 1))  # the MAP model says class 1 for every patient
    good_test = np.where(test_y[:, None] == 1, [0.1, 0.9], [0.9, 0.1])
    args = dict(
        val_probs=probs,
        val_y=val_y,
        test_probs=probs,
        test_y=test_y,
        map_test_probs=good_test,
        ensemble_sizes=[1, 3],
        n_boot=20,
        n_partitions=1,
    )
    out = decide_all(map_val_probs=sure, **args)
    assert "selection" not in out and "pareto" not in out
    notes = out["notes"].set_index("part")["note"]
    assert notes["selection"] == notes["pareto"]
    assert notes["selection"].startswith(
        "skipped: the trained model predicts 'class 1' for 100 % of validation patients "
        "(balanced accuracy 0.50, chance 0.50); the best model of a set around a degenerate "
        "classifier is no finding"
    )
    assert {"ensembles", "patients", "selection_values"} <= set(out)
    # with the task's class names the note names the class as the report's headline does
    named = decide_all(map_val_probs=sure, class_names=("normal", "pneumonia"), **args)
    assert (
        named["notes"]["note"]
        .iloc[0]
        .startswith(
            "skipped: the trained model predicts 'pneumonia' for 100 % of validation patients"
        )
    )
    # the same set around an informative MAP model is selected from
    good_val = np.where(val_y[:, None] == 1, [0.2, 0.8], [0.8, 0.2])
    out = decide_all(map_val_probs=good_val, **args)
    assert len(out["selection"]) == 5 and "selection" not in set(out["notes"]["part"])


def test_decide_all_multilabel_runs_per_label():
    rng = np.random.default_rng(4)
    m, n, labels = 6, 40, 2
    val_y, test_y = rng.integers(0, 2, (n, labels)), rng.integers(0, 2, (n, labels))
    out = decide_all(
        val_probs=rng.random((m, n, labels)),
        val_y=val_y,
        test_probs=rng.random((m, n, labels)),
        test_y=test_y,
        # an informative MAP model: a chance-level one is refused selection (see below)
        map_val_probs=np.where(val_y == 1, 0.8, 0.2),
        map_test_probs=np.where(test_y == 1, 0.8, 0.2),
        kind="multilabel",
        ensemble_sizes=[1, 3],
        n_boot=20,
        n_partitions=1,
    )
    assert sorted(out["selection"]["label"].unique()) == [0, 1]
    assert len(out["selection"]) == 2 * 5  # five default desiderata without attributes


def test_holm_and_the_pivot_pvalue_by_hand():
    from rashomon.decide.selection import holm, pivot_pvalue

    # Holm: sorted p (0.01, 0.02, 0.04) × (3, 2, 1) = (0.03, 0.04, 0.04), monotone; NaN stays out
    np.testing.assert_allclose(
        holm([0.04, 0.01, np.nan, 0.02]), [0.04, 0.03, np.nan, 0.04], equal_nan=True
    )
    assert holm([0.6, 0.5])[1] == 1.0  # capped at 1
    # the p-value is below 0.05 exactly when the symmetric 95 % interval excludes 0
    reps = np.linspace(-0.1, 0.3, 401)
    for est in (0.05, 0.15, 0.25, 0.4):
        lo, _ = symmetric_interval(est, reps, 0.95)
        assert (pivot_pvalue(est, reps) < 0.05) == (lo > 0), est
