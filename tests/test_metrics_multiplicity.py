"""Multiplicity metrics on hand-built sets with known answers, and Rashomon capacity against a
brute-force channel-capacity search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import rashomon.metrics as rm
from rashomon.errors import RashomonError
from rashomon.metrics.multiplicity import (
    blahut_arimoto,
    capacity_bounds,
    channel_capacity,
    convergence_sizes,
)


def binary_probs(p1: np.ndarray) -> np.ndarray:
    p1 = np.asarray(p1, dtype=np.float64)
    return np.stack([1.0 - p1, p1], axis=-1)


# --------------------------------------------------------------------------- label metrics


def test_identical_models_have_no_multiplicity():
    preds = np.tile([0, 1, 1, 0, 1], (4, 1))
    ref = preds[0]
    assert rm.ambiguity(preds, ref) == 0.0
    assert rm.discrepancy(preds, ref) == 0.0
    np.testing.assert_array_equal(rm.disagreement(preds), np.zeros(5))
    np.testing.assert_array_equal(rm.self_consistency(preds), np.ones(5))
    assert rm.churn(preds, preds) == 0.0
    probs = np.tile(binary_probs([0.2, 0.7, 0.9, 0.1, 0.6])[None], (4, 1, 1))
    np.testing.assert_allclose(rm.rashomon_capacity(probs), np.ones(5), atol=1e-9)


def test_two_models_disagreeing_on_half():
    ref = np.array([0, 0, 0, 0])
    preds = np.array([[0, 0, 1, 1], [0, 0, 0, 0]])
    assert rm.discrepancy(preds, ref) == 0.5
    assert rm.ambiguity(preds, ref) == 0.5
    np.testing.assert_array_equal(rm.flip_rate(preds, ref), [0, 0, 0.5, 0.5])


def test_ambiguity_exceeds_discrepancy_when_models_flip_different_samples():
    ref = np.array([0, 0, 0, 0])
    preds = np.array([[1, 0, 0, 0], [0, 1, 0, 0]])
    assert rm.ambiguity(preds, ref) == 0.5
    assert rm.discrepancy(preds, ref) == 0.25


def test_disagreement_binary_and_multiclass():
    # 1 of 4 models predicts 1: p̂ = 0.25, 4·p̂·(1−p̂) = 0.75; 2 of 4: 1.0.
    preds = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(rm.disagreement(preds), [0.75, 1.0, 0.0])
    # Multiclass extension reduces to the binary form for C = 2 and is 1 for uniform votes.
    np.testing.assert_allclose(rm.disagreement(preds, num_classes=2), [0.75, 1.0, 0.0])
    uniform = np.array([[0, 0], [1, 0], [2, 0]])
    np.testing.assert_allclose(rm.disagreement(uniform), [1.0, 0.0])
    # Votes (2, 1, 0) over 3 classes: 3/2 · (1 − (4/9 + 1/9)) = 2/3.
    np.testing.assert_allclose(rm.disagreement(np.array([[0], [0], [1]]), num_classes=3), [2 / 3])


def test_self_consistency_matches_pair_enumeration():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 3, size=(6, 20))
    expected = [
        np.mean([preds[i, n] == preds[j, n] for i, j in itertools.permutations(range(6), 2)])
        for n in range(20)
    ]
    np.testing.assert_allclose(rm.self_consistency(preds), expected)
    # 1 of 4 models votes 1: 1 − 2·1·3/(4·3) = 0.5.
    np.testing.assert_allclose(rm.self_consistency(np.array([[1], [0], [0], [0]])), [0.5])


def test_self_consistency_needs_two_models():
    with pytest.raises(RashomonError, match="at least 2 models"):
        rm.self_consistency(np.array([[0, 1]]))


def test_churn_single_models_and_sets():
    assert rm.churn(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 1])) == 0.5
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, size=(3, 10))
    b = rng.integers(0, 2, size=(5, 10))
    expected = np.mean([np.mean(a[i] != b[j]) for i in range(3) for j in range(5)])
    assert rm.churn(a, b) == pytest.approx(expected)


def test_viable_prediction_range():
    probs = np.stack([binary_probs([0.1, 0.6]), binary_probs([0.3, 0.2]), binary_probs([0.2, 0.9])])
    vpr = rm.viable_prediction_range(probs)
    assert vpr.shape == (2, 2, 2)
    np.testing.assert_allclose(vpr[:, 1, :], [[0.1, 0.3], [0.2, 0.9]])
    np.testing.assert_allclose(vpr[:, 0, :], [[0.7, 0.9], [0.1, 0.8]])


def test_torch_inputs_are_accepted():
    preds = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])
    assert rm.discrepancy(preds, torch.zeros(4, dtype=torch.long)) == 0.5
    probs = torch.tensor(binary_probs([[0.2, 0.8], [0.4, 0.6]]), dtype=torch.float32)
    assert isinstance(rm.viable_prediction_range(probs), np.ndarray)


# --------------------------------------------------------------------------- capacity


def mutual_information_bits(r: np.ndarray, w: np.ndarray) -> float:
    q = r @ w
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(w > 0, w * np.log2(w / q[None, :]), 0.0)
    return float(r @ terms.sum(axis=1))


def brute_force_capacity_bits(w: np.ndarray) -> float:
    """Max of I(X; Y) over input distributions: fine grid for 2 inputs, multi-start
    Nelder–Mead over softmax parameters otherwise."""
    k = w.shape[0]
    if k == 2:
        grid = np.linspace(0, 1, 10001)
        return float(max(mutual_information_bits(np.array([a, 1 - a]), w) for a in grid))
    best = 0.0
    rng = np.random.default_rng(0)
    for _ in range(8):

        def neg(z: np.ndarray) -> float:
            r = np.exp(z - z.max())
            return -mutual_information_bits(r / r.sum(), w)

        res = minimize(
            neg,
            rng.normal(size=k),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000},
        )
        best = max(best, -res.fun)
    return best


def test_capacity_of_opposite_certain_models_is_number_of_classes():
    probs = np.stack([binary_probs([0.0]), binary_probs([1.0])])
    np.testing.assert_allclose(rm.rashomon_capacity(probs), [2.0], atol=1e-6)
    eye = np.eye(3)[:, None, :]  # three models, each certain of a different class
    np.testing.assert_allclose(rm.rashomon_capacity(eye), [3.0], atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 2), (3, 2), (3, 3), (4, 3)])
def test_capacity_matches_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        w = rng.dirichlet(np.ones(shape[1]), size=shape[0])
        expected = 2 ** brute_force_capacity_bits(w)  # a feasible input: a lower bound itself
        got = rm.rashomon_capacity(w[:, None, :])[0]
        assert expected - 1e-9 <= got <= expected + 1e-7
        assert 1.0 <= got <= shape[1]


def scipy_capacity(w: np.ndarray) -> tuple[float, float]:
    """2^capacity of one channel [K, C] by SLSQP over the simplex (analytic gradient), and the
    certified upper bound max_k D(W_k || q) at scipy's optimum, both as e^nats = 2^bits."""
    k = w.shape[0]

    def neg_info(r: np.ndarray) -> tuple[float, np.ndarray]:
        d = (w * np.log(w / (np.clip(r, 1e-300, None) @ w))).sum(axis=1)
        return -(r @ d), -(d - 1.0)

    res = minimize(
        neg_info,
        np.full(k, 1.0 / k),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones(k)}],
        options={"ftol": 1e-16, "maxiter": 2000},
    )
    r = np.clip(res.x, 0.0, None)
    r /= r.sum()
    d = (w * np.log(w / (r @ w))).sum(axis=1)
    return float(np.exp(r @ d)), float(np.exp(d.max()))


