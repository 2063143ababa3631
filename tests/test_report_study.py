"""The headline's validity line matches a run to the study's figure for its kind of set only, and
says whether that figure is size-matched or a full-size one of the older study."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rashomon.report import study
from rashomon.report.study import measured_recall, set_kind, study_table, validity_line

LL = {"source": "laplace", "options": {"subset": "last_layer"}}
REAL_STUDY = study.STUDY_FILE
# The older rounds' full-size rows, as they stood before the December study added size-matched
# ones: the matching and wording rules are tested on this fixed table.
OLDER_ROUNDS = Path(__file__).with_name("data") / "study_recall_older.csv"


@pytest.fixture(autouse=True)
def older_study(monkeypatch: pytest.MonkeyPatch):
    """study_table() reads OLDER_ROUNDS in every test of this module unless a test says not."""
    real = study.study_table
    monkeypatch.setattr(study, "STUDY_FILE", OLDER_ROUNDS)
    real.cache_clear()
    yield
    real.cache_clear()  # a test may have replaced study_table itself: clear the real cache


def test_a_run_finds_its_own_kind_of_set_and_no_other():
    got = measured_recall("pneumoniamnist", "cnn-small", LL)
    assert got is not None and got["retrained"] == 30
    assert got["flag_recall_full"] == 0.47 and got["flag_precision_full"] == 0.95
    # the study rows are the older, full-size round: no size-matched figure is invented
    assert not got["size_matched"] and got["flag_recall_ratio"] is None
    assert (study_table()["flag_recall_ratio"] == "").all()
    line = validity_line("pneumoniamnist", "cnn-small", LL)
    assert line.startswith("In an older round of the validity study on pneumoniamnist")
    assert "whole sets of this kind flagged 47% of the patients that 30 retrained" in line
    assert "full-size figures, which grow with the set's size whatever its quality" in line
    # recall 0.47 < precision 0.95: those sets flagged fewer patients than retraining
    assert line.endswith(
        "those sets flagged fewer patients than retraining: read the share above as a lower bound."
    )
    # every figure in the table comes with the docs table it was copied from
    assert (study_table()["where"].str.startswith("docs/results.md")).all()
    assert validity_line("pneumoniamnist", "resnet18", LL) is None
    assert validity_line("octmnist", "cnn-small", LL) is None
    swag = {"source": "swag", "options": {}}
    assert set_kind(swag) == ("swag", "", "posterior")
    assert measured_recall("pneumoniamnist", "cnn-small", swag) is None
    eps = {"source": "laplace", "options": {"scale": "epsilon"}}
    assert set_kind(eps) == ("laplace", "last_layer", "epsilon")


def test_a_set_that_flagged_more_than_retraining_is_no_lower_bound():
    """Boundary samples: recall 0.94 at precision 0.41, so those sets flagged 0.94 / 0.41 = 2.3
    times the retrained networks' patients."""
    boundary = {"source": "laplace", "options": {"scale": "boundary"}}
    line = validity_line("breastmnist", "cnn-small", boundary, {"steps": 1000, "dropout": 0.1})
    assert "flagged 94% of the patients that 30 retrained networks flag, with precision 41%" in (
        line
    )
    assert line.endswith("those sets flagged more patients than retraining did.")
    assert "lower bound" not in line


def test_the_line_names_the_studys_training_and_where_the_run_differs():
    """BreastMNIST's last-layer set was measured twice (20 epochs, 1000 steps, both with dropout
    0.1 and no class weights): the run gets the row trained like it, and the sentence names the
    study's training and every way the run's differs."""
    like_study = {"epochs": None, "steps": 1000, "class_weights": False, "dropout": 0.1}
    line = validity_line("breastmnist", "cnn-small", LL, like_study)
    assert "flagged 46% of the patients" in line
    assert "(cnn-small, MAP model trained for 1000 steps, dropout 0.1, no class weights)" in line
    assert "differently" not in line
    other = {"epochs": 20, "steps": 1000, "class_weights": True, "dropout": None}
    line = validity_line("breastmnist", "cnn-small", LL, other)
    assert "flagged 76% of the patients" in line  # the 20-epoch row
    assert "MAP model trained for 20 epochs, dropout 0.1, no class weights" in line
    assert (
        "this run's MAP model was trained differently (no dropout, not 0.1; class weights, not "
        "none), so the figure is only indicative"
    ) in line
    steps = validity_line("breastmnist", "cnn-small", LL, dict(like_study, steps=300))
    assert "flagged 46% of the patients" in steps
    assert "trained differently (300 steps, not 1000 steps)" in steps
    # epochs (the run's budget) against a study row of steps
    pneu = validity_line("pneumoniamnist", "cnn-small", LL, dict(like_study, epochs=None))
    assert "trained differently (1000 steps, not 20 epochs)" in pneu
    # no training section (an old run): the study's training is still stated
    assert "MAP model trained for 1000 steps" in validity_line("breastmnist", "cnn-small", LL)


