"""The headline's validity line matches a run to the study's figure for its kind of set only."""

from __future__ import annotations

from rashomon.report.study import measured_recall, set_kind, study_table, validity_line


def test_a_run_finds_its_own_kind_of_set_and_no_other():
    ll = {"source": "laplace", "options": {"subset": "last_layer"}}
    got = measured_recall("pneumoniamnist", "cnn-small", ll)
    assert got is not None and 0 < got["recall"] <= 1 and got["retrained"] >= 20
    line = validity_line("pneumoniamnist", "cnn-small", ll)
    assert f"found {got['recall']:.0%} of the patients" in line and "lower bound" in line
    # every figure in the table comes with the docs table it was copied from
    assert (study_table()["where"].str.startswith("docs/results.md")).all()
    assert validity_line("pneumoniamnist", "resnet18", ll) is None
    assert validity_line("octmnist", "cnn-small", ll) is None
    swag = {"source": "swag", "options": {}}
    assert set_kind(swag) == ("swag", "", "posterior")
    assert measured_recall("pneumoniamnist", "cnn-small", swag) is None
    eps = {"source": "laplace", "options": {"scale": "epsilon"}}
    assert set_kind(eps) == ("laplace", "last_layer", "epsilon")


def test_the_line_names_the_studys_training_and_where_the_run_differs():
    """BreastMNIST's last-layer set was measured twice (20 epochs, 1000 steps, both with dropout
    0.1 and no class weights): the run gets the row trained like it, and the sentence names the
    study's training and every way the run's differs."""
    ll = {"source": "laplace", "options": {"subset": "last_layer"}}
    like_study = {"epochs": None, "steps": 1000, "class_weights": False, "dropout": 0.1}
    line = validity_line("breastmnist", "cnn-small", ll, like_study)
    assert "found 46% of the patients" in line
    assert "(cnn-small, MAP model trained for 1000 steps, dropout 0.1, no class weights)" in line
    assert "differs" not in line
    other = {"epochs": 20, "steps": 1000, "class_weights": True, "dropout": None}
    line = validity_line("breastmnist", "cnn-small", ll, other)
    assert "found 76% of the patients" in line  # the 20-epoch row
    assert "MAP model trained for 20 epochs, dropout 0.1, no class weights" in line
    assert (
        "this run's MAP model was trained differently (no dropout, not 0.1; class weights, not "
        "none), so the figure is only indicative"
    ) in line
    steps = validity_line("breastmnist", "cnn-small", ll, dict(like_study, steps=300))
    assert "found 46% of the patients" in steps
    assert "trained differently (300 steps, not 1000 steps)" in steps
    # epochs (the run's budget) against a study row of steps
    pneu = validity_line("pneumoniamnist", "cnn-small", ll, dict(like_study, epochs=None))
    assert "trained differently (1000 steps, not 20 epochs)" in pneu
    # no training section (an old run): the study's training is still stated
    assert "MAP model trained for 1000 steps" in validity_line("breastmnist", "cnn-small", ll)
