"""`rashomon validate`: the run's set against K retrained networks and their split-half ceiling."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

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
        assert 0 <= summary["flag_recall"] <= 1 and "flag_recall" in summary["ceiling"]
        # resumable: a second validate with more seeds reuses the six trained ones
        proc = rashomon("validate", str(out), "--retrain", "8", "--no-progress", root=tiny_root)
        assert proc.returncode == 0, proc.stderr
        again = json.loads((out / "validate" / "summary.json").read_text())
        assert again["retrained"] == 8 and again["reused"] == 6
    finally:
        os.environ.pop("RASHOMON_CACHE", None)
