"""The validity study's compare table on hand-made run directories (six test patients), every
value computed by hand; the size-matched yardstick on simulated populations of retrained models;
and the capacity study's table from a hand-made sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rashomon.compare import (
    ambiguity_growth,
    as_binary,
    capacity_study,
    compare_sets,
    expected_ambiguity,
    flag_agreement,
    flip_matrix,
    flip_rate_agreement,
    growth_grid,
    label_flips,
    load_set,
    models_for_ambiguity,
    rank_agreement,
    run_compare,
    size_matched_agreement,
)
from rashomon.errors import RashomonError
from rashomon.schema import find_in_set_column

MAP_P1 = [0.9, 0.8, 0.6, 0.4, 0.2, 0.1]  # MAP labels 1 1 1 0 0 0


def _probs(rows: list[list[float]]) -> np.ndarray:
    p1 = np.asarray(rows, dtype=np.float32)
    return np.stack([1 - p1, p1], axis=-1)


def _run_dir(
    root: Path,
    name: str,
    source: str,
    set_p1: list[list[float]],
    in_set: dict[float, list[bool]],
    accuracy: list[float] | None = None,
    summary: dict | None = None,
    subset: str = "last_layer",
) -> Path:
    d = root / name
    (d / "sample").mkdir(parents=True)
    cfg = {
        "seed": 0,
        "data": {"dataset": "breastmnist"},
        "sample": {
            "source": source,
            "subset": subset,
            "hessian": "kron",
            "kind": "nn",
            "epsilon": 0.02,
        },
    }
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    np.save(d / "sample" / "probs_test.npy", _probs(set_p1))
    np.save(d / "sample" / "map_probs_test.npy", _probs([MAP_P1])[0])
    pm = pd.DataFrame({"model": np.arange(len(set_p1)), "val_loss": 0.3})
    for eps, keep in in_set.items():
        pm[f"in_set@{eps}"] = keep
    pm.to_csv(d / "sample" / "per_model.csv", index=False)
    # what the sample stage records: the set's source, its resolved options, ε and the counts
    record = {
        "source": source,
        "options": {k: v for k, v in cfg["sample"].items() if k not in ("source", "epsilon")},
        "models": len(set_p1),
        "epsilon": 0.02,
        "on": "loss",
        "models_in_set": int(sum(in_set[0.02])),
        "survival": {f"{eps:g}": int(sum(keep)) for eps, keep in in_set.items()},
    }
    (d / "sample" / "summary.json").write_text(json.dumps(record | (summary or {"seconds": 1.0})))
    (d / "train").mkdir()
    (d / "train" / "summary.json").write_text(json.dumps({"seconds": 5.0, "test_accuracy": 0.8}))
    if accuracy is not None:  # evaluate/per_model_test.csv: MAP row (model -1), then the set
        (d / "evaluate").mkdir()
        ids = [-1] + [i for i, k in enumerate(in_set[0.02]) if k]
        pd.DataFrame({"model": ids, "accuracy": accuracy, "ece": 0.1}).to_csv(
            d / "evaluate" / "per_model_test.csv", index=False
        )
    return d


@pytest.fixture
def runs(tmp_path):
    truth = _run_dir(
        tmp_path,
        "retrain",
        "retrain",
        [
            [0.9, 0.8, 0.4, 0.4, 0.2, 0.1],  # flips patient 2
            [0.9, 0.8, 0.6, 0.6, 0.2, 0.1],  # flips patient 3
            [0.9, 0.8, 0.4, 0.6, 0.2, 0.1],  # flips 2 and 3
            MAP_P1,  # agrees with the MAP model
            [0.1, 0.2, 0.4, 0.6, 0.8, 0.9],
        ],  # flips all, but outside the set at ε = 0.02
        {0.02: [True, True, True, True, False], 0.05: [True] * 5},
        accuracy=[0.8, 0.7, 0.9, 0.6, 0.8],
        summary={"seconds": 120.0, "peak_memory_mb": 300.0, "models_in_set": 4},
    )
    laplace = _run_dir(
        tmp_path,
        "laplace",
        "laplace",
        [
            [0.9, 0.8, 0.4, 0.4, 0.2, 0.1],  # flips patient 2
            [0.9, 0.8, 0.6, 0.4, 0.7, 0.1],  # flips patient 4
            MAP_P1,
        ],
        {0.02: [True] * 3, 0.05: [True] * 3},
        accuracy=[0.8, 0.75, 0.7, 0.8],
        summary={"seconds": 3.0, "fit_seconds": 1.5, "peak_memory_mb": 50.0},
    )
    dropout = _run_dir(
        tmp_path, "dropout", "dropout", [MAP_P1, MAP_P1], {0.02: [True, True], 0.05: [True, True]}
    )
    return truth, laplace, dropout


def test_compare_table_values_by_hand(runs, tmp_path):
    truth, laplace, dropout = runs
    table = run_compare([laplace, dropout], tmp_path / "cmp", truth=truth)
    assert table["set"].tolist() == [
        "laplace last_layer kron nn",
        "dropout",
        "retrain (ground truth)",
    ]
    t = table.set_index("set")
    gt, la, do = (
        t.loc["retrain (ground truth)"],
        t.loc["laplace last_layer kron nn"],
        t.loc["dropout"],
    )
    assert t["epsilon"].tolist() == [0.02] * 3
    assert (gt["ground_truth"], la["ground_truth"]) == (True, False)
    in_set = (gt["models_in_set"], la["models_in_set"], do["models_in_set"])
    assert gt["models"] == 5 and in_set == (4, 3, 2)

    # ground truth (4 models in the set): patients 2 and 3 flip
    assert gt["ambiguity"] == pytest.approx(2 / 6)
    assert gt["discrepancy"] == pytest.approx(2 / 6)  # the model flipping both
    assert gt["mean_disagreement"] == pytest.approx(2 / 6)  # 4·½·½ = 1 on two patients
    # capacity on patients 2, 3: symmetric channel p = 0.4 / 0.6 → 2^(1 − H(0.4)); else 1
    h = -(0.4 * math.log2(0.4) + 0.6 * math.log2(0.6))
    assert gt["mean_capacity"] == pytest.approx((4 + 2 * 2 ** (1 - h)) / 6, abs=1e-6)
    # vs itself at full size: perfect agreement
    assert (gt["spearman_disagreement"], gt["flag_precision_full"], gt["flag_recall_full"]) == (
        1,
        1,
        1,
    )

    # laplace: flags {2, 4} vs truth {2, 3}
    assert la["ambiguity"] == pytest.approx(2 / 6)
    assert la["discrepancy"] == pytest.approx(1 / 6)
    assert la["mean_disagreement"] == pytest.approx(2 * (4 * 2 / 9) / 6)  # p̂ = ⅓ or ⅔
    assert (la["flag_precision_full"], la["flag_recall_full"]) == (0.5, 0.5)
    # ranks: set [2.5,2.5,5.5,2.5,5.5,2.5], truth [2.5,2.5,5.5,5.5,2.5,2.5] → 3 / 12
    assert la["spearman_disagreement"] == pytest.approx(0.25)

    # dropout: every model equals the MAP model
    assert (do["ambiguity"], do["discrepancy"], do["mean_disagreement"]) == (0, 0, 0)
    assert do["mean_capacity"] == pytest.approx(1.0)
    assert math.isnan(do["flag_precision_full"]) and do["flag_recall_full"] == 0
    assert math.isnan(do["spearman_disagreement"])  # constant disagreement

    # spread of each desideratum over the set's models (MAP row excluded), ratio to the truth
    assert gt["spread:accuracy"] == pytest.approx(0.3)
    assert la["spread:accuracy"] == pytest.approx(0.1)
    assert la["spread_ratio:accuracy"] == pytest.approx(1 / 3)
    assert gt["spread:ece"] == 0 and math.isnan(la["spread_ratio:ece"])
    assert math.isnan(do["spread:accuracy"])  # no evaluate stage in that run

    # cost, from sample/summary.json and the train stage
    assert (gt["cost:seconds"], gt["cost:peak_memory_mb"]) == (120.0, 300.0)
    assert (la["cost:seconds"], la["cost:fit_seconds"], la["cost:map_train_seconds"]) == (3, 1.5, 5)
    assert "cost:kept" not in table

    patients = pd.read_csv(tmp_path / "cmp" / "per_patient.csv")
    assert patients["arbitrary:retrain (ground truth)"].tolist() == [0, 0, 1, 1, 0, 0]
    assert patients["arbitrary:laplace last_layer kron nn"].tolist() == [0, 0, 1, 0, 1, 0]
    assert patients["flip_rate:retrain (ground truth)"].tolist() == [0, 0, 0.5, 0.5, 0, 0]
    assert patients["flip_rate:laplace last_layer kron nn"].tolist() == pytest.approx(
        [0, 0, 1 / 3, 0, 1 / 3, 0]
    )
    # growth, per-patient and the cost–validity frontier
    assert (tmp_path / "cmp" / "compare.html").read_text().count("<img") == 3
    frontier = pd.read_csv(tmp_path / "cmp" / "frontier.csv")
    assert frontier["seconds"].tolist()[-1] == 120.0  # the truth's sample stage

    # the full-size figures keep names that say so; the old names are gone, not re-meant
    assert not {"flag_recall", "flag_precision"} & set(table.columns)
    # size-matched, h = 2 of the 4 retrained: exact expectations by enumerating the 6 ordered
    # splits of the truth and the 3 pairs of laplace models (see test_size_matched_by_hand);
    # 200 rounds give a standard error of ≤ 0.025, so 0.1 is four of them
    assert (la["matched_models"], la["matched_rounds"], la["matched_with_replacement"]) == (
        2,
        200,
        False,
    )
    assert la["flag_recall_matched"] == pytest.approx(1 / 3, abs=0.1)
    assert la["flag_precision_matched"] == pytest.approx(5 / 12, abs=0.1)
    assert la["flag_recall_ceiling"] == pytest.approx(5 / 6, abs=0.07)
    assert la["flag_precision_ceiling"] == pytest.approx(5 / 6, abs=0.07)
    assert la["flag_recall_ratio"] == la["flag_recall_matched"] / la["flag_recall_ceiling"]
    # one ceiling for every set, the truth's own row at matched size is that ceiling (ratio 1)
    assert t["flag_recall_ceiling"].nunique() == 1
    assert gt["flag_recall_matched"] == gt["flag_recall_ceiling"] and gt["flag_recall_ratio"] == 1
    assert do["flag_recall_matched"] == 0 and math.isnan(do["flag_precision_matched"])
    # flip rates: laplace [0,0,⅓,0,⅓,0] vs truth [0,0,½,½,0,0]; AP by hand: threshold ⅓ finds
    # {2, 4} (precision ½, recall ½), threshold 0 all six (precision ⅓, recall 1): ½·½ + ½·⅓
    assert la["flip_rate_spearman"] == pytest.approx(0.25)
    assert la["flip_rate_ap"] == pytest.approx(5 / 12)
    assert la["flip_rate_ap_base_rate"] == pytest.approx(2 / 6)
    # growth: the truth's curve reaches laplace's 1/3 at k = 3; laplace has fewer than T = 4
    assert la["retrained_models_for_ambiguity"] == 3 and math.isnan(la["ambiguity_matched"])
    assert do["retrained_models_for_ambiguity"] == 0  # it flags nobody
    assert gt["ambiguity_matched"] == pytest.approx(2 / 6)
    growth = pd.read_csv(tmp_path / "cmp" / "growth.csv")
    assert list(growth.columns) == [
        "set",
        "ground_truth",
        "k",
        "ambiguity",
        "ambiguity_p05",
        "ambiguity_p95",
    ]
    curve = growth[growth["set"] == "retrain (ground truth)"]
    assert curve["k"].tolist() == [1, 2, 3, 4]
    assert curve["ambiguity"].tolist() == pytest.approx([1 / 6, 5 / 18, 2 / 6, 2 / 6])
    # a single random model flips 0, 1 or 2 of 6 patients; every pair at least 1, at most 2
    assert curve["ambiguity_p05"].tolist() == pytest.approx([0, 1 / 6, 2 / 6, 2 / 6])
    assert curve["ambiguity_p95"].tolist() == pytest.approx([2 / 6, 2 / 6, 2 / 6, 2 / 6])
    la_curve = growth[growth["set"] == "laplace last_layer kron nn"]
    assert la_curve["ambiguity"].tolist() == pytest.approx([1 / 9, 2 / 9, 1 / 3])


def test_matched_epsilon_filters_every_set(runs, tmp_path):
    truth, laplace, _ = runs
    t = run_compare([laplace], tmp_path / "c", truth=truth, epsilon=0.05).set_index("set")
    gt = t.loc["retrain (ground truth)"]
    assert gt["models_in_set"] == 5 and gt["ambiguity"] == 1.0  # the all-flipping model is in now
    la = t.loc["laplace last_layer kron nn"]
    assert la["matched_models"] == 2  # ⌊5 / 2⌋, the odd retrained model sits in neither half
    assert la["flag_precision_full"] == 1.0 and la["flag_recall_full"] == pytest.approx(2 / 6)
    with pytest.raises(RashomonError, match=r"no Rashomon set at ε=0.1 .*0.02, 0.05"):
        run_compare([laplace], tmp_path / "c", truth=truth, epsilon=0.1)


def test_truth_found_by_source_and_errors(runs, tmp_path):
    truth, laplace, dropout = runs
    table = run_compare([dropout, truth, laplace], tmp_path / "c")
    assert table["set"].iloc[-1] == "retrain (ground truth)" and len(table) == 3
    with pytest.raises(RashomonError, match="found 0 retrained sets"):
        run_compare([dropout, laplace], tmp_path / "c")
    with pytest.raises(RashomonError, match="lacks sample/probs_test.npy"):
        load_set(tmp_path / "nowhere")
    short = load_set(laplace)
    short.probs, short.map_probs = short.probs[:, :4], short.map_probs[:4]
    with pytest.raises(RashomonError, match="different numbers of test samples"):
        compare_sets([short], load_set(truth))


def test_pure_helpers():
    assert flag_agreement(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 1])) == (0.5, 1 / 3)
    assert rank_agreement(np.array([0.1, 0.5, 0.2]), np.array([1.0, 3.0, 2.0])) == 1.0
    pm = pd.DataFrame(columns=["model", "in_set@0.01", "in_set@2e-2", "in_set@x"])
    assert find_in_set_column(pm.columns, 0.02, "t") == "in_set@2e-2"
    # multilabel sigmoid [M, N, L] → binary [M, N·L, 2]; a softmax set stays as it is
    ml = np.array([[[0.2, 0.9], [0.7, 0.1]]])
    p, q = as_binary(ml, ml[0])
    assert p.shape == (1, 4, 2) and p[0, :, 1].tolist() == [0.2, 0.9, 0.7, 0.1]
    sm = _probs([MAP_P1])
    assert as_binary(sm, sm[0])[0] is not None and as_binary(sm, sm[0])[0].shape == (1, 6, 2)


# --------------------------------------------------------------------------- the yardstick

# the runs fixture as flip matrices: truth models flip {2}, {3}, {2, 3}, {}; laplace {2}, {4}, {}
TRUTH_FLIPS = np.zeros((4, 6), bool)
TRUTH_FLIPS[0, 2] = TRUTH_FLIPS[1, 3] = TRUTH_FLIPS[2, 2] = TRUTH_FLIPS[2, 3] = True
LAPLACE_FLIPS = np.zeros((3, 6), bool)
LAPLACE_FLIPS[0, 2] = LAPLACE_FLIPS[1, 4] = True


def test_size_matched_by_hand():
    # h = 2. The 6 ordered splits of the truth give half A = {2,3} four times (B = {2,3}, {3},
    # {2,3}, {2}), A = {2} once (B = {2,3}), A = {3} once (B = {2,3}): the ceiling (B against A)
    # has recall (1 + ½ + 1 + ½ + 1 + 1) / 6 = 5/6 and precision (1 + 1 + 1 + 1 + ½ + ½) / 6 = 5/6.
    # Laplace draws {2,4}, {2} or {4}: against A = {2,3} recall (½ + ½ + 0) / 3, precision
    # (½ + 1 + 0) / 3; against {2} recall (1 + 1 + 0) / 3, precision (½ + 1 + 0) / 3; against {3}
    # nothing. So recall 4/6·⅓ + 1/6·⅔ = ⅓ and precision 4/6·½ + 1/6·½ = 5/12.
    # 8,000 seeded rounds: standard errors ≤ 0.0047 (round sd ≤ 0.42), so 0.015 is three.
    m = size_matched_agreement(LAPLACE_FLIPS, TRUTH_FLIPS, rounds=8_000, seed=3)
    assert m["matched_models"] == 2 and not m["matched_with_replacement"]
    assert m["flag_recall_matched"] == pytest.approx(1 / 3, abs=0.015)
    assert m["flag_precision_matched"] == pytest.approx(5 / 12, abs=0.015)
    assert m["flag_recall_ceiling"] == pytest.approx(5 / 6, abs=0.015)
    assert m["flag_precision_ceiling"] == pytest.approx(5 / 6, abs=0.015)
    assert m["flag_recall_ratio"] == pytest.approx(0.4, abs=0.03)
    assert m["flag_precision_ratio"] == pytest.approx(0.5, abs=0.03)
    # the full-size figures of the same sets are ½ and ½: size-matching changes the verdict
    assert flag_agreement(LAPLACE_FLIPS.any(0), TRUTH_FLIPS.any(0)) == (0.5, 0.5)
    # same seed, same rounds: same numbers
    assert size_matched_agreement(LAPLACE_FLIPS, TRUTH_FLIPS, rounds=50, seed=1) == (
        size_matched_agreement(LAPLACE_FLIPS, TRUTH_FLIPS, rounds=50, seed=1)
    )


def test_size_matched_draws_with_replacement_from_a_small_set():
    # one model flipping {2}, h = 2: every draw is that model twice, flags {2}; against A = {2,3}
    # (4 of 6 splits) recall ½, precision 1; against {2} 1 and 1; against {3} 0 and 0
    m = size_matched_agreement(LAPLACE_FLIPS[:1], TRUTH_FLIPS, rounds=8_000)
    assert m["matched_with_replacement"]
    assert m["flag_recall_matched"] == pytest.approx(1 / 2, abs=0.015)
    assert m["flag_precision_matched"] == pytest.approx(5 / 6, abs=0.015)
    # a ground truth of one model has no halves: every figure is undefined, not 0
    lone = size_matched_agreement(LAPLACE_FLIPS, TRUTH_FLIPS[:1])
    assert lone["matched_models"] == 0
    assert all(math.isnan(lone[k]) for k in ("flag_recall_matched", "flag_recall_ratio"))


def _population(seed: int, patients: int = 2000) -> tuple[np.random.Generator, np.ndarray]:
    """Per-patient flip probabilities of a population of retrained models: three patients in
    four are never flipped, the others by a Beta(0.5, 3) share of models (mostly rare flips)."""
    rng = np.random.default_rng(seed)
    p = np.where(rng.random(patients) < 0.25, rng.beta(0.5, 3.0, patients), 0.0)
    return rng, p


def _draw(rng: np.random.Generator, p: np.ndarray, models: int) -> np.ndarray:
    return rng.random((models, p.size)) < p


def test_a_set_from_the_truths_own_distribution_meets_the_ceiling():
    # The truth (24 models) and a cheap set (300) drawn independently from one population: h = 12
    # cheap models against half A are distributed exactly as half B against half A, so the
    # ratios' expectation is 1. Over 30 populations (seeds 0-29) they were 1.000 ± 0.014
    # (recall) and 1.002 ± 0.016 (precision), min 0.973: 0.05 is three sd and more.
    rng, p = _population(seed=7)
    truth, cheap = _draw(rng, p, 24), _draw(rng, p, 300)
    m = size_matched_agreement(cheap, truth, seed=7)
    assert m["matched_models"] == 12 and m["flag_recall_ceiling"] == pytest.approx(0.8, abs=0.05)
    assert m["flag_recall_ratio"] == pytest.approx(1, abs=0.05)
    assert m["flag_precision_ratio"] == pytest.approx(1, abs=0.05)
    # while the full-size figures of 300 models against 24 read a different story
    precision, recall = flag_agreement(cheap.any(0), truth.any(0))
    assert recall > m["flag_recall_ceiling"] + 0.1 and precision < m["flag_precision_ceiling"]
    # the yardstick tells a set that flips half as often (recall ratio ≈ 0.8 over five
    # populations) and one that flips twice as often (precision ratio ≈ 0.62) from a valid one
    narrow = size_matched_agreement(_draw(rng, p / 2, 300), truth, seed=7)
    wide = size_matched_agreement(_draw(rng, np.minimum(2 * p + 0.01, 1), 300), truth, seed=7)
    assert narrow["flag_recall_ratio"] < 0.88 and narrow["flag_precision_ratio"] > 0.95
    assert wide["flag_precision_ratio"] < 0.75 and wide["flag_recall_ratio"] > 1.05


def test_the_truth_duplicated_twenty_times_is_matched_not_inflated():
    # 20 copies of the truth flag exactly the truth's patients: full-size recall and precision 1,
    # far above what two halves of the truth agree on. At matched size it is the truth's own
    # distribution, so its ratios are near 1, though not exactly: a draw of 12 holds about 6 of
    # half A's own models (raising both, most the precision: a patient only they flip is a hit
    # by construction) and repeats some (fewer distinct models, lowering recall). Over the 30
    # populations above: recall 1.031 ± 0.011, precision 1.111 ± 0.013, max 1.14: so 0.08 and
    # 0.17 around 1, where the full-size ratio is 1 / ceiling ≈ 1.25.
    rng, p = _population(seed=11)
    truth = _draw(rng, p, 24)
    copies = np.tile(truth, (20, 1))
    assert flag_agreement(copies.any(0), truth.any(0)) == (1.0, 1.0)
    m = size_matched_agreement(copies, truth, seed=11)
    assert m["flag_recall_ceiling"] < 0.85 and m["flag_precision_ceiling"] < 0.85
    assert m["flag_recall_ratio"] == pytest.approx(1, abs=0.08)
    assert m["flag_precision_ratio"] == pytest.approx(1, abs=0.17)
    for name in ("flag_recall", "flag_precision"):
        assert abs(m[f"{name}_ratio"] - 1) < 1 / m[f"{name}_ceiling"] - 1


def test_flip_rate_agreement_by_hand_and_with_scikit_learn():
    from sklearn.metrics import average_precision_score

    f = flip_rate_agreement(LAPLACE_FLIPS, TRUTH_FLIPS)
    assert f["flip_rate_ap"] == pytest.approx(5 / 12)  # by hand, see the compare table test
    assert f["flip_rate_ap"] == pytest.approx(
        average_precision_score([0, 0, 1, 1, 0, 0], [0, 0, 1 / 3, 0, 1 / 3, 0])
    )
    assert f["flip_rate_spearman"] == pytest.approx(0.25)
    assert f["flip_rate_ap_base_rate"] == pytest.approx(1 / 3)
    # a truth that flags nobody leaves the AP undefined, not 0 or 1
    none = flip_rate_agreement(LAPLACE_FLIPS, np.zeros((4, 6), bool))
    assert math.isnan(none["flip_rate_ap"]) and none["flip_rate_ap_base_rate"] == 0


def test_ambiguity_growth_ends_and_band():
    rng, p = _population(seed=5, patients=300)
    flips = _draw(rng, p, 40)
    g = ambiguity_growth(flips, draws=300, seed=2).set_index("k")
    assert list(g.index) == list(range(1, 41))  # every k up to GROWTH_POINTS = 40 models
    assert g.loc[1, "ambiguity"] == pytest.approx(flips.mean())  # mean single-model flip share
    assert g.loc[40, "ambiguity"] == pytest.approx(flips.any(0).mean())  # full-size ambiguity
    assert g.loc[40, "ambiguity_p05"] == g.loc[40, "ambiguity_p95"] == flips.any(0).mean()
    assert (np.diff(g["ambiguity"]) >= 0).all()
    inner = g.loc[2:39]
    assert (inner["ambiguity_p05"] <= inner["ambiguity"]).all()
    assert (inner["ambiguity"] <= inner["ambiguity_p95"]).all()
    # the exact expectation against the mean of random draws of k models
    k = 7
    draws = [flips[rng.choice(40, k, replace=False)].any(0).mean() for _ in range(4000)]
    assert expected_ambiguity(flips, [k])[0] == pytest.approx(np.mean(draws), abs=0.003)
    assert math.isnan(expected_ambiguity(flips, [41])[0])
    # a sample every model flips is flagged at every k, one none flips at none
    every = ambiguity_growth(np.array([[True, False], [True, False]]), draws=10)
    assert (
        every[["ambiguity", "ambiguity_p05", "ambiguity_p95"]].to_numpy().tolist()
        == [[0.5] * 3] * 2
    )
    with pytest.raises(RashomonError, match="growth k must lie in 1 … 40"):
        ambiguity_growth(flips, ks=[0, 5])
    # a large set: log-spaced k from 1 to M, with the k asked for
    grid = growth_grid(500, extra=(12, 25, 900))
    assert grid[0] == 1 and grid[-1] == 500 and {12, 25} <= set(grid) and 900 not in grid
    assert len(grid) <= 42 and (np.diff(grid) > 0).all()
    # how many models reach a target ambiguity
    curve = pd.DataFrame({"k": [1, 2, 3, 4], "ambiguity": [1 / 6, 5 / 18, 2 / 6, 2 / 6]})
    assert models_for_ambiguity(curve, 0.25) == 2 and models_for_ambiguity(curve, 1 / 3) == 3
    assert math.isnan(models_for_ambiguity(curve, 0.5)) and models_for_ambiguity(curve, 0) == 0


def test_flips_from_labels_and_multilabel_pairs():
    assert label_flips(np.array([[0, 1, 2], [0, 0, 2]]), np.array([0, 1, 1])).tolist() == [
        [False, False, True],
        [False, True, True],
    ]
    with pytest.raises(RashomonError, match="do not match"):
        label_flips(np.zeros((2, 3)), np.zeros(4))
    # multilabel [M=2, N=2, L=2] sigmoid probabilities: four (patient, label) pairs
    ml = np.array([[[0.2, 0.9], [0.7, 0.1]], [[0.6, 0.9], [0.7, 0.4]]])
    map_ml = np.array([[0.3, 0.8], [0.6, 0.2]])
    assert flip_matrix(ml, map_ml).tolist() == [
        [False, False, False, False],
        [True, False, False, False],
    ]


def test_capacity_study_from_a_sweep(tmp_path):
    rows = []
    for width, seed, amb in ((0.5, 0, 0.30), (0.5, 1, 0.20), (2.0, 0, 0.10), (2.0, 1, 0.06)):
        name = f"width-{width:g}_seed-{seed}"
        d = tmp_path / "cells" / name
        (d / "evaluate").mkdir(parents=True)
        pd.DataFrame([{"metric": "ambiguity", "group": "all", "value": amb}]).to_csv(
            d / "evaluate" / "multiplicity.csv", index=False
        )
        rows.append(
            {
                "cell": name,
                "train.width": width,
                "seed": seed,
                "run_dir": str(d),
                "status": "done",
                "error": "",
                "seconds": 1.0,
                "peak_rss_mb": 1.0,
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "status.csv", index=False)
    study = capacity_study(tmp_path).set_index("train.width")
    assert study.loc[0.5, "mean"] == pytest.approx(0.25)
    assert study.loc[2.0, "mean"] == pytest.approx(0.08)
    assert study.loc[0.5, "std"] == pytest.approx(np.std([0.3, 0.2], ddof=1))
    assert study["n"].tolist() == [2, 2]
    with pytest.raises(RashomonError, match="no grid axis 'train.depth'"):
        capacity_study(tmp_path, axis="train.depth")


def test_compare_page_renders_in_headless_chromium(runs, tmp_path):
    from browser import BrowserError, inspect_self_contained

    truth, laplace, dropout = runs
    run_compare([laplace, dropout], tmp_path / "cmp", truth=truth)
    path = tmp_path / "cmp" / "compare.html"
    try:
        page = inspect_self_contained(path)
    except BrowserError as exc:
        pytest.fail(f"Chromium could not render the compare page: {exc}")
    assert page.title == "rashomon compare"
    assert [s["id"] for s in page.sections] == ["sets", "frontier", "growth", "patients"]
    assert all(s["height"] > 50 for s in page.sections)
    assert len(page.images) == 3 and page.tables == 1
    sets = page.sections[0]["text"]
    # every set's row, the ground truth's last; numbers as the kit formats them
    for name in ("laplace last_layer kron nn", "dropout", "retrain (ground truth)"):
        assert name in sets
    assert "0.3333" in sets  # the ground truth's ambiguity, 2 of 6 patients
    assert "run_dir" not in sets


def test_cost_validity_frontier_by_hand():
    from rashomon.compare import frontier_table, set_seconds

    # a fork set trained now (sample 100 s of which 90 s training), read from the cache later
    # (its training recorded as 90 s): the same cost either way
    assert set_seconds({"seconds": 100.0, "train_seconds": 90.0, "trained_seconds": 90.0}) == 100
    assert set_seconds({"seconds": 10.0, "train_seconds": 0.0, "trained_seconds": 90.0}) == 100
    # the MAP model's training (map_train_seconds) is shared by every set, not subtracted: forks
    # read from the cache (train_seconds 0) once came out negative when it was
    cached = {"seconds": 8.24, "train_seconds": 0.0, "trained_seconds": 34.85}
    assert set_seconds({**cached, "map_train_seconds": 60.0}) == pytest.approx(43.09)
    assert set_seconds({"seconds": 7.0}) == 7.0
    table = pd.DataFrame(
        {
            "set": ["cheap", "dear", "dominated", "truth"],
            "ground_truth": [False, False, False, True],
            "cost:seconds": [10.0, 100.0, 50.0, 5.0],
            "cost:trained_seconds": [np.nan, np.nan, np.nan, np.nan],
            "flag_recall_ratio": [0.5, 0.95, 0.4, 1.0],
            "flag_precision_ratio": [1.0, 0.9, 0.8, 1.0],
        }
    )
    f = frontier_table(table, truth_seconds=1000.0)
    assert f["seconds"].tolist() == [10.0, 100.0, 50.0, 1000.0]
    assert f["share_of_truth_seconds"].tolist() == [0.01, 0.1, 0.05, 1.0]
    # "dominated" costs more than "cheap" and is worse on both ratios
    assert f.set_index("set")["on_frontier"].iloc[:3].tolist() == [True, True, False]


def test_matched_spread_does_not_grow_with_the_set_size():
    """A set of 400 models whose desiderata come from the same distribution as the ground
    truth's 24 spans a wider range at full size (max − min over more draws), but at matched size
    (h = 12 against halves of the truth) its spread ratio is about 1; a set that varies half as
    much gets about 0.5."""
    from scipy.stats import norm

    from rashomon.metrics.agreement import desideratum_spread, matched_spread

    def table(sd: float, models: int) -> pd.DataFrame:
        # evenly spaced normal quantiles: the distribution without the luck of one draw
        values = 0.8 + sd * norm.ppf((np.arange(models) + 0.5) / models)
        return pd.DataFrame({"model": np.arange(models), "accuracy": values})

    truth, same, narrow = table(0.02, 24), table(0.02, 400), table(0.01, 400)
    full = desideratum_spread(same)["accuracy"] / desideratum_spread(truth)["accuracy"]
    assert full > 1.3
    assert matched_spread(same, truth, rounds=400)["accuracy"] == pytest.approx(1.0, abs=0.15)
    assert matched_spread(narrow, truth, rounds=400)["accuracy"] == pytest.approx(0.5, abs=0.1)
    assert matched_spread(same, truth.iloc[:3]) == {}  # a truth of 3 has no halves of 2
