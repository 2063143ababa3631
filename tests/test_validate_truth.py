"""The retrained truth audited as any set: `rashomon validate` writes the per-model desiderata,
spreads, within-stratum gaps and best-in-set selection of the retrained networks within ε, and
puts their selection beside the cheap set's; a `--source retrain` run selects among its
retrained networks like any set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from rashomon import schema as S
from rashomon.cli import app
from rashomon.decide.desiderata import default_desiderata, single_model_values
from rashomon.validate import selection_side_by_side, truth_tables


def _selection(rows: list[dict], **extra) -> pd.DataFrame:
    """A selection table with the schema's columns: the given values, NaN elsewhere."""
    full = [{c: r.get(c, np.nan) for c in S.TABLES["selection"].columns} | extra for r in rows]
    return pd.DataFrame(full)


def test_side_by_side_by_hand():
    q05, q95 = S.set_test_quantile(0.05), S.set_test_quantile(0.95)

    def gap(gain, lo, hi, mde, models):  # a TPR gap row (lower is better)
        return {
            S.DESIDERATUM: "tpr_gap:sex",
            S.HIGHER_IS_BETTER: False,
            S.MAP_TEST: 0.2,
            S.TEST_GAIN: gain,
            S.VERDICT: "selection noise",
            q05: lo,
            q95: hi,
            S.MIN_DETECTABLE_GAIN: mde,
            S.MODELS_IN_SET: models,
        }

    def gain(name, map_test):  # a larger-is-better row with a real gain
        return {
            S.DESIDERATUM: name,
            S.HIGHER_IS_BETTER: True,
            S.MAP_TEST: map_test,
            S.VERDICT: "real gain",
        }

    cheap = _selection([gap(0.01, 0.18, 0.22, 0.12, 900), gain("corruption_accuracy", 0.7)])
    truth = _selection([gap(0.08, 0.05, 0.35, 0.15, 28), gain("accuracy", 0.8)])
    side = selection_side_by_side(cheap, truth)
    assert list(side.columns) == S.selection_vs_set_columns()
    side = side.set_index(S.DESIDERATUM)
    assert set(side.index) == {"tpr_gap:sex", "corruption_accuracy", "accuracy"}
    row = side.loc["tpr_gap:sex"]
    assert (row["set_test_gain"], row["retrained_test_gain"]) == (0.01, 0.08)
    assert row["set_test_spread"] == pytest.approx(0.04)  # the cheap set moves the gap 0.04 ...
    assert row["retrained_test_spread"] == pytest.approx(0.30)  # ... retraining 0.30
    assert (row["set_min_detectable_gain"], row["retrained_min_detectable_gain"]) == (0.12, 0.15)
    assert (row["set_models_in_set"], row["retrained_models_in_set"]) == (900, 28)
    assert row[S.VERDICTS_AGREE] and row[S.MAP_TEST] == 0.2 and not row[S.HIGHER_IS_BETTER]
    # a desideratum one side did not select for: the other side empty, the verdicts not agreeing
    only_set = side.loc["corruption_accuracy"]
    assert np.isnan(only_set["retrained_test_gain"]) and not only_set[S.VERDICTS_AGREE]
    only_truth = side.loc["accuracy"]
    assert only_truth[S.MAP_TEST] == 0.8 and only_truth[S.HIGHER_IS_BETTER]
    assert pd.isna(only_truth["set_verdict"]) and only_truth["retrained_verdict"] == "real gain"
    # no cheap selection (decide has not run): the truth's side alone
    alone = selection_side_by_side(None, truth)
    assert alone["set_verdict"].isna().all() and list(alone[S.DESIDERATUM]) == [
        "tpr_gap:sex",
        "accuracy",
    ]


