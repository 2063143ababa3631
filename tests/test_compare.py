"""The validity study's compare table on hand-made run directories (six test patients), every
value computed by hand; and the capacity study's table from a hand-made sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rashomon.compare import (
    as_binary,
    capacity_study,
    compare_sets,
    flag_agreement,
    load_set,
    rank_agreement,
    run_compare,
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
    # vs itself: perfect agreement
    assert (gt["spearman_disagreement"], gt["flag_precision"], gt["flag_recall"]) == (1, 1, 1)

    # laplace: flags {2, 4} vs truth {2, 3}
    assert la["ambiguity"] == pytest.approx(2 / 6)
    assert la["discrepancy"] == pytest.approx(1 / 6)
    assert la["mean_disagreement"] == pytest.approx(2 * (4 * 2 / 9) / 6)  # p̂ = ⅓ or ⅔
    assert (la["flag_precision"], la["flag_recall"]) == (0.5, 0.5)
    # ranks: set [2.5,2.5,5.5,2.5,5.5,2.5], truth [2.5,2.5,5.5,5.5,2.5,2.5] → 3 / 12
    assert la["spearman_disagreement"] == pytest.approx(0.25)

    # dropout: every model equals the MAP model
    assert (do["ambiguity"], do["discrepancy"], do["mean_disagreement"]) == (0, 0, 0)
    assert do["mean_capacity"] == pytest.approx(1.0)
    assert math.isnan(do["flag_precision"]) and do["flag_recall"] == 0
    assert math.isnan(do["spearman_disagreement"])  # constant disagreement

    # spread of each desideratum over the set's models (MAP row excluded), ratio to the truth
    assert gt["spread:accuracy"] == pytest.approx(0.3)
    assert la["spread:accuracy"] == pytest.approx(0.1)
    assert la["spread_ratio:accuracy"] == pytest.approx(1 / 3)
    assert gt["spread:ece"] == 0 and math.isnan(la["spread_ratio:ece"])
    assert math.isnan(do["spread:accuracy"])  # no evaluate stage in that run

    # cost, from sample/summary.json and the train stage
    assert (gt["cost:seconds"], gt["cost:peak_memory_mb"]) == (120.0, 300.0)
    assert (la["cost:seconds"], la["cost:fit_seconds"], la["cost:train_seconds"]) == (3, 1.5, 5)
    assert "cost:kept" not in table

    patients = pd.read_csv(tmp_path / "cmp" / "per_patient.csv")
    assert patients["arbitrary:retrain (ground truth)"].tolist() == [0, 0, 1, 1, 0, 0]
    assert patients["arbitrary:laplace last_layer kron nn"].tolist() == [0, 0, 1, 0, 1, 0]
    assert (tmp_path / "cmp" / "compare.html").read_text().count("<img") == 1


def test_matched_epsilon_filters_every_set(runs, tmp_path):
    truth, laplace, _ = runs
    t = run_compare([laplace], tmp_path / "c", truth=truth, epsilon=0.05).set_index("set")
    gt = t.loc["retrain (ground truth)"]
    assert gt["models_in_set"] == 5 and gt["ambiguity"] == 1.0  # the all-flipping model is in now
    la = t.loc["laplace last_layer kron nn"]
    assert la["flag_precision"] == 1.0 and la["flag_recall"] == pytest.approx(2 / 6)
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
    assert [s["id"] for s in page.sections] == ["sets", "patients"]
    assert all(s["height"] > 50 for s in page.sections)
    assert len(page.images) == 1 and page.tables == 1
    sets = page.sections[0]["text"]
    # every set's row, the ground truth's last; numbers as the kit formats them
    for name in ("laplace last_layer kron nn", "dropout", "retrain (ground truth)"):
        assert name in sets
    assert "0.3333" in sets  # the ground truth's ambiguity, 2 of 6 patients
    assert "run_dir" not in sets