def slow_channels(seed: int, c: int, m: int, noise: float, n: int = 4) -> np.ndarray:
    """[M, N, C] sets of near-identical models (one shared logit plus small per-model noise):
    the optimal input weights of most models vanish and Blahut–Arimoto crawls."""
    rng = np.random.default_rng(seed)
    logits = 2.0 * rng.normal(size=(1, n, c)) + noise * rng.normal(size=(m, n, c))
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


@pytest.mark.parametrize(
    ("c", "m", "noise"), [(5, 30, 0.05), (7, 30, 0.05), (6, 12, 0.02), (5, 16, 0.1)]
)
def test_capacity_of_slow_channels_matches_scipy(c, m, noise):
    probs = slow_channels(c + m, c, m, noise)
    got = rm.rashomon_capacity(probs)
    lower, upper = capacity_bounds(probs)
    np.testing.assert_array_equal(lower, got)
    assert (upper - lower).max() <= 1e-9  # the certificate the solver stops on
    for n in range(probs.shape[1]):
        expected, expected_upper = scipy_capacity(probs[:, n])
        # Both are feasible inputs (lower bounds); each side's upper bound brackets the other.
        assert expected - 1e-9 <= got[n] <= expected_upper + 1e-12
        assert lower[n] - 1e-12 <= expected <= upper[n] + 1e-12
    # These channels are the slow case: 1,000 Blahut–Arimoto iterations (the former default)
    # stop well short, by more than the 1e-5 this module promises.
    capped = np.exp2(blahut_arimoto(probs.transpose(1, 0, 2), max_iter=1000))
    assert (got - capped).max() > 1e-5