def _informative(y: np.ndarray, rng: np.random.Generator, m: int) -> np.ndarray:
    logits = rng.normal(0, 1.0, (m, len(y), 2))
    logits[:, np.arange(len(y)), y] += 2.0
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_truth_tables_on_arrays():
    rng = np.random.default_rng(0)
    n, t = 80, 6
    y = {s: rng.integers(0, 2, n) for s in ("val", "test")}
    probs = {s: _informative(y[s], rng, t + 1) for s in ("val", "test")}
    sex = {s: rng.integers(0, 2, n) for s in ("val", "test")}
    view = {s: np.where(rng.random(n) < 0.8, sex[s], 1 - sex[s]) for s in ("val", "test")}
    groups = {s: {"sex": sex[s], "view": view[s]} for s in ("val", "test")}
    ids = np.array([0, 2, 3, 5, 7, 8])  # the retrained networks within ε, of nine
    out = truth_tables(
        val_probs=probs["val"][1:],
        test_probs=probs["test"][1:],
        map_val_probs=probs["val"][0],
        map_test_probs=probs["test"][0],
        ids=ids,
        y=y,
        groups=groups,
        derived={"sex": False, "view": False},
        levels={"sex": ["F", "M"], "view": ["AP", "PA"]},
        kind="binary",
        epsilon=0.05,
        n_boot=50,
        baseline_test={"accuracy": 0.5},
        threshold_test={"tpr_gap:sex": 0.01},
    )
    assert out["per_model_test"][S.MODEL].tolist() == [-1, *ids]
    assert set(out["spread"][S.SOURCE]) == {"retrain"}
    assert list(out["spread"].columns) == list(S.TABLES["metrics"].columns)
    ws = out["within_stratum"]
    assert set(ws[S.ATTRIBUTE]) == {"sex"} and set(ws[S.STRATUM_ATTRIBUTE]) == {"view"}
    sel = out["selection"].set_index(S.DESIDERATUM)
    assert list(out["selection"].columns[: len(S.TABLES["selection"].columns)]) == list(
        S.TABLES["selection"].columns
    )
    values = out["selection_values"]
    assert set(values[S.MODEL]) == set(ids)
    # every chosen model is the validation best among the retrained networks, named by its id
    for name, row in sel.iterrows():
        v = values[values[S.DESIDERATUM] == name].set_index(S.MODEL)
        best = v[S.VAL].idxmax() if row[S.HIGHER_IS_BETTER] else v[S.VAL].idxmin()
        assert row[S.MODEL] == best == ids[row[S.CHOSEN]], name
        assert row[S.CHOSEN_TEST] == pytest.approx(v.loc[best, S.TEST])
        assert np.isfinite(row[S.GAIN_SE]), name
    assert sel.loc["accuracy", "constrained_test"] == 0.5
    assert sel.loc["tpr_gap:sex", "threshold_test"] == 0.01
    assert {"pareto", "ensembles", "patients"}.isdisjoint(out)  # selection only


# --- on a small real run ------------------------------------------------------------------------

CONFIG = {
    "data": {"dataset": "breastmnist"},
    # 20 epochs of 2 steps: fewer leave every MLP on the majority class (tests/test_validate.py)
    "train": {"arch": "mlp", "epochs": 20},
    "sample": {"models": 30, "epsilon": 0.5, "epsilons": [0.5]},
    "evaluate": {
        "corruptions": ["pixelate"],
        "severities": [1],
        "attacks": [],
        "bootstrap": 50,
        "extremes": "off",
    },
    "decide": {"constrained_baseline": False, "lsi": False, "ensemble_sizes": [1, 3]},
}


