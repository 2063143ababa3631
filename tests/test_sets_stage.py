"""The sample stage writes consistent arrays and tables into the run directory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rashomon.config import load_config
from rashomon.errors import RashomonError
from rashomon.run import run_pipeline
from rashomon.sets.base import ModelSet
from rashomon.sets.rashomon import model_scores


def _config(tiny_root, **sample):
    overrides = {
        "data.dataset": "breastmnist",
        "data.root": str(tiny_root),
        "train.epochs": 1,
        "train.arch": "cnn",
        "train.width": 0.25,
        "sample.models": 40,
        "sample.epsilon": 0.05,
    }
    overrides.update({f"sample.{k}": v for k, v in sample.items()})
    return load_config(None, overrides)


def test_sample_stage_outputs(tiny_root, tiny_task, tmp_path):
    run = tmp_path / "run"
    run_pipeline(run, _config(tiny_root), stages=("train", "sample"), progress=False)
    out = run / "sample"
    p_val = np.load(out / "probs_val.npy")
    p_test = np.load(out / "probs_test.npy")
    assert p_val.dtype == np.float32 and p_val.shape == (40, len(tiny_task.val), 2)
    assert p_test.shape == (40, len(tiny_task.test), 2)
    assert np.load(out / "probs_train.npy").shape == (40, len(tiny_task.train), 2)
    assert np.load(out / "map_probs_val.npy").shape == (len(tiny_task.val), 2)
    mset = ModelSet.load(out / "set.pt", task=tiny_task)
    np.testing.assert_allclose(mset.predict(tiny_task.val.x).numpy(), p_val, atol=1e-6)

    table = pd.read_csv(out / "per_model.csv")
    summary = json.loads((out / "summary.json").read_text())
    # the tiny task is 3:1 imbalanced: the MAP model trained on (and the filter compares) the
    # class-weighted loss, whose weights the sample record holds
    weight = summary["class_weight"]
    assert weight is not None and len(weight) == 2
    scores = model_scores(p_val, tiny_task.val.y.numpy(), weight)
    np.testing.assert_allclose(table["val_loss"], scores["loss"], rtol=1e-9)
    np.testing.assert_allclose(table["val_accuracy"], scores["accuracy"])
    np.testing.assert_allclose(table["distance_l2"], mset.distances()["l2"], rtol=1e-6)
    surv = pd.read_csv(out / "survival.csv")
    assert list(surv["epsilon"]) == [0.005, 0.01, 0.02, 0.05]
    for eps, kept in zip(surv["epsilon"], surv["models_in_set"], strict=True):
        assert table[f"in_set@{eps:g}"].sum() == kept
    keep = np.load(out / "in_set.npy")
    assert summary["models_in_set"] == int(keep.sum()) == int(table["in_set@0.05"].sum())
    assert summary["models"] == 40 and summary["source"] == "laplace"
    # kept models are those whose validation loss is within 5 % of the MAP model's
    map_p = np.load(out / "map_probs_val.npy")[None]
    map_loss = model_scores(map_p, tiny_task.val.y.numpy(), weight)
    assert np.array_equal(keep, scores["loss"] <= map_loss["loss"][0] * 1.05 + 1e-9)


def test_sample_stage_dropout_needs_dropout(tiny_root, tmp_path):
    with pytest.raises(RashomonError, match="dropout"):
        run_pipeline(
            tmp_path / "run",
            _config(tiny_root, source="dropout"),
            stages=("train", "sample"),
            progress=False,
        )


def test_an_empty_rashomon_set_names_the_epsilons_that_keep_models(tiny_root, tmp_path):
    # A tiny prior precision and a huge temperature make the posterior so wide that no sample
    # stays within 0.1 % of the MAP validation loss; the error lists what each ε keeps.
    run = tmp_path / "run"
    cfg = _config(tiny_root, prior="1e-4", temperature=1e6, epsilon=0.001, epsilons=[0.001, 100.0])
    # the source's own advice ends the generic stage's message
    advice = r"a narrower posterior \(-o prior=grid or a larger fixed prior precision\)$"
    with pytest.raises(RashomonError, match=r"keeps 0 of 40 .*0\.001: 0, 100: 40\); .*" + advice):
        run_pipeline(run, cfg, stages=("train", "sample"), progress=False)
    assert (run / "train").is_dir() and not (run / "sample").exists()
    assert not list(run.glob("sample.tmp-*"))
