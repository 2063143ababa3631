"""Ensembles with abstention: hand-made vote matrices with known coverage and ambiguity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rashomon.decide.ensemble import (
    arbitrary_patients,
    binomial_pvalues,
    draw_ensembles,
    ensemble_curves,
    ensemble_predict,
    residual_ambiguity,
    smallest_k,
)
from rashomon.errors import RashomonError


def probs_from_preds(preds: np.ndarray, num_classes: int = 2, conf: float = 0.9) -> np.ndarray:
    """[M, N] labels -> [M, N, C] probabilities putting `conf` on the label."""
    p = np.full(preds.shape + (num_classes,), (1 - conf) / (num_classes - 1))
    np.put_along_axis(p, preds[..., None], conf, axis=-1)
    return p


def test_binomial_pvalues_match_scipy():
    for n in range(0, 25):
        for a in range(0, n + 1):
            want = stats.binomtest(a, n, 0.5).pvalue if n > 0 else 1.0
            got = binomial_pvalues(a, n - a)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (a, n)


def test_vote_share_abstention_on_hand_votes():
    # 5 models, 4 samples; votes for class 1: 5, 4, 3, 2 of 5.
    preds = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    out = ensemble_predict(probs_from_preds(preds), [[0, 1, 2, 3, 4]], rule="share", threshold=0.8)
    np.testing.assert_array_equal(out.labels[0], [1, 1, 1, 0])
    np.testing.assert_allclose(out.vote_share[0], [1.0, 0.8, 0.6, 0.6])
    np.testing.assert_array_equal(out.covered[0], [True, True, False, False])
    out = ensemble_predict(probs_from_preds(preds), [[0, 1, 2, 3, 4]], rule="share", threshold=0.6)
    np.testing.assert_array_equal(out.covered[0], [True, True, True, True])
    # Binomial: 5 of 5 gives p = 2/32 = 0.0625 > 0.05, so even unanimity abstains at k = 5.
    out = ensemble_predict(
        probs_from_preds(preds), [[0, 1, 2, 3, 4]], rule="binomial", threshold=0.05
    )
    np.testing.assert_allclose(out.pvalue[0], [0.0625, 0.375, 1.0, 1.0])
    assert not out.covered.any()
    out = ensemble_predict(
        probs_from_preds(preds), [[0, 1, 2, 3, 4]], rule="binomial", threshold=0.1
    )
    np.testing.assert_array_equal(out.covered[0], [True, False, False, False])


def test_ties_abstain_and_mean_breaks_them_without_abstention():
    preds = np.array([[1, 0], [0, 0]])
    p = probs_from_preds(preds)
    p[0, 0] = [0.05, 0.95]  # model 0 is more confident in class 1 than model 1 in class 0
    out = ensemble_predict(p, [[0, 1]], rule="share", threshold=0.5)
    np.testing.assert_array_equal(out.covered[0], [False, True])
    out = ensemble_predict(p, [[0, 1]], rule="none")
    np.testing.assert_array_equal(out.covered[0], [True, True])
    np.testing.assert_array_equal(out.labels[0], [1, 0])  # tie broken by the mean probability


def test_mean_combine_can_differ_from_vote():
    # Two models say 0 at 0.55, one says 1 at 0.99: vote -> 0, mean -> 1.
    p = np.array([[[0.55, 0.45]], [[0.55, 0.45]], [[0.01, 0.99]]])
    assert ensemble_predict(p, [[0, 1, 2]], combine="vote", rule="none").labels[0, 0] == 0
    assert ensemble_predict(p, [[0, 1, 2]], combine="mean", rule="none").labels[0, 0] == 1


def test_residual_ambiguity_hand_example():
    labels = np.array([[0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    covered = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 1, 0]], bool)
    ra, pw = residual_ambiguity(labels, covered, 2)
    # sample 0: covered labels {0, 0} agree; 1: {1, 0} differ; 2: {1, 1, 1} agree;
    # 3: {0, 1} differ -> 2 of 4 samples.
    assert ra == pytest.approx(0.5)
    # disagreeing covered pairs per sample: 0, 1, 0, 1 -> mean 0.5 of 3 pairs.
    assert pw == pytest.approx(0.5 / 3)
    assert np.isnan(residual_ambiguity(labels[:1], covered[:1], 2)[0])


def test_draw_ensembles_disjoint_seeded_and_refuses_large_k():
    idx = draw_ensembles(10, 3, seed=1)
    assert idx.shape == (3, 3) and len(np.unique(idx)) == 9
    np.testing.assert_array_equal(idx, draw_ensembles(10, 3, seed=1))
    assert not np.array_equal(idx, draw_ensembles(10, 3, seed=2))
    with pytest.raises(RashomonError, match=r"k=11 exceeds the Rashomon set \(10 models\)"):
        draw_ensembles(10, 11)


def test_curves_identical_models_have_no_ambiguity():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    one = probs_from_preds(rng.integers(0, 2, (1, 50)))
    p = np.repeat(one, 20, axis=0)
    curves = ensemble_curves(p, y, ks=[1, 5], taus=[0.8], alphas=[0.05], n_partitions=2)
    plain = curves[curves["rule"] == "none"]
    assert (plain["coverage"] == 1).all() and (plain["residual_ambiguity"] == 0).all()
    acc = (one[0].argmax(-1) == y).mean()
    np.testing.assert_allclose(plain["covered_accuracy"], acc)
    binom = curves[(curves["rule"] == "binomial") & (curves["k"] == 5)]
    assert (binom["coverage"] == 0).all()  # 5 unanimous votes: p = 0.0625 > 0.05
    with pytest.raises(RashomonError, match="k=21"):
        ensemble_curves(p, y, ks=[21])


def test_curves_values_on_a_split_set_and_smallest_k():
    # 12 models; on sample 0 models 0..5 say 1 and 6..11 say 0, elsewhere all say the truth.
    n = 10
    y = np.zeros(n, int)
    preds = np.zeros((12, n), int)
    preds[:6, 0] = 1
    p = probs_from_preds(preds)
    curves = ensemble_curves(
        p,
        y,
        ks=[1, 6],
        taus=[1.0],
        alphas=[],
        combines=["vote"],
        n_ensembles=2,
        n_partitions=20,
        seed=0,
    )
    single = curves[(curves["k"] == 1) & (curves["rule"] == "none")].iloc[0]
    # Two single models disagree on sample 0 with probability 6*6*2 / (12*11) = 6/11.
    assert single["residual_ambiguity"] == pytest.approx(0.1 * 6 / 11, abs=0.03)
    assert single["coverage"] == 1
    unanimous = curves[(curves["k"] == 1) & (curves["rule"] == "share")].iloc[0]
    assert unanimous["coverage"] == 1  # a single model is always unanimous
    strict6 = curves[(curves["k"] == 6) & (curves["rule"] == "share")].iloc[0]
    assert strict6["residual_ambiguity"] == 0
    assert strict6["covered_accuracy"] == 1.0
    mins = smallest_k(curves, target=0.01)
    row = mins[mins["rule"] == "share"].iloc[0]
    assert row["k_min"] == 6 and row["coverage"] == pytest.approx(strict6["coverage"])
    assert row["single_model_ambiguity"] == pytest.approx(single["residual_ambiguity"])


def test_arbitrary_patients_table():
    preds = np.array([[0, 1, 1], [0, 1, 0], [0, 1, 0], [0, 0, 0]])
    y = np.array([0, 1, 0])
    ref = np.array([0, 1, 0])
    table = arbitrary_patients(
        probs_from_preds(preds), y, ref, k=2, rule="share", threshold=1.0, seed=0
    )
    # Sample 0 is unanimous; samples 1 and 2 have one flip each among 4 models.
    np.testing.assert_array_equal(table["sample"], [1, 2])
    np.testing.assert_allclose(table["flip_rate"], [0.25, 0.25])
    np.testing.assert_array_equal(table["true_label"], [1, 0])
    # The flipping model sits in one of the two ensembles of 2, which abstains at tau = 1.
    np.testing.assert_allclose(table["ensemble_abstain_rate"], [0.5, 0.5])
    assert not table["ensembles_disagree"].any()
    full = arbitrary_patients(probs_from_preds(preds), y, ref, k=2, only_arbitrary=False)
    assert len(full) == 3 and not full["ambiguous"].iloc[0]
