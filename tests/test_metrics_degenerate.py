"""The degenerate-model check on hand-made label arrays, balanced accuracy against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from rashomon.errors import RashomonError
from rashomon.metrics import degeneracy
from rashomon.metrics.degenerate import CHANCE_MARGIN, DOMINANT_SHARE, multilabel_degeneracy

HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def test_thresholds_are_the_documented_ones():
    assert (DOMINANT_SHARE, CHANCE_MARGIN) == (0.95, 0.05)


def test_near_constant_seven_classes_with_the_headline_sentence():
    # 100 patients, 10 per class except nv (40): the model says nv for 97 of them and gets the
    # 40 nv right, 1 mel right, 0 else → recalls (0,0,0,0,0.1,1,0) → balanced accuracy 1.1/7.
    y = np.repeat(np.arange(7), [10, 10, 10, 10, 10, 40, 10])
    pred = np.full(100, 5)
    pred[y == 4] = [4] + [5] * 9
    pred[y == 0] = [5] * 8 + [1, 2]
    d = degeneracy(pred, y)
    assert d.dominant_class == 5 and d.dominant_share == pytest.approx(0.97)
    assert d.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, pred))
    assert d.balanced_accuracy == pytest.approx(1.1 / 7)
    assert d.chance == pytest.approx(1 / 7)
    assert d.near_constant and d.near_chance and d.degenerate
    assert d.sentence(HAM) == (
        "The trained model predicts 'nv' for 97 % of test patients (balanced accuracy 0.16, "
        "chance 0.14): multiplicity of a near-constant classifier is no finding; train longer "
        "or check the data."
    )
    assert d.describe(split="validation").startswith("predicts 'class 5' for 97 % of validation")


def test_dominant_share_boundary():
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    pred = np.ones(100, int)
    pred[:5] = 0  # class 1 for 95 of 100 patients: at the threshold
    at = degeneracy(pred, y)
    assert at.dominant_share == 0.95 and at.near_constant
    pred[5] = 0  # 94 %
    below = degeneracy(pred, y)
    assert below.dominant_share == 0.94 and not below.near_constant


def test_near_chance_without_a_dominant_class():
    # binary, balanced: recalls 0.6 and 0.5 → 0.55 = chance + 0.05 (flagged); 0.6 and 0.52 not
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    pred = np.r_[np.zeros(30), np.ones(20), np.zeros(25), np.ones(25)].astype(int)
    d = degeneracy(pred, y)
    assert d.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, pred)) == 0.55
    assert d.near_chance and not d.near_constant and d.dominant_share == 0.55
    assert d.sentence(["benign", "malignant"]) == (
        "The trained model is near chance on test patients (balanced accuracy 0.55, chance "
        "0.50; it predicts 'benign' for 55 %): multiplicity of a near-chance classifier is no "
        "finding; train longer or check the data."
    )
    pred[74] = 1  # one more malignant patient right: recall 0.52
    ok = degeneracy(pred, y)
    assert ok.balanced_accuracy == pytest.approx(0.56) and not ok.degenerate
    # worse than chance is no better than a constant model either
    assert degeneracy(1 - y, y).near_chance


def test_chance_counts_the_classes_present():
    # class 2 never occurs in y: a constant model scores 1/2 by scikit-learn's definition
    y = np.array([0, 0, 1, 1, 0, 1])
    d = degeneracy(np.zeros(6, int), y)
    assert d.chance == 0.5 and d.balanced_accuracy == balanced_accuracy_score(y, np.zeros(6))


def test_bad_shapes():
    with pytest.raises(RashomonError, match=r"must be \[N\]"):
        degeneracy(np.zeros(3), np.zeros(4))
    with pytest.raises(RashomonError, match="N > 0"):
        degeneracy([], [])


def test_a_model_that_finds_a_rare_class_is_not_constant():
    """95/5 task: the perfect classifier predicts the majority for 95 % of patients too; it is
    near-constant only when it also misses the minority (mean recall of the others ≤ 0.5)."""
    from rashomon.metrics.degenerate import MINORITY_RECALL

    y = np.r_[np.zeros(95), np.ones(5)].astype(int)
    perfect = degeneracy(y.copy(), y)
    assert perfect.dominant_share == 0.95 and perfect.balanced_accuracy == 1.0
    assert not perfect.near_constant and not perfect.degenerate
    pred = y.copy()
    pred[95:98] = 0  # finds 2 of the 5 positives: recall 0.4 ≤ MINORITY_RECALL
    assert MINORITY_RECALL == 0.5
    missed = degeneracy(pred, y)
    assert missed.dominant_share == 0.98 and missed.near_constant
    pred[95:98] = 1  # finds all 5 again, but also calls 3 negatives positive: 92 % majority
    assert not degeneracy(pred, y).near_constant


def test_multilabel_same_finding_vector_for_nearly_everyone():
    # 20 patients, 3 labels: 19 get no finding, one gets labels 0 and 2 → 95 %: near-constant
    preds = np.zeros((20, 3), int)
    preds[7] = [1, 0, 1]
    d = multilabel_degeneracy(preds)
    assert d.vector == (0, 0, 0) and d.vector_share == pytest.approx(0.95)
    assert d.near_constant and not d.near_chance and d.degenerate and d.mean_auroc is None
    assert d.sentence(["effusion", "mass", "hernia"]) == (
        "The trained model predicts no finding on any label for 95 % of test patients: "
        "multiplicity of a near-constant classifier is no finding; train longer or check the data."
    )
    # the most common vector can hold findings; the labels are named
    preds[:, 1] = 1
    preds[7] = [1, 1, 1]
    assert multilabel_degeneracy(preds).describe(["effusion", "mass", "hernia"]) == (
        "predicts exactly 'mass' for 95 % of test patients"
    )
    wide = np.ones((20, 6), int)  # past four findings the rest are counted
    assert multilabel_degeneracy(wide).describe(list("abcdef")) == (
        "predicts exactly 'a', 'b', 'c', 'd' and 2 more labels for 100 % of test patients"
    )
    preds[3] = [0, 0, 0]  # 18 of 20: 90 %, below the threshold
    assert not multilabel_degeneracy(preds).degenerate


def test_multilabel_near_chance_by_mean_per_label_auroc():
    rng = np.random.default_rng(0)
    preds = (rng.random((40, 3)) < 0.5).astype(int)  # varied vectors: not near-constant
    # labels' AUROC 0.50, 0.58 and one label with a single class (NaN): mean 0.54 ≤ 0.55
    d = multilabel_degeneracy(preds, auroc=[0.5, 0.58, np.nan])
    assert d.mean_auroc == pytest.approx(0.54) and d.near_chance and not d.near_constant
    share = f"{100 * d.vector_share:.0f} %"
    assert d.describe(["a", "b", "c"]).startswith(
        "is near chance on test patients (mean per-label AUROC 0.54, chance 0.50; it predicts "
    ) and d.describe().endswith(f"for {share})")
    assert not multilabel_degeneracy(preds, auroc=[0.5, 0.62, np.nan]).degenerate  # mean 0.56
    assert multilabel_degeneracy(preds, auroc=0.3).near_chance  # a mean given as one number
    assert multilabel_degeneracy(preds, auroc=[np.nan] * 3).mean_auroc is None


def test_multilabel_bad_shapes():
    with pytest.raises(RashomonError, match=r"\[N, L\]"):
        multilabel_degeneracy(np.zeros(5))
    with pytest.raises(RashomonError, match=r"one AUROC per label"):
        multilabel_degeneracy(np.zeros((5, 3)), auroc=[0.5, 0.5])