def test_capped_iterations_still_bracket_the_capacity():
    probs = slow_channels(1, 6, 20, 0.1)
    exact = rm.rashomon_capacity(probs)
    lower, upper = capacity_bounds(probs, max_iter=3)
    assert (lower <= exact + 1e-12).all() and (upper >= exact - 1e-12).all()
    assert (upper - lower).max() > 1e-6  # three Newton steps are not enough to certify


def test_blahut_arimoto_stops_on_the_certified_gap():
    rng = np.random.default_rng(11)
    w = rng.dirichlet(np.ones(3), size=(6, 2))  # 6 channels with 2 inputs: BA converges fast
    fast = channel_capacity(w)
    np.testing.assert_allclose(blahut_arimoto(w), fast, atol=2e-9)
    np.testing.assert_allclose(blahut_arimoto(w, tol=1e-3), fast, atol=2e-3)


def test_binary_reduction_to_extreme_rows_keeps_capacity():
    rng = np.random.default_rng(3)
    p1 = rng.uniform(0.05, 0.95, size=(30, 6))
    probs = binary_probs(p1)
    full_bits = channel_capacity(probs.transpose(1, 0, 2))
    np.testing.assert_allclose(rm.rashomon_capacity(probs), 2**full_bits, atol=2e-9)


def test_working_set_matches_all_rows():
    # Multiclass sets larger than the working set (16 rows for C <= 4, 24 for C = 6) take the
    # working-set path; the reference solves the channel of all rows at once.
    rng = np.random.default_rng(7)
    for c, noise in ((3, 0.7), (5, 0.7), (6, 0.05)):
        logits = 2 * rng.normal(size=(1, 25, c)) + noise * rng.normal(size=(80, 25, c))
        probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
        full_bits = channel_capacity(probs.transpose(1, 0, 2))
        np.testing.assert_allclose(rm.rashomon_capacity(probs), 2**full_bits, atol=2e-9)
        lower, upper = capacity_bounds(probs)
        assert (upper - lower).max() <= 1e-9


def test_capacity_is_vectorised_over_samples():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(3), size=(5, 7))
    together = rm.rashomon_capacity(probs)
    apart = [rm.rashomon_capacity(probs[:, n : n + 1])[0] for n in range(7)]
    np.testing.assert_allclose(together, apart, atol=1e-12)


# --------------------------------------------------------------------------- thresholds, flips


def test_decision_flips_at_threshold():
    ref = binary_probs([0.2, 0.6, 0.8, 0.4])
    probs = np.stack([binary_probs([0.3, 0.55, 0.9, 0.1]), binary_probs([0.6, 0.4, 0.7, 0.2])])
    flips = rm.decision_flips(probs, ref, threshold=0.5)
    # model 0 flips nothing; model 1 flips samples 0 and 1.
    assert flips == {"flip_share": 0.5, "max_model_flip": 0.5, "mean_model_flip": 0.25}
    # At 0.35 the MAP decides [0, 1, 1, 1]; model 0 flips sample 3, model 1 flips samples 0, 3.
    flips = rm.decision_flips(probs, ref, threshold=0.35)
    assert flips["flip_share"] == 0.5
    assert flips["max_model_flip"] == 0.5
    assert flips["mean_model_flip"] == 0.375


def test_threshold_for_sensitivity():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    y = np.array([1, 1, 0, 1, 1, 0, 0])
    t = rm.threshold_for_sensitivity(scores, y, 0.75)
    assert t == 0.6  # 3 of 4 positives at or above 0.6; any higher threshold keeps 2 of 4
    assert rm.threshold_for_sensitivity(scores, y, 1.0) == 0.5
    per_model = rm.threshold_for_sensitivity(np.stack([scores, scores[::-1]]), y, 0.5)
    np.testing.assert_allclose(per_model, [0.8, 0.6])
    with pytest.raises(RashomonError, match="target sensitivity"):
        rm.threshold_for_sensitivity(scores, y, 1.5)


