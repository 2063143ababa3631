"""Per-model performance and calibration, compared with scikit-learn model by model and with
direct loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    log_loss,
    recall_score,
    roc_auc_score,
)

import rashomon.metrics as rm
from rashomon.metrics.performance import average_ranks


@pytest.fixture
def binary_set():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=80)
    # Rounded scores create many ties, the case where AUROC/AP definitions differ.
    p1 = np.round(np.clip(0.3 * y[None, :] + rng.uniform(0, 0.7, size=(6, 80)), 0, 1), 1)
    return np.stack([1 - p1, p1], axis=-1), y


@pytest.fixture
def multiclass_set():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=90)
    logits = rng.normal(size=(5, 90, 4)) + 1.5 * np.eye(4)[y][None]
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return probs, y


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    s = np.array([[3.0, 1.0, 3.0, 2.0, 1.0], [0.5, 0.5, 0.5, 0.1, 0.9]])
    np.testing.assert_allclose(average_ranks(s), rankdata(s, axis=1))


def test_binary_metrics_match_sklearn(binary_set):
    probs, y = binary_set
    pred = (probs[..., 1] >= 0.5).astype(int)
    for name, ours, theirs in [
        ("accuracy", rm.accuracy(probs, y), [accuracy_score(y, d) for d in pred]),
        ("balanced", rm.balanced_accuracy(probs, y), [balanced_accuracy_score(y, d) for d in pred]),
        ("auroc", rm.auroc(probs, y), [roc_auc_score(y, s) for s in probs[..., 1]]),
        (
            "ap",
            rm.average_precision(probs, y),
            [average_precision_score(y, s) for s in probs[..., 1]],
        ),
        ("sens", rm.sensitivity(probs, y), [recall_score(y, d) for d in pred]),
        ("spec", rm.specificity(probs, y), [recall_score(1 - y, 1 - d) for d in pred]),
    ]:
        np.testing.assert_allclose(ours, theirs, atol=1e-12, err_msg=name)


def test_threshold_changes_decisions(binary_set):
    probs, y = binary_set
    pred = (probs[..., 1] >= 0.3).astype(int)
    np.testing.assert_allclose(
        rm.sensitivity(probs, y, threshold=0.3), [recall_score(y, d) for d in pred]
    )


def test_multiclass_metrics_match_sklearn(multiclass_set):
    probs, y = multiclass_set
    pred = probs.argmax(axis=2)
    np.testing.assert_allclose(rm.accuracy(probs, y), [accuracy_score(y, d) for d in pred])
    np.testing.assert_allclose(
        rm.balanced_accuracy(probs, y), [balanced_accuracy_score(y, d) for d in pred]
    )
    np.testing.assert_allclose(
        rm.auroc(probs, y),
        [roc_auc_score(y, p, multi_class="ovr", average="macro") for p in probs],
    )
    expected_ap = [
        np.mean([average_precision_score(y == c, p[:, c]) for c in range(4)]) for p in probs
    ]
    np.testing.assert_allclose(rm.average_precision(probs, y), expected_ap)


def test_multilabel_auroc_is_per_label_mean():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=(60, 3))
    probs = np.clip(0.4 * y[None] + rng.uniform(0, 0.6, size=(4, 60, 3)), 0, 1)
    expected = [roc_auc_score(y, p, average="macro") for p in probs]
    np.testing.assert_allclose(rm.multilabel_auroc(probs, y), expected)


def test_undefined_auroc_is_nan():
    probs = np.stack([np.full((1, 5), 0.4), np.full((1, 5), 0.6)], axis=-1)
    assert np.isnan(rm.auroc(probs, np.ones(5, dtype=int))).all()
    assert np.isnan(rm.average_precision(probs, np.zeros(5, dtype=int))).all()


# --------------------------------------------------------------------------- calibration


def direct_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int, adaptive: bool) -> float:
    n = conf.size
    if adaptive:
        order = np.argsort(conf, kind="stable")
        bins = np.array_split(order, n_bins)
    else:
        edges = np.linspace(0, 1, n_bins + 1)
        bins = [
            np.where(((conf > lo) | ((lo == 0) & (conf == 0))) & (conf <= hi))[0]
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
    total = 0.0
    for idx in bins:
        if len(idx):
            total += len(idx) / n * abs(correct[idx].mean() - conf[idx].mean())
    return total


@pytest.mark.parametrize("adaptive", [False, True])
def test_ece_matches_direct_loop(binary_set, multiclass_set, adaptive):
    for probs, y in (binary_set, multiclass_set):
        conf = probs.max(axis=2)
        correct = (probs.argmax(axis=2) == y[None]).astype(float)
        expected = [direct_ece(conf[m], correct[m], 15, adaptive) for m in range(len(probs))]
        got = rm.adaptive_ece(probs, y) if adaptive else rm.ece(probs, y)
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_ece_hand_value():
    # Two samples, confidence 0.9 both in the last bin, one correct: |0.5 − 0.9| = 0.4.
    probs = np.array([[[0.1, 0.9], [0.1, 0.9]]])
    np.testing.assert_allclose(rm.ece(probs, np.array([1, 0])), [0.4])


def test_nll_and_brier_match_sklearn(binary_set, multiclass_set):
    probs, y = binary_set
    np.testing.assert_allclose(
        rm.nll(probs, y), [log_loss(y, p, labels=[0, 1]) for p in probs], rtol=1e-9
    )
    np.testing.assert_allclose(rm.brier(probs, y), [brier_score_loss(y, p[:, 1]) for p in probs])
    probs, y = multiclass_set
    np.testing.assert_allclose(
        rm.nll(probs, y), [log_loss(y, p, labels=range(4)) for p in probs], rtol=1e-9
    )
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(
        rm.brier(probs, y), [((p - onehot) ** 2).sum(axis=1).mean() for p in probs]
    )
