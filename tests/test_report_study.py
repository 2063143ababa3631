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
