"""rashomon.schema is the one list of the run directory's columns: the functions the evaluate and
decide stages write their tables with return exactly those columns (binary, multiclass and
multilabel tasks, on small hand-made arrays), and docs/run-directory.md lists them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rashomon import metrics as rm
from rashomon import schema as S
from rashomon.decide import decide_all
from rashomon.errors import RashomonError
from rashomon.evaluate import multiplicity_tables, per_model_frames, robustness_columns

M, N, N_TRAIN = 8, 60, 30
ATTRS = ["sex"]


def _informative(y: np.ndarray, classes: int, rng: np.random.Generator, m: int) -> np.ndarray:
    """[m, N, C] softmax probabilities that favour the true class (a MAP model that is not
    degenerate, so selection runs) with per-model noise (so the set disagrees somewhere)."""
    logits = rng.normal(0, 1.0, (m, len(y), classes))
    logits[:, np.arange(len(y)), y] += 2.0
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _arrays(classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = {s: rng.integers(0, classes, N) for s in ("val", "test")}
    probs = {s: _informative(y[s], classes, rng, M + 1) for s in ("val", "test")}
    groups = {s: {"sex": rng.integers(0, 2, N)} for s in ("val", "test")}
    return y, probs, groups


def _evaluate_tables(probs, map_probs, y, groups, kind, derived=None):
    derived = derived or {"sex": False}
    levels = {"sex": ["f", "m"]}
    tables, _ = multiplicity_tables(
        probs, map_probs, y, groups, derived, levels, kind=kind, threshold=0.5, seed=0
    )
    pm = per_model_frames(
        probs,
        map_probs,
        np.arange(len(probs)),
        y=y,
        groups=groups,
        attributes_derived=derived,
        threshold=0.5,
        kind=kind,
        level_names=levels,
    )
    set_rows = pm[pm[S.MODEL] >= 0].drop(columns=S.MODEL)
    map_row = pm[pm[S.MODEL] == -1].drop(columns=S.MODEL).iloc[0]
    tables["metrics"] = rm.spread_table(set_rows, map_row, "laplace", 0.02, derived, n_boot=20)
    tables["per_model_test"] = pm
    return tables


def _assert_decide_columns(out: dict[str, pd.DataFrame], extra: dict[str, list[str]]) -> None:
    assert set(out) <= set(S.STAGE_TABLES["decide"])
    for key, table in out.items():
        expected = [*S.TABLES[key].columns, *extra.get(key, []), *extra.get("*", [])]
        assert list(table.columns) == expected, key


def test_binary_producers_write_the_schemas_columns():
    y, probs, groups = _arrays(2)
    tables = _evaluate_tables(
        probs["test"][1:], probs["test"][0], y["test"], groups["test"], "binary"
    )
    assert list(tables["per_sample"].columns) == S.per_sample_columns("binary", 2, ATTRS)
    assert list(tables["per_sample"].columns) == [
        "sample",
        "true_label",
        "map_label",
        "flip_rate",
        "ambiguous",
        "disagreement",
        "self_consistency",
        "capacity",
        "map_prob",
        "vpr_low",
        "vpr_high",
        "vpr_width",
        "sex",
    ]
    for key in ("multiplicity", "convergence", "metrics"):
        assert list(tables[key].columns) == list(S.TABLES[key].columns), key
    assert tables["per_model_test"].columns[0] == S.MODEL

    rng = np.random.default_rng(1)
    train_preds = rng.integers(0, 2, (M, N_TRAIN))
    out = decide_all(
        val_probs=probs["val"][1:],
        val_y=y["val"],
        test_probs=probs["test"][1:],
        test_y=y["test"],
        map_val_probs=probs["val"][0],
        map_test_probs=probs["test"][0],
        val_groups=groups["val"],
        test_groups=groups["test"],
        ensemble_sizes=(1, 3),
        n_boot=20,
        baseline_test={"accuracy": 0.5},
        lsi=rng.exponential(size=N_TRAIN),
        train_preds=train_preds,
        map_train_preds=train_preds[0],
    )
    # every table, each under its schema key; the stage adds postprocess.csv (fairlearn's
    # ThresholdOptimizer needs the task's attribute, not only arrays)
    assert set(out) == set(S.STAGE_TABLES["decide"]) - {"postprocess"}
    extra = {"selection": [S.MODEL, *S.baseline_columns()], "lsi": [S.DISAGREEMENT, S.FLIP_RATE]}
    _assert_decide_columns(out, extra)


def test_multiclass_and_multilabel_layouts():
    y, probs, groups = _arrays(3, seed=2)
    tables = _evaluate_tables(
        probs["test"][1:], probs["test"][0], y["test"], groups["test"], "multiclass"
    )
    cols = S.per_sample_columns("multiclass", 3, ATTRS)
    assert list(tables["per_sample"].columns) == cols
    assert cols[8:11] == ["vpr_low_0", "vpr_high_0", "vpr_width_0"]

    rng = np.random.default_rng(3)
    labels = 3
    y_ml = {s: (rng.random((N, labels)) < 0.4).astype(int) for s in ("val", "test")}
    p_ml = {
        s: np.clip(0.7 * y_ml[s][None] + rng.uniform(0, 0.3, (M + 1, N, labels)), 0, 1)
        for s in ("val", "test")
    }
    tables = _evaluate_tables(
        p_ml["test"][1:], p_ml["test"][0], y_ml["test"], groups["test"], "multilabel"
    )
    assert list(tables["per_sample"].columns) == S.per_sample_columns(
        "multilabel", 2, ATTRS, labels=labels
    )
    assert "convergence" not in tables
    assert S.label_columns(tables["per_sample"].columns, S.AMBIGUOUS) == {
        0: "label0.ambiguous",
        1: "label1.ambiguous",
        2: "label2.ambiguous",
    }
    out = decide_all(
        val_probs=p_ml["val"][1:],
        val_y=y_ml["val"],
        test_probs=p_ml["test"][1:],
        test_y=y_ml["test"],
        map_val_probs=p_ml["val"][0],
        map_test_probs=p_ml["test"][0],
        kind="multilabel",
        ensemble_sizes=(1, 3),
        n_boot=20,
    )
    assert {"selection", "ensembles", "patients", "notes"} <= set(out)
    _assert_decide_columns(out, {"selection": [S.MODEL], "*": [S.LABEL]})


def test_robustness_columns_are_the_schemas():
    from rashomon.evaluate.robustness import COLUMNS

    assert list(COLUMNS) == list(S.TABLES["robustness"].columns)
    rob = pd.DataFrame(
        {
            S.MODEL: [-1, 0, -1, 0],
            S.FAMILY: ["corruption", "corruption", "attack", "attack"],
            S.CORRUPTION: ["pixelate", "pixelate", "fgsm", "fgsm"],
            S.EPSILON: [np.nan, np.nan, 2 / 255, 2 / 255],
            S.MODE: ["", "", "whitebox", "transfer"],
            S.METRIC: "accuracy",
            S.VALUE: [0.7, 0.6, 0.3, 0.5],
        }
    )
    cols = robustness_columns(rob)
    assert list(cols.columns) == [S.MODEL, S.CORRUPTION_ACCURACY, "adv_accuracy_fgsm_2of255"]
    assert cols.set_index(S.MODEL).loc[0, "adv_accuracy_fgsm_2of255"] == 0.5  # transfer


def test_table_checks_and_helpers():
    t = S.TABLES["per_model"]
    cols = [*t.columns, "in_set@0.02", "in_set@1"]
    assert t.missing(cols) == [] and t.unexpected(cols) == []
    assert t.unexpected([*cols, "kept"]) == ["kept"] and t.missing(cols[1:]) == ["model"]
    assert S.TABLES["per_sample"].unexpected(["sample", "label2.capacity", "sex"]) == ["sex"]
    assert S.TABLES["per_sample"].unexpected(["sex"], allowed=ATTRS) == []
    assert S.table_path("run", "patients") == Path("run/decide/patients.csv")
    assert S.TABLES["ensembles"].file == "ensembles.csv"
    assert S.label_column(3, S.CAPACITY) == "label3.capacity"
    # every decide table is a key of decide_all's result and a file of the decide stage
    assert S.STAGE_TABLES["decide"][:3] == ("selection", "selection_values", "pareto")


def test_sample_record(tmp_path):
    import json

    run = tmp_path / "run"
    with pytest.raises(RashomonError, match=r"has no finished stage 'sample'"):
        S.sample_record(run)
    (run / "sample").mkdir(parents=True)
    (run / "sample" / "summary.json").write_text(json.dumps({"source": "dropout"}))
    with pytest.raises(RashomonError, match=r"lacks epsilon, on, options"):
        S.sample_record(run)
    summary = {"source": "dropout", "options": {"p": 0.1}, "epsilon": 0.05, "on": "loss"}
    (run / "sample" / "summary.json").write_text(json.dumps({**summary, "models": 7}))
    rec = S.sample_record(run)
    assert (rec.epsilon, rec.on, rec.source, rec.options) == (0.05, "loss", "dropout", {"p": 0.1})
    assert (rec.models, rec.models_in_set) == (7, None)


def test_run_directory_doc_lists_every_table():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "run-directory.md").read_text()
    assert S.markdown() in doc, "docs/run-directory.md: paste rashomon.schema.markdown()"