def test_a_size_matched_row_is_preferred_to_the_full_size_ones(monkeypatch):
    """Once the study holds a size-matched row for a kind of set, the line quotes its ratios,
    even against full-size rows trained more like the run."""
    table = study_table()
    row = table[table["dataset"] == "breastmnist"].iloc[-4].copy()  # last-layer, 1000 steps
    row[["flag_recall_ratio", "flag_precision_ratio", "matched_models"]] = ["0.61", "1.02", "12"]
    row[["flag_recall_full", "flag_precision_full", "steps", "dropout"]] = ["", "", "", ""]
    row[["epochs", "where"]] = ["20", "docs/results.md, a size-matched table"]
    monkeypatch.setattr(study, "study_table", lambda: pd.concat([table, row.to_frame().T]))
    like_full = {"epochs": None, "steps": 1000, "class_weights": False, "dropout": 0.1}
    found = measured_recall("breastmnist", "cnn-small", LL, like_full)
    assert found["size_matched"] and found["flag_recall_ratio"] == 0.61
    assert found["flag_recall_full"] is None
    assert validity_line("breastmnist", "cnn-small", LL, like_full) == (
        "In the validity study on breastmnist (cnn-small, MAP model trained for 20 epochs, no "
        "dropout, no class weights), a set of this kind reached 0.61 of the retrained ceiling's "
        "flag recall and 1.02 of its precision (12 of its models against 12 retrained networks, "
        "two halves of 30 retrained networks giving the ceiling; docs/results.md, a size-matched "
        "table); this run's MAP model was trained differently (1000 steps, not 20 epochs; "
        "dropout 0.1, not none), so the figure is only indicative."
    )


def test_dataset_key_names_folder_tasks_by_folder_and_label_file():
    """MedMNIST names stay as given; a folder task is its folder's name, with the label file's
    stem when it is not labels.csv (HAM10000's binary and seven-class tasks are two tasks)."""
    from rashomon.report.study import dataset_key

    assert dataset_key({"dataset": "BreastMNIST"}) == "breastmnist"
    assert dataset_key({"dataset": "/data/rsna-cxr/"}) == "rsna-cxr"
    assert dataset_key({"dataset": "/data/rsna-cxr", "labels": "labels.csv"}) == "rsna-cxr"
    key = dataset_key({"dataset": "../shared/data/ham10000", "labels": "labels-binary.csv"})
    assert key == "ham10000:labels-binary"


def test_the_december_study_rows_are_size_matched_and_quoted(monkeypatch):
    """The shipped table holds the December study's size-matched rows: a default rsna-cxr run
    (last-layer marglik set, class_weights auto, dropout 0.1, 1000 steps) gets the ratios of its
    own row, read from the file, in the size-matched wording."""
    monkeypatch.setattr(study, "STUDY_FILE", REAL_STUDY)
    study.study_table.cache_clear()
    table = study_table()
    row = table[
        (table["dataset"] == "rsna-cxr")
        & (table["source"] == "laplace")
        & (table["subset"] == "last_layer")
        & (table["scale"] == "posterior")
    ].iloc[-1]
    train = {"steps": 1000, "dropout": 0.1, "class_weights": "auto"}
    found = measured_recall("rsna-cxr", "cnn-small", LL, train)
    assert found["size_matched"] and found["differences"] == []
    assert found["flag_recall_ratio"] == float(row["flag_recall_ratio"])
    line = validity_line("rsna-cxr", "cnn-small", LL, train)
    assert f"reached {float(row['flag_recall_ratio']):.2f} of the retrained ceiling's" in line
    assert "class weights when imbalanced" in line and "differently" not in line
