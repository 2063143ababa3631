"""`rashomon run` end to end on real BreastMNIST images: every stage, values cross-checked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from rashomon import metrics as rm
from rashomon.config import load_config
from rashomon.run import STAGE_ORDER, run_pipeline


@pytest.mark.slow
def test_full_pipeline(tiny_root, tmp_path):
    cfg = load_config(
        None,
        {
            "data.dataset": "breastmnist",
            "data.root": str(tiny_root),
            # cnn-small on 120 images stays on the majority class, which decide rightly refuses
            "train.arch": "mlp",
            "train.epochs": 20,
            "sample.models": 60,
            "sample.epsilon": 0.05,
            "evaluate.corruptions": ["speckle_noise"],
            "evaluate.severities": [1, 3],
            "evaluate.attacks": ["fgsm"],
            "evaluate.whitebox_models": 2,
            "evaluate.attack_images": 30,
            "evaluate.bootstrap": 50,
            "decide.ensemble_sizes": [1, 3, 5],
        },
    )
    run_dir = tmp_path / "run"
    results = run_pipeline(run_dir, cfg, progress=False, console=Console(quiet=True))
    assert list(results) == list(STAGE_ORDER) and all(r is not None for r in results.values())

    s = run_dir / "sample"
    keep = np.load(s / "in_set.npy")
    per_model = pd.read_csv(s / "per_model.csv")
    assert keep.sum() == per_model["in_set@0.05"].sum() >= 2
    # The set is chosen on validation loss: every kept model is within 5 % of the MAP model's,
    # the class-weighted NLL the MAP model was trained on (the weights the sample stage recorded).
    map_val = np.load(s / "map_probs_val.npy")
    y_val = np.load(s / "probs_val.npy").shape[1]
    assert y_val == 40
    class_weight = json.loads((s / "summary.json").read_text())["class_weight"]
    map_loss = float(rm.nll(map_val[None], _labels(tiny_root, "val"), class_weight)[0])
    assert (per_model.loc[keep, "val_loss"] <= map_loss * 1.05 + 1e-6).all()

    # evaluate's multiplicity equals the metric recomputed from the stored predictions.
    probs = np.load(s / "probs_test.npy")[keep]
    ref = np.load(s / "map_probs_test.npy").argmax(1)
    preds = probs.argmax(-1)
    summary = json.loads((run_dir / "evaluate" / "summary.json").read_text())
    assert summary["ambiguity"] == pytest.approx(rm.ambiguity(preds, ref), abs=1e-4)
    assert summary["discrepancy"] == pytest.approx(rm.discrepancy(preds, ref), abs=1e-4)
    tidy = pd.read_csv(run_dir / "evaluate" / "metrics.csv")
    assert list(tidy.columns[:6]) == ["metric", "group", "source", "epsilon", "stat", "value"]
    acc_mean = tidy.query("metric == 'accuracy' and group == 'all' and stat == 'mean'")["value"]
    y_test = _labels(tiny_root, "test")
    assert float(acc_mean.iloc[0]) == pytest.approx((preds == y_test).mean(), abs=1e-6)
    rob = pd.read_csv(run_dir / "evaluate" / "robustness.csv")
    assert {"speckle_noise", "fgsm"} <= set(rob["corruption"])
    white = rob[(rob["mode"] == "whitebox") & (rob["model"] >= 0)]["model"].nunique()
    assert white == 2  # evaluate.whitebox_models reaches the attack
    timings = summary["robustness_timings"]
    assert timings["attack_images"] == 30 and timings["images"] == 40
    # a head-only binary set of a small task gets the exact last-layer extremes by default
    ext = pd.read_csv(run_dir / "evaluate" / "extremes.csv")
    assert len(ext) == 40 and (ext["p_min"] <= ext["p_map"] + 1e-9).all()
    assert (ext["p_map"] <= ext["p_max"] + 1e-9).all()
    flips = (ext["p_min"] < 0.5) & (ext["p_max"] > 0.5)
    assert (flips == ext["flip_possible"]).all()
    assert summary["extremes_ambiguity"] == pytest.approx(flips.mean(), abs=1e-4)
    assert summary["extremes_set"]["epsilon"] == 0.05

    d = run_dir / "decide"
    for name in ("selection.csv", "ensembles.csv", "patients.csv", "lsi.csv"):
        assert (d / name).exists(), name
    assert len(pd.read_csv(d / "lsi.csv")) == 120
    # the most robust model is chosen on corrupted validation, confirmed on corrupted test
    sel = pd.read_csv(d / "selection.csv")
    rob_row = sel.set_index("desideratum").loc["corruption_accuracy"]
    correct_test = np.load(run_dir / "evaluate" / "corrupted_correct_test.npy")
    audited = np.load(run_dir / "evaluate" / "corrupted_models.npy")
    assert correct_test.shape == (1 + len(audited), 40)
    assert rob_row["map_test"] == pytest.approx(correct_test[0].mean())
    assert rob_row["model"] == audited[int(rob_row["chosen"])]
    # every row names the chosen model's id in the sample stage's set (what export takes)
    assert set(sel["model"]) <= set(np.flatnonzero(keep))
    assert (sel["gain_p_holm"].dropna() >= sel["gain_p"].dropna() - 1e-12).all()
    # fairlearn's ThresholdOptimizer on the MAP model's and on set members' scores
    post = pd.read_csv(d / "postprocess.csv")
    assert -1 in set(post["model"]) and set(post["split"]) == {"val", "test"}
    assert "threshold_test" in sel.columns

    html = (run_dir / "report" / "report.html").read_text()
    assert "Rashomon audit" in html and "data:image/png;base64," in html
    assert "http://" not in html.replace("http://www.w3.org", "")


def _labels(root, split):
    with np.load(root / "breastmnist.npz") as f:
        return f[f"{split}_labels"][:, 0].astype(np.int64)
