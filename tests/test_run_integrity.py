"""A run directory never mixes stages computed from different inputs: stale stages are redone or
refused, failed commands leave the run as it was, data is identified by content, one process at
a time. Each test reproduces a defect a reliability probe found."""

from __future__ import annotations

import fcntl
import json
import shutil

import numpy as np
import pandas as pd
import yaml

from tests.test_cli import assert_one_line_error, rashomon

FAST = (
    "evaluate: {corruptions: [], attacks: [], bootstrap: 20}\n"
    "decide: {constrained_baseline: false, lsi: false, ensemble_sizes: [1, 3]}\n"
)
BASE = (
    "--dataset",
    "breastmnist",
    "--arch",
    "mlp",
    "--epochs",
    "1",
    "--models",
    "40",
    "--no-progress",
)


def _run(tmp_path, root, *extra, stages="train,sample,evaluate,decide,report"):
    config = tmp_path / "fast.yaml"
    config.write_text(FAST)
    out = tmp_path / "run"
    proc = rashomon(
        "run", str(config), *BASE, "--stages", stages, "--out", str(out), *extra, root=root
    )
    assert proc.returncode == 0, proc.stderr
    return out


def _records(out):
    return json.loads((out / "stages.json").read_text())


def test_a_stage_whose_input_was_redone_is_refused_then_redone(tiny_root, tmp_path):
    out = _run(tmp_path, tiny_root, "--epsilon", "0.5")
    before = _records(out)
    # Redo only the sample stage at another ε: evaluate, decide and report read the old set.
    proc = rashomon("sample", str(out), "--epsilon", "1.0", root=tiny_root)
    assert proc.returncode == 0, proc.stderr
    assert "reused" in proc.stdout  # only ε changed: the set was not rebuilt
    proc = rashomon("report", str(out), root=tiny_root)
    assert_one_line_error(
        proc, r"reads stage 'evaluate', which ran with another config.*rashomon evaluate"
    )
    proc = rashomon("evaluate", str(out), root=tiny_root)
    assert proc.returncode == 0, proc.stderr
    evaluated = json.loads((out / "evaluate" / "summary.json").read_text())
    sampled = json.loads((out / "sample" / "summary.json").read_text())
    assert evaluated["epsilon"] == 1.0 == sampled["epsilon"]
    assert evaluated["models_in_set"] == sampled["models_in_set"]
    # `rashomon run` with the run's config redoes what is stale, nothing else
    proc = rashomon("run", "--out", str(out), "--no-progress", root=tiny_root)
    assert proc.returncode == 0, proc.stderr
    after = _records(out)
    assert after["train"]["id"] == before["train"]["id"]
    assert after["decide"]["id"] != before["decide"]["id"]


def test_epsilon_one_is_the_set_the_report_shows(tiny_root, tmp_path):
    out = _run(tmp_path, tiny_root, "--epsilon", "1.0")
    per_model = pd.read_csv(out / "sample" / "per_model.csv")
    kept = int(per_model["in_set@1"].sum())
    html = (out / "report" / "report.html").read_text()
    assert f"{kept} / 40" in html
    assert json.loads((out / "evaluate" / "summary.json").read_text())["epsilon"] == 1.0


def test_a_failed_command_leaves_config_and_stages_as_they_were(tiny_root, tmp_path):
    out = _run(tmp_path, tiny_root, stages="train,sample")
    config = (out / "config.yaml").read_text()
    records = _records(out)
    proc = rashomon("sample", str(out), "--hessian", "diagg", root=tiny_root)
    assert_one_line_error(proc, r"source 'laplace': option 'hessian'.*diag.*kron")
    assert (out / "config.yaml").read_text() == config and _records(out) == records
    # a typo'd dataset in a new run directory leaves nothing that refuses the fixed command
    fresh = tmp_path / "fresh"
    proc = rashomon("run", "--dataset", "breastmnistt", "--out", str(fresh), root=tiny_root)
    assert_one_line_error(proc, r"unknown dataset 'breastmnistt'")
    assert not (fresh / "config.yaml").exists()
    proc = rashomon("run", *BASE, "--stages", "train", "--out", str(fresh), root=tiny_root)
    assert proc.returncode == 0, proc.stderr


def test_prior_given_as_a_number_on_the_command_line(tiny_root, tmp_path):
    out = _run(tmp_path, tiny_root, "--prior", "10", stages="train,sample")
    summary = json.loads((out / "sample" / "summary.json").read_text())
    assert summary["options"]["prior"] == 10.0 and summary["prior_precision"] == 10.0


def test_data_is_identified_by_content_not_by_where_it_is(tiny_root, tmp_path):
    out = _run(tmp_path, tiny_root, stages="train,sample")
    ids = {k: v["id"] for k, v in _records(out).items()}
    # The same file given by --data-root instead of $RASHOMON_DATA, from another folder: the
    # same data, nothing redone.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_root, copy)
    args = (*BASE, "--stages", "train,sample", "--out", str(out), "--data-root", str(copy))
    proc = rashomon("run", *args, root=tmp_path / "nowhere")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("up to date") >= 2
    assert {k: v["id"] for k, v in _records(out).items()} == ids
    # The file edited in place: every stage is redone.
    npz = copy / "breastmnist.npz"
    with np.load(npz) as src:
        arrays = {k: src[k] for k in src.files}
    arrays["train_labels"] = 1 - arrays["train_labels"]
    np.savez_compressed(npz, **arrays)
    proc = rashomon("run", *args, root=tmp_path / "nowhere")
    assert proc.returncode == 0, proc.stderr
    redone = _records(out)
    assert redone["train"]["id"] != ids["train"] and redone["sample"]["id"] != ids["sample"]
    # A stage command on stale data names what to redo.
    arrays["train_labels"] = 1 - arrays["train_labels"]
    np.savez_compressed(npz, **arrays)
    proc = rashomon("sample", str(out), root=tmp_path / "nowhere")  # config.yaml has the root
    assert_one_line_error(proc, r"reads stage 'train', which ran on other data.*rashomon train")


def test_a_second_process_on_one_run_directory_is_refused(tiny_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("process 4242 (rashomon run)")
        held.flush()
        proc = rashomon("run", *BASE, "--stages", "train", "--out", str(out), root=tiny_root)
        assert_one_line_error(proc, r"is in use by process 4242 \(rashomon run\); wait")
        # A refused contender once truncated the holder's record: a third saw no pid. And a
        # stage command has no --out to advise.
        (out / "config.yaml").write_text("data: {dataset: breastmnist}\n")
        proc = rashomon("report", str(out), root=tiny_root)
        assert_one_line_error(proc, r"is in use by process 4242 \(rashomon run\); wait")
        assert "--out" not in proc.stderr
        assert (out / ".lock").read_text() == "process 4242 (rashomon run)"
        (out / "config.yaml").unlink()
    assert not (out / "train").exists()
    # the lock is gone with its holder
    proc = rashomon("run", *BASE, "--stages", "train", "--out", str(out), root=tiny_root)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 1