# --------------------------------------------------------------------------- groups, convergence


def test_multiplicity_by_group():
    ref = np.array([0, 0, 0, 0, 1, 1])
    preds = np.array([[1, 0, 0, 0, 1, 1], [0, 1, 0, 0, 1, 0]])
    groups = np.array([0, 0, 0, 0, 1, 1])
    table = rm.multiplicity_by_group(
        preds, ref, groups, attribute_label="intensity", derived=True, level_names=["low", "high"]
    )
    low, high = table.iloc[0], table.iloc[1]
    assert list(table["group"]) == ["low", "high"]
    assert table["derived"].all() and (table["attribute"] == "intensity").all()
    assert low["ambiguity"] == 0.5 and low["discrepancy"] == 0.25
    assert high["ambiguity"] == 0.5 and high["discrepancy"] == 0.5
    assert low["mean_disagreement"] == pytest.approx(0.5)  # two samples at p̂ = 1/2
    with pytest.raises(RashomonError, match="only 1 group"):
        rm.multiplicity_by_group(preds, ref, np.zeros(6, dtype=int))


def test_convergence_curve_uses_nested_subsets():
    assert convergence_sizes(1000) == [10, 30, 100, 300, 1000]
    assert convergence_sizes(50) == [10, 30, 50]
    rng = np.random.default_rng(5)
    probs = binary_probs(rng.uniform(size=(120, 40)))
    ref = (probs[0, :, 1] >= 0.5).astype(int)
    curve = rm.convergence_curve(probs, ref, seed=0)
    assert list(curve["models"]) == [10, 30, 100, 120]
    assert np.all(np.diff(curve["ambiguity"]) >= 0)
    assert np.all(np.diff(curve["mean_capacity"]) >= -1e-9)  # more rows never lower capacity
    full = rm.ambiguity(rm.predict_labels(probs), ref)
    assert curve["ambiguity"].iloc[-1] == full
    again = rm.convergence_curve(probs, ref, seed=0)
    assert curve.equals(again)


# --------------------------------------------------------------------------- summary


def test_multiplicity_summary_binary():
    ref = binary_probs([0.2, 0.6, 0.8, 0.4])
    probs = np.stack([binary_probs([0.3, 0.55, 0.9, 0.1]), binary_probs([0.6, 0.4, 0.7, 0.2])])
    groups = {"random": np.array([0, 1, 0, 1])}
    per_sample, summary = rm.multiplicity_summary(
        probs, ref, groups, {"random": True}, extra_thresholds={"sens": 0.35}
    )
    assert summary["ambiguity"] == 0.5 and summary["discrepancy"] == 0.5
    assert summary["flip_share@sens"] == 0.5
    np.testing.assert_array_equal(per_sample["ambiguous"], [True, True, False, False])
    np.testing.assert_allclose(per_sample["vpr_width"], [0.3, 0.15, 0.2, 0.1])
    np.testing.assert_allclose(per_sample["capacity"], rm.rashomon_capacity(probs))
    assert summary["mean_capacity"] == pytest.approx(per_sample["capacity"].mean())
    rows = summary["groups"]["random"]
    assert [r["derived"] for r in rows] == [True, True]
    assert [r["ambiguity"] for r in rows] == [0.5, 0.5]


def test_multiplicity_summary_multilabel_audits_each_label_as_binary():
    rng = np.random.default_rng(6)
    probs = rng.uniform(size=(5, 12, 3))
    ref = rng.uniform(size=(12, 3))
    per_sample, summary = rm.multiplicity_summary(probs, ref, kind="multilabel")
    for label in range(3):
        pl = binary_probs(probs[..., label])
        ref_labels = (ref[:, label] >= 0.5).astype(int)
        assert summary["labels"][label]["ambiguity"] == rm.ambiguity(
            rm.predict_labels(pl), ref_labels
        )
        np.testing.assert_allclose(per_sample[f"label{label}.capacity"], rm.rashomon_capacity(pl))
    assert summary["ambiguity"] == pytest.approx(
        np.mean([s["ambiguity"] for s in summary["labels"]])
    )
