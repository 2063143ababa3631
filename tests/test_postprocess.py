"""The ThresholdOptimizer baseline is fairlearn's own: the score-column adaptor reproduces
fairlearn fitted on the real estimator, and the constraint holds on validation."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import equalized_odds_difference, true_positive_rate
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.linear_model import LogisticRegression

from rashomon.decide.desiderata import tpr_gap
from rashomon.decide.postprocess import threshold_baseline, threshold_frame
from rashomon.errors import RashomonError


def _biased(n: int, seed: int):
    """Two groups; group 1's positives score lower, so the unconstrained model has a TPR gap."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.4).astype(int)
    x = np.stack([y * 1.5 - 0.8 * g * y + rng.normal(0, 1, n), rng.normal(0, 1, n)], 1)
    return x, y, np.where(g == 1, "F", "M")


@pytest.mark.parametrize("constraint", ["equalized_odds", "true_positive_rate_parity"])
def test_threshold_baseline_equals_fairlearn_on_the_estimator(constraint):
    x_val, y_val, g_val = _biased(600, 0)
    x_test, _, g_test = _biased(400, 1)
    lr = LogisticRegression().fit(*_biased(800, 2)[:2])
    ref = ThresholdOptimizer(
        estimator=lr,
        constraints=constraint,
        objective="balanced_accuracy_score",
        prefit=True,
        predict_method="predict_proba",
    ).fit(x_val, y_val, sensitive_features=g_val)
    want_val = ref.predict(x_val, sensitive_features=g_val, random_state=3)
    want_test = ref.predict(x_test, sensitive_features=g_test, random_state=3)
    got = threshold_baseline(
        lr.predict_proba(x_val), y_val, g_val, lr.predict_proba(x_test), g_test, constraint, seed=3
    )
    np.testing.assert_array_equal(got.val_pred, want_val)
    np.testing.assert_array_equal(got.test_pred, want_test)
    # the constraint holds on the split it was fitted on, and the one-hot probs carry the labels
    map_gap = tpr_gap("sex")(lr.predict_proba(x_val), y_val, {"sex": g_val})
    post_gap = tpr_gap("sex")(got.val_probs, y_val, {"sex": g_val})
    assert post_gap < map_gap and post_gap < 0.05
    rates = [true_positive_rate(y_val[g_val == v], got.val_pred[g_val == v]) for v in "FM"]
    assert post_gap == pytest.approx(abs(rates[0] - rates[1]))
    if constraint == "equalized_odds":
        assert equalized_odds_difference(y_val, got.val_pred, sensitive_features=g_val) < 0.06


def test_threshold_set_and_bad_inputs():
    x_val, y_val, g_val = _biased(300, 4)
    lr = LogisticRegression().fit(x_val, y_val)
    p = lr.predict_proba(x_val)
    # "Rashomon set + ThresholdOptimizer": the MAP model (-1) and each member, long format
    frame = threshold_frame(
        p, p, np.stack([p, p[:, ::-1]]), np.stack([p, p]), [4, 9], y_val, y_val, g_val, g_val, "sex"
    )
    assert sorted(set(frame["model"])) == [-1, 4, 9] and set(frame["split"]) == {"val", "test"}
    acc = frame.query("model == -1 and split == 'val' and desideratum == 'accuracy'")["value"]
    one = threshold_baseline(p, y_val, g_val, p, g_val)
    assert acc.iloc[0] == pytest.approx((one.val_pred == y_val).mean())
    with pytest.raises(RashomonError, match="constraint 'parity' is not offered"):
        threshold_baseline(p, y_val, g_val, p, g_val, constraint="parity")
    with pytest.raises(RashomonError, match="binary classifiers; this task has 3 classes"):
        three = np.full((300, 3), 1 / 3)
        threshold_baseline(three, y_val, g_val, three, g_val)
    with pytest.raises(RashomonError, match="one group of the attribute"):
        threshold_baseline(p, y_val, np.zeros(300), p, g_val)
    lonely = np.where(np.arange(300) < 5, "X", g_val)
    y_lonely = np.where(lonely == "X", 0, y_val)
    with pytest.raises(RashomonError, match=r"\['X'\] hold one label only on validation"):
        threshold_baseline(p, y_lonely, lonely, p, g_val)
