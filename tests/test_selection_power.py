"""Every selection row states its power: the bootstrap standard error of the test gain and the
smallest true gain its test split detects at 80 % power, (z_{1−α/2} + z_{0.8}) · SE."""

from __future__ import annotations

import numpy as np
import pytest

from rashomon import schema as S
from rashomon.decide.desiderata import Desideratum, accuracy
from rashomon.decide.selection import (
    best_in_set,
    bootstrap_gain,
    bootstrap_se,
    minimum_detectable_gain,
    robustness_selection,
    select_one,
)
from rashomon.errors import RashomonError

Z975, Z80 = 1.959963984540054, 0.8416212335729143  # standard normal quantiles


def test_minimum_detectable_gain_by_hand():
    assert minimum_detectable_gain(0.05) == pytest.approx((Z975 + Z80) * 0.05)  # 0.1401
    assert minimum_detectable_gain(0.05) == pytest.approx(0.140079, abs=1e-6)
    # α = 0.10: z_0.95 = 1.644854
    assert minimum_detectable_gain(0.05, level=0.90) == pytest.approx((1.644854 + Z80) * 0.05)
    # at 50 % power the bar is the half-width of the normal interval, z · SE
    assert minimum_detectable_gain(0.05, power=0.5) == pytest.approx(Z975 * 0.05)
    assert np.isnan(minimum_detectable_gain(float("nan")))
    # a chosen model that agrees with the MAP model on every test patient: no spread, no bar
    assert np.isnan(minimum_detectable_gain(0.0))
    with pytest.raises(RashomonError, match="strictly in"):
        minimum_detectable_gain(0.05, level=1.0)


def test_bootstrap_se_by_hand():
    assert bootstrap_se([-1.0, 1.0]) == pytest.approx(np.sqrt(2.0))  # sd with n − 1
    assert bootstrap_se([0.1, 0.2, 0.3, np.nan]) == pytest.approx(0.1)
    assert np.isnan(bootstrap_se([0.3])) and np.isnan(bootstrap_se([]))


def _paired(n_better: int, n_worse: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-hot probabilities of a chosen and a MAP model on n patients of label 0: the chosen
    model is right and the MAP model wrong on the first n_better, the reverse on the next
    n_worse, both right elsewhere."""
    y = np.zeros(n, np.int64)
    chosen = np.zeros(n, np.int64)
    ref = np.zeros(n, np.int64)
    ref[:n_better] = 1
    chosen[n_better : n_better + n_worse] = 1
    eye = np.eye(2)
    return eye[chosen], eye[ref], y


def test_select_one_states_the_power_of_an_accuracy_gain():
    # per-patient differences d: 20 × (+1), 10 × (−1), 70 × 0 over N = 100. The gain is the
    # mean 0.1; its standard error sqrt(var(d) / N) = sqrt((0.3 − 0.01) / 100) = 0.05385, so
    # the test split detects a true gain of (1.96 + 0.84) · 0.05385 = 0.1509 at 80 % power
    chosen, ref, y = _paired(20, 10, 100)
    se_by_hand = np.sqrt((0.3 - 0.1**2) / 100)
    row = select_one(
        np.array([0.9, 0.8, 0.7]),  # validation picks model 0
        np.array([0.9, 0.8, 0.7]),
        0.8,
        0.8,
        Desideratum("accuracy", True, accuracy),
        test_probs=np.stack([chosen, ref, ref]),
        map_test_probs=ref,
        test_y=y,
        n_boot=4000,
        seed=3,
    )
    assert row[S.TEST_GAIN] == pytest.approx(0.1)
    assert row[S.GAIN_SE] == pytest.approx(se_by_hand, rel=0.05)
    assert row[S.MIN_DETECTABLE_GAIN] == pytest.approx((Z975 + Z80) * se_by_hand, rel=0.05)
    assert row[S.MIN_DETECTABLE_GAIN] == pytest.approx(0.1509, rel=0.05)
    # exactly the replicates of the interval beside it: the same bootstrap, the same seed
    *_, reps = bootstrap_gain(accuracy, chosen, ref, y, n_boot=4000, seed=3)
    assert row[S.GAIN_SE] == np.std(reps, ddof=1)
    assert row[S.MIN_DETECTABLE_GAIN] == pytest.approx((Z975 + Z80) * np.std(reps, ddof=1))
    # the observed gain 0.1 is below the 80 %-power bar: a real gain of 0.1 is missed often
    assert row[S.TEST_GAIN] < row[S.MIN_DETECTABLE_GAIN]


def test_power_shrinks_with_the_test_split_and_is_nan_without_a_bootstrap():
    small = select_one(
        np.array([1.0, 0.0]),
        np.array([1.0, 0.0]),
        0.0,
        0.0,
        Desideratum("accuracy", True, accuracy),
        test_probs=np.stack([_paired(20, 10, 100)[0]] * 2),
        map_test_probs=_paired(20, 10, 100)[1],
        test_y=np.zeros(100, np.int64),
        n_boot=2000,
    )
    big = select_one(
        np.array([1.0, 0.0]),
        np.array([1.0, 0.0]),
        0.0,
        0.0,
        Desideratum("accuracy", True, accuracy),
        test_probs=np.stack([_paired(80, 40, 400)[0]] * 2),
        map_test_probs=_paired(80, 40, 400)[1],
        test_y=np.zeros(400, np.int64),
        n_boot=2000,
    )
    # four times the patients with the same differences: half the standard error
    assert big[S.GAIN_SE] / small[S.GAIN_SE] == pytest.approx(0.5, rel=0.08)
    # a desideratum without a metric function has no bootstrap, hence no power statement
    row = select_one(
        np.array([1.0, 0.0]), np.array([1.0, 0.0]), 0.0, 0.0, Desideratum("robust", True)
    )
    assert np.isnan(row[S.GAIN_SE]) and np.isnan(row[S.MIN_DETECTABLE_GAIN])


def test_best_in_set_and_robustness_rows_carry_the_power_columns():
    chosen, ref, y = _paired(20, 10, 100)
    table = best_in_set(
        {"accuracy": [0.9, 0.7]},
        {"accuracy": [0.9, 0.7]},
        {"accuracy": 0.8},
        {"accuracy": 0.8},
        [Desideratum("accuracy", True, accuracy)],
        test_probs=np.stack([chosen, ref]),
        map_test_probs=ref,
        test_y=y,
        n_boot=500,
    )
    row = table.iloc[0]
    assert row[S.MIN_DETECTABLE_GAIN] == pytest.approx(
        minimum_detectable_gain(row[S.GAIN_SE]), rel=1e-12
    )
    cols = list(table.columns)
    assert cols.index(S.GAIN_SE) == cols.index(S.GAIN_CI_HIGH) + 1  # the schema's order
    # corrupted correctness [1 + M, N]: MAP first; model 1 fixes 20 patients, breaks 10
    correct = np.ones((3, 100))
    correct[0, :20] = 0
    correct[1, 20:30] = 0
    correct[2] = correct[0]
    rob = robustness_selection(correct, correct, n_boot=4000, seed=1)
    assert rob[S.TEST_GAIN] == pytest.approx(0.1)
    assert rob[S.GAIN_SE] == pytest.approx(np.sqrt(0.29 / 100), rel=0.05)
    assert rob[S.MIN_DETECTABLE_GAIN] == pytest.approx(minimum_detectable_gain(rob[S.GAIN_SE]))
