"""`rashomon validate`: the run's set against K retrained networks and their split-half ceiling."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from rashomon.compare import flag_ceiling
from rashomon.validate import split_half_ceiling
from tests.test_cli import rashomon


def _probs(flips: np.ndarray) -> np.ndarray:
    """[M, N, 2] probabilities whose label is 1 − flips[m, n] (MAP label 0 everywhere)."""
    p1 = np.where(flips, 0.8, 0.2)
    return np.stack([1 - p1, p1], axis=-1)


def test_split_half_ceiling_by_hand():
    # patients 0-1 are flipped by every model, patient 2 by none: any two halves agree fully
    flips = np.zeros((6, 3), bool)
    flips[:, :2] = True
    map_probs = _probs(np.zeros(3, bool)[None])[0]
    c = split_half_ceiling(_probs(flips), map_probs, rounds=5)
    assert c["flag_recall"] == 1.0 and c["flag_precision"] == 1.0 and c["models_per_half"] == 3
    # patient 0 flipped by one model only: it is in one half and not the other
    flips = np.zeros((6, 3), bool)
    flips[0, 0] = True
    flips[:, 1] = True
    c = split_half_ceiling(_probs(flips), map_probs, rounds=50, seed=1)
    # half A flags {0, 1} or {1}; B the other: recall 1/2 when A holds the flip... on average
    assert 0.6 < c["flag_recall"] < 0.9 and 0.6 < c["flag_precision"] < 0.9
    with pytest.raises(Exception, match="at least 4 models"):
        split_half_ceiling(_probs(flips[:3]), map_probs)


def test_split_half_ceiling_is_the_compare_tables_ceiling():
    # the same halves (truth_halves of models, rounds, seed) behind both: the same numbers
    rng = np.random.default_rng(0)
    flips = rng.random((9, 40)) < 0.1
    map_probs = _probs(np.zeros(40, bool)[None])[0]
    c = split_half_ceiling(_probs(flips), map_probs, rounds=30, seed=4)
    ref = flag_ceiling(flips, rounds=30, seed=4)
    assert c["models_per_half"] == 4 and c["rounds"] == 30
    assert c["flag_recall"] == pytest.approx(ref["flag_recall_ceiling"])
    assert c["flag_precision"] == pytest.approx(ref["flag_precision_ceiling"])
    assert c["flag_recall_sd"] == pytest.approx(ref["flag_recall_ceiling_sd"])


def test_validate_command_adds_the_retrained_truth(tiny_root, tmp_path):
    out = tmp_path / "run"
    env_cache = {"RASHOMON_CACHE": str(tmp_path / "cache")}
    os.environ.update(env_cache)
    try:
        # 20 epochs of 2 steps: fewer leave every MLP on the majority class, and six networks that
        # agree on every patient give no retrained truth to recall
        base = ("--dataset", "breastmnist", "--arch", "mlp", "--epochs", "20", "--models", "40")
        proc = rashomon(
            "run",
            *base,
            "--epsilon",
            "0.5",
            "--stages",
            "train,sample",
            "--out",
            str(out),
            "--no-progress",
            root=tiny_root,
        )
        assert proc.returncode == 0, proc.stderr
        proc = rashomon("validate", str(out), "--retrain", "6", "--no-progress", root=tiny_root)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "validate" / "summary.json").read_text())
        assert summary["retrained"] == 6 and summary["reused"] == 0
        table = pd.read_csv(out / "validate" / "compare.csv")
        assert list(table["ground_truth"]) == [False, True]
        assert summary["retrained_flags"] > 0
        # the size-matched headline: h = ⌊T/2⌋ models, ratios to the split-half ceiling
        t = summary["retrained_in_set"]
        assert summary["matched_models"] == t // 2 and summary["matched_rounds"] == 200
        row = table.iloc[0]
        for name in ("flag_recall", "flag_precision"):
            assert summary[f"{name}_ratio"] == pytest.approx(
                row[f"{name}_matched"] / row[f"{name}_ceiling"], abs=1e-3
            )
            assert 0 <= summary[f"{name}_full"] <= 1
        assert "flag_recall" not in summary  # the full-size figure is named as such
        ceiling = pd.read_csv(out / "validate" / "ceiling.csv").iloc[0]
        assert ceiling["flag_recall"] == pytest.approx(row["flag_recall_ceiling"])
        assert summary["ceiling"]["flag_recall"] == pytest.approx(ceiling["flag_recall"], abs=1e-4)
        assert 0 <= summary["flip_rate_ap"] <= 1 and -1 <= summary["flip_rate_spearman"] <= 1
        growth = pd.read_csv(out / "validate" / "growth.csv")
        truth_curve = growth[growth["ground_truth"]]
        assert truth_curve["k"].tolist() == list(range(1, t + 1))
        assert truth_curve["ambiguity"].iloc[-1] == pytest.approx(summary["ambiguity_retrained"])
        set_curve = growth[~growth["ground_truth"]]
        assert set_curve["ambiguity"].iloc[-1] == pytest.approx(summary["ambiguity_set"], abs=1e-4)
        assert "ratios recall" in proc.stdout and "ambiguity by number of models" in proc.stdout
        # the run's report shows the stage's own figures, with no failed section
        from rashomon.report import write_report

        proc = rashomon(
            "evaluate",
            str(out),
            "--metrics",
            "multiplicity,performance",
            "--corruptions",
            "none",
            "--attacks",
            "none",
            "--no-progress",
            root=tiny_root,
        )
        assert proc.returncode == 0, proc.stderr

        report = write_report(out, tmp_path / "report")
        assert report.failures == []
        text = (tmp_path / "report" / "summary.txt").read_text()
        assert (
            f"{summary['matched_models']} of this set's models find "
            f"{100 * summary['flag_recall_matched']:.0f} %"
        ) in text
        assert f"{summary['flag_recall_ratio']:.2f} of the ceiling" in text
        assert (tmp_path / "report" / "validity_growth.png").exists()
        # resumable: a second validate with more seeds reuses the six trained ones
        proc = rashomon("validate", str(out), "--retrain", "8", "--no-progress", root=tiny_root)
        assert proc.returncode == 0, proc.stderr
        again = json.loads((out / "validate" / "summary.json").read_text())
        assert again["retrained"] == 8 and again["reused"] == 6
    finally:
        os.environ.pop("RASHOMON_CACHE", None)