def _cli(tmp_path, root, *args: str) -> None:
    result = CliRunner().invoke(
        app,
        [*args, "--no-progress"],
        env={
            "RASHOMON_DATA": str(root),
            "RASHOMON_CACHE": str(tmp_path / "cache"),
            "COLUMNS": "200",
        },
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check_selection(sel: pd.DataFrame, values: pd.DataFrame, map_values: dict) -> None:
    """Each row: the chosen model is the validation best, its test value and gain are those of
    selection_values, the MAP model's test value is the one computed here."""
    for _, row in sel.iterrows():
        name = row[S.DESIDERATUM]
        v = values[values[S.DESIDERATUM] == name].set_index(S.MODEL)
        if name not in map_values:  # corruption_accuracy: not in selection_values
            continue
        hib = row[S.HIGHER_IS_BETTER]
        best = v[S.VAL].idxmax() if hib else v[S.VAL].idxmin()
        assert v.loc[row[S.MODEL], S.VAL] == pytest.approx(v.loc[best, S.VAL]), name
        assert row[S.CHOSEN_TEST] == pytest.approx(v.loc[row[S.MODEL], S.TEST]), name
        assert row[S.MAP_TEST] == pytest.approx(map_values[name], nan_ok=True), name
        sign = 1 if hib else -1
        assert row[S.TEST_GAIN] == pytest.approx(
            sign * (row[S.CHOSEN_TEST] - row[S.MAP_TEST]), nan_ok=True
        )


def test_validate_selects_among_the_retrained_networks(tiny_root, tmp_path):
    import rashomon as rs

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    _cli(tmp_path, tiny_root, "run", str(path), "--out", str(run))
    out = _cli(tmp_path, tiny_root, "validate", str(run), "--retrain", "6")
    assert "best-in-set selection among the" in out
    v = run / "validate"
    summary = json.loads((v / "summary.json").read_text())
    kept = summary["retrained_in_set"]
    pm = pd.read_csv(v / "per_model_test.csv")
    assert len(pm) == kept + 1 and pm[S.MODEL].iloc[0] == -1
    # the same columns as the cheap set's per-model table, plus nothing it lacks
    assert list(pm.columns) == list(pd.read_csv(run / "evaluate" / "per_model_test.csv").columns)
    # corruption accuracy of each retrained network (pixelate, severity 1)
    assert pm[S.CORRUPTION_ACCURACY].notna().all()
    spread = pd.read_csv(v / "spread.csv")
    assert set(spread[S.SOURCE]) == {"retrain"}
    tpr_random = spread[(spread[S.METRIC] == "tpr_gap") & (spread[S.ATTRIBUTE] == "random")]
    assert set(tpr_random[S.STAT]) >= {"mean", "q05", "q95", "map"}
    # breastmnist has no acquisition attribute but the derived intensity: random within it
    ws = pd.read_csv(v / "within_stratum.csv")
    assert set(ws[S.ATTRIBUTE]) == {"random"} and set(ws[S.STRATUM_ATTRIBUTE]) == {"intensity"}

    # the truth's selection, checked against its own per-model values and the MAP model's
    task = rs.load_task("breastmnist", root=tiny_root)
    groups = {a: g.numpy() for a, g in task.test.groups.items()}
    map_test = np.load(run / "sample" / "map_probs_test.npy")
    des = default_desiderata(sorted(groups), 2)
    map_values = single_model_values(map_test, task.test.y.numpy(), groups, des)
    sel = pd.read_csv(v / "selection.csv")
    values = pd.read_csv(v / "selection_values.csv")
    assert set(values[S.MODEL]) == set(pm[S.MODEL][1:])  # the retrained ids within ε
    assert (sel[S.MODELS_IN_SET] == kept).all()
    _check_selection(sel, values, map_values)
    # the power bar wherever the chosen network and the MAP model differ on some test patient
    differ = sel[S.GAIN_SE] > 0
    assert sel.loc[differ, S.MIN_DETECTABLE_GAIN].notna().all()
    assert sel.loc[~differ, S.MIN_DETECTABLE_GAIN].isna().all()
    assert S.CORRUPTION_ACCURACY in set(sel[S.DESIDERATUM])  # selected on corrupted val
    # accuracy per model agrees between the selection values and the per-model table
    acc = values[values[S.DESIDERATUM] == "accuracy"].set_index(S.MODEL)[S.TEST]
    np.testing.assert_allclose(acc.sort_index(), pm.set_index(S.MODEL)["accuracy"][acc.index])
    # ThresholdOptimizer on the MAP model and each retrained network (binary task, attribute)
    post = pd.read_csv(v / "postprocess.csv")
    assert set(post[S.MODEL]) == {-1, *set(pm[S.MODEL][1:])}
    assert "threshold_test" in sel.columns

    # side by side with the cheap set's selection, over the same MAP model
    side = pd.read_csv(v / "selection_vs_set.csv")
    assert list(side.columns) == S.selection_vs_set_columns()
    cheap = pd.read_csv(run / "decide" / "selection.csv").set_index(S.DESIDERATUM)
    for _, row in side.iterrows():
        name = row[S.DESIDERATUM]
        assert row["set_test_gain"] == pytest.approx(cheap.loc[name, S.TEST_GAIN], nan_ok=True)
        assert row["retrained_test_gain"] == pytest.approx(
            sel.set_index(S.DESIDERATUM).loc[name, S.TEST_GAIN], nan_ok=True
        )
        assert row[S.MAP_TEST] == pytest.approx(cheap.loc[name, S.MAP_TEST], nan_ok=True)
    assert set(summary["retrained_selection"]) == set(side[S.DESIDERATUM])


def test_a_retrain_source_run_selects_like_any_set(tiny_root, tmp_path):
    """`--source retrain` (a sweep's retrain cell) is an ordinary run: its decide stage chooses
    among the retrained networks within ε on validation and judges the choice on test."""
    import rashomon as rs

    config = {**CONFIG, "evaluate": {**CONFIG["evaluate"], "corruptions": []}}
    config["sample"] = {"source": "retrain", "models": 6, "epsilon": 0.5, "epsilons": [0.5]}
    path = tmp_path / "retrain.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "retrain"
    _cli(tmp_path, tiny_root, "run", str(path), "--out", str(run))
    keep = np.load(run / "sample" / "in_set.npy")
    sel = pd.read_csv(run / "decide" / "selection.csv")
    values = pd.read_csv(run / "decide" / "selection_values.csv")
    assert len(keep) == 6 and (sel[S.MODELS_IN_SET] == keep.sum()).all()
    # `model` in both tables: the id in sample/per_model.csv of a network within ε
    assert set(values[S.MODEL]) == set(np.flatnonzero(keep))
    task = rs.load_task("breastmnist", root=tiny_root)
    groups = {a: g.numpy() for a, g in task.test.groups.items()}
    map_test = np.load(run / "sample" / "map_probs_test.npy")
    map_values = single_model_values(
        map_test, task.test.y.numpy(), groups, default_desiderata(sorted(groups), 2)
    )
    _check_selection(sel, values, map_values)
    # the chosen models' test probabilities are the set's, model by model
    probs = np.load(run / "sample" / "probs_test.npy")
    acc = sel.set_index(S.DESIDERATUM).loc["accuracy"]
    chosen_acc = (probs[int(acc[S.MODEL])].argmax(-1) == task.test.y.numpy()).mean()
    assert acc[S.CHOSEN_TEST] == pytest.approx(chosen_acc)
    assert (sel[S.GAIN_SE] >= 0).all()
