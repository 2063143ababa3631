"""Rashomon mask and survival table on hand-computed validation scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss

import rashomon as rs
import rashomon.metrics as rs_metrics
from rashomon.errors import RashomonError
from rashomon.sets.rashomon import model_scores, survival_table


def probs_with_true(p_true: list[float], y: np.ndarray) -> np.ndarray:
    """[N, 2] probabilities giving the true class probability p_true[i]."""
    out = np.empty((len(y), 2))
    for i, (p, c) in enumerate(zip(p_true, y, strict=True)):
        out[i, c], out[i, 1 - c] = p, 1 - p
    return out


Y_VAL = np.array([0, 1, 0, 1])
MAP = probs_with_true([0.8] * 4, Y_VAL)
# losses: -ln 0.8 = 0.22314, -ln 0.79 = 0.23572 (+5.6 %), -ln 0.5 = 0.69315
P_VAL = np.stack(
    [
        probs_with_true([0.8] * 4, Y_VAL),
        probs_with_true([0.79] * 4, Y_VAL),
        probs_with_true([0.5] * 4, Y_VAL),
    ]
)


def test_scores_match_hand_values_and_sklearn():
    s = model_scores(P_VAL, Y_VAL)
    np.testing.assert_allclose(s["loss"], [-math.log(0.8), -math.log(0.79), -math.log(0.5)])
    # model 2 ties at 0.5: argmax picks class 0, right for y=0 only
    np.testing.assert_allclose(s["accuracy"], [1.0, 1.0, 0.5])
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=(5, 30))
    y = rng.integers(0, 3, 30)
    ref = [log_loss(y, p[m], labels=[0, 1, 2]) for m in range(5)]
    np.testing.assert_allclose(model_scores(p, y)["loss"], ref, rtol=1e-10)


def test_mask_relative_absolute_and_accuracy():
    keep = rs.rashomon_mask(P_VAL, Y_VAL, 0.05, on="loss", ref=MAP, min_models=0)
    assert keep.tolist() == [True, False, False]  # 5.6 % above the MAP loss
    keep = rs.rashomon_mask(P_VAL, Y_VAL, 0.06, on="loss", ref=MAP)
    assert keep.tolist() == [True, True, False]
    keep = rs.rashomon_mask(P_VAL, Y_VAL, 0.02, on="loss", relative=False, ref=MAP)
    assert keep.tolist() == [True, True, False]  # 0.2357 ≤ 0.2231 + 0.02
    keep = rs.rashomon_mask(P_VAL, Y_VAL, 0.01, on="accuracy", ref=MAP)
    assert keep.tolist() == [True, True, False]
    keep = rs.rashomon_mask(P_VAL, Y_VAL, 0.5, on="accuracy", ref=MAP)
    assert keep.tolist() == [True, True, True]  # 0.5 ≥ 1.0 · (1 − 0.5)
    # a number as reference, and None = the best model of the set
    keep = rs.rashomon_mask(P_VAL, Y_VAL, 0.06, ref=-math.log(0.8))
    assert keep.tolist() == [True, True, False]
    keep = rs.rashomon_mask(P_VAL, Y_VAL, 0.06)
    assert keep.tolist() == [True, True, False]


def test_filtering_on_validation_not_test():
    """On test, model 2 is the good one and model 1 the bad one: the mask must come from the
    validation split, and filtering on test would give another set."""
    y_test = np.array([1, 1, 0, 0])
    map_test = probs_with_true([0.8] * 4, y_test)
    p_test = np.stack(
        [
            probs_with_true([0.8] * 4, y_test),
            probs_with_true([0.3] * 4, y_test),
            probs_with_true([0.81] * 4, y_test),
        ]
    )
    on_val = rs.rashomon_mask(P_VAL, Y_VAL, 0.06, ref=MAP)
    on_test = rs.rashomon_mask(p_test, y_test, 0.06, ref=map_test)
    assert on_val.tolist() == [True, True, False]
    assert on_test.tolist() == [True, False, True]


def test_too_few_models_and_bad_input():
    with pytest.raises(RashomonError, match="larger epsilon or more models"):
        rs.rashomon_mask(P_VAL, Y_VAL, 0.01, ref=MAP)
    with pytest.raises(RashomonError, match="loss, accuracy"):
        rs.rashomon_mask(P_VAL, Y_VAL, 0.01, on="auc")
    with pytest.raises(RashomonError, match="non-negative"):
        rs.rashomon_mask(P_VAL, Y_VAL, -0.1)
    with pytest.raises(RashomonError, match="labels"):
        rs.rashomon_mask(P_VAL, Y_VAL[:3], 0.1)


def test_survival_table():
    rows = survival_table(P_VAL, Y_VAL, MAP, epsilons=(0.005, 0.06, 3.0), on="loss")
    assert [r["models_in_set"] for r in rows] == [1, 2, 3]
    assert all(r["models"] == 3 and r["on"] == "loss" for r in rows)
    assert rows[1]["threshold"] == pytest.approx(-math.log(0.8) * 1.06)
    both = survival_table(P_VAL, Y_VAL, MAP, epsilons=(0.01,))
    assert [(r["on"], r["models_in_set"]) for r in both] == [("loss", 1), ("accuracy", 2)]


def test_multilabel_scores():
    y = np.array([[1, 0], [0, 0]])
    p = np.array([[[0.9, 0.2], [0.3, 0.1]]])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.7) + math.log(0.9)) / 4
    s = model_scores(p, y)
    assert s["loss"][0] == pytest.approx(expected)
    assert s["accuracy"][0] == 1.0


def test_the_filter_loss_is_the_calibration_nll():
    """One NLL: the filter's loss is `metrics.nll`, class weights and multilabel targets alike."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3), size=(4, 20))
    y = rng.integers(0, 3, 20)
    w = np.array([2.0, 0.5, 1.0])
    np.testing.assert_array_equal(model_scores(p, y, w)["loss"], rs_metrics.nll(p, y, w))
    # multilabel: the weight multiplies the positive term (BCEWithLogitsLoss's pos_weight)
    y2 = np.array([[1, 0], [0, 0]])
    p2 = np.array([[[0.9, 0.2], [0.3, 0.1]]])
    hand = -(2 * math.log(0.9) + math.log(0.8) + math.log(0.7) + math.log(0.9)) / 4
    assert rs_metrics.nll(p2, y2, [2.0, 3.0])[0] == pytest.approx(hand)
    assert model_scores(p2, y2, [2.0, 3.0])["loss"][0] == pytest.approx(hand)


def test_a_diverged_model_scores_nan_and_is_never_kept():
    """A model whose probabilities overflowed to NaN is scored NaN and left out of the set,
    not an error: the others are scored as without it."""
    p = P_VAL.copy()
    p[1, 2] = np.nan
    s = model_scores(p, Y_VAL)
    assert np.isnan(s["loss"][1]) and np.isnan(s["accuracy"][1])
    np.testing.assert_allclose(s["loss"][[0, 2]], [-math.log(0.8), -math.log(0.5)])
    kept = [True, False, True]
    assert rs.rashomon_mask(p, Y_VAL, 5.0, ref=MAP, min_models=0).tolist() == kept
    assert rs.rashomon_mask(p, Y_VAL, 0.9, on="accuracy", ref=MAP, min_models=0).tolist() == kept
