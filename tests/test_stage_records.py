"""A stage record names what the stage read and the files it wrote: a stage whose files were
deleted, truncated or overwritten is redone or refused, `--force` rebuilds from the inputs, the
report marks a validate stage of another set as stale, stage commands print the summary only
while the report is current, and patient attributes are inputs of evaluate onwards only. Each
test reproduces a case of issue #21 on one small real run (built once, copied per test)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_run import VALIDATE_FIGURES, _write_validate
from typer.testing import CliRunner

from rashomon.cli import app
from rashomon.config import load_config
from rashomon.fingerprint import file_sha256
from rashomon.run import data_identity, make_record, run_pipeline, stage_status

FAST = {
    "data.dataset": "breastmnist",
    "train.arch": "mlp",
    "train.epochs": 1,
    "sample.models": 40,
    "sample.epsilon": 0.5,
    "evaluate.corruptions": [],
    "evaluate.attacks": [],
    "evaluate.bootstrap": 20,
    "decide.constrained_baseline": False,
    "decide.lsi": False,
    "decide.ensemble_sizes": [1, 3],
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_root) -> Path:
    """A run of every default stage on 200 BreastMNIST images (an MLP trained one epoch, 40
    Laplace samples), built in this process once for the module."""
    out = tmp_path_factory.mktemp("records") / "run"
    cfg = load_config(None, {**FAST, "data.root": str(tiny_root)})
    run_pipeline(out, cfg, progress=False)
    return out


@pytest.fixture()
def run(finished_run, tmp_path) -> Path:
    """A copy of the finished run for one test to change."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def cli(root: Path, *args: str):
    return CliRunner().invoke(app, list(args), env={"RASHOMON_DATA": str(root), "COLUMNS": "200"})


def assert_one_line_error(result, pattern: str) -> None:
    import re

    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def shown(text: str, result) -> bool:
    """Whether `text` is in the command's output, however the console wrapped it."""
    return " ".join(text.split()) in " ".join(result.stdout.split())


def records(run: Path) -> dict:
    return json.loads((run / "stages.json").read_text())


def config(run: Path, overrides: dict | None = None):
    return load_config(run / "config.yaml", overrides)


# --------------------------------------------------------------------------- issue #21, item 4


def test_force_rebuilds_the_set_and_a_broken_one_is_rebuilt(run, tiny_root):
    probs = run / "sample" / "probs_test.npy"
    built = np.load(probs)
    np.save(probs, np.full_like(built, 0.5))  # same size, other content
    result = cli(tiny_root, "sample", str(run), "--force", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "reused" not in result.stdout  # rebuilt from the MAP model, not copied back
    rebuilt = np.load(probs)
    assert not np.allclose(rebuilt, 0.5)
    np.testing.assert_allclose(rebuilt, built, atol=1e-5)  # the same seed draws the same set
    # A truncated prediction file: the stage is not current, and `run` rebuilds it (before,
    # the stage stayed "up to date" and `sample --force` failed with numpy's ValueError).
    val = run / "sample" / "probs_val.npy"
    val.write_bytes(val.read_bytes()[:200])
    ok, why = stage_status(run, config(run), "sample")
    assert not ok and why == "has a file changed since it wrote it (sample/probs_val.npy)"
    result = cli(tiny_root, "run", "--out", str(run), "--stages", "train,sample", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "reused" not in result.stdout
    assert np.load(val).shape == (40, 40, 2)
    assert stage_status(run, config(run), "sample") == (True, "up to date")


# --------------------------------------------------------------------------- issue #21, item 16


def test_a_record_lists_its_files_and_broken_ones_are_refused(finished_run, run, tiny_root):
    listed = records(run)["sample"]["files"]
    probs = run / "sample" / "probs_test.npy"
    assert listed["probs_test.npy"] == {"size": probs.stat().st_size, "sha256": file_sha256(probs)}
    assert set(listed) == {p.name for p in (run / "sample").iterdir()}
    assert {"report.html", "summary.txt"} <= set(records(run)["report"]["files"])
    # A deleted prediction file: the stage is out of date, and a stage reading it names the fix
    # (before: "up to date", then FileNotFoundError from `evaluate --force`).
    probs.unlink()
    assert stage_status(run, config(run), "sample") == (
        False,
        "lost its file sample/probs_test.npy",
    )
    result = cli(tiny_root, "evaluate", str(run), "--force", "--no-progress")
    assert_one_line_error(
        result,
        r"reads stage 'sample', which lost its file sample/probs_test\.npy; run `rashomon sample",
    )
    shutil.copy2(finished_run / "sample" / "probs_test.npy", probs)  # the same file again
    assert stage_status(run, config(run), "sample") == (True, "up to date")
    # A truncated table of evaluate: the report is refused, naming the stage to redo (before: a
    # report with exit 0 and "cannot convert float NaN to integer" in a section).
    table = run / "evaluate" / "per_sample.csv"
    table.write_text(table.read_text()[:150])
    result = cli(tiny_root, "report", str(run), "--no-progress")
    assert_one_line_error(
        result,
        r"reads stage 'evaluate', which has a file changed.*per_sample\.csv.*rashomon evaluate",
    )
    # A truncated stages.json: one line naming the file and the fix (before: JSONDecodeError).
    stages = run / "stages.json"
    stages.write_text(stages.read_text()[:100])
    result = cli(tiny_root, "report", str(run), "--no-progress")
    assert_one_line_error(result, r"stages\.json is unreadable.*delete it and run `rashomon run")


# --------------------------------------------------------------------------- issue #21, item 6


def test_a_stage_command_prints_the_summary_only_while_the_report_is_current(run, tiny_root):
    headline = (run / "report" / "summary.txt").read_text().splitlines()[0]
    result = cli(tiny_root, "report", str(run), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.stdout and shown(headline, result)
    # Another ε: the summary on disk describes the set at the old ε (before, it was printed).
    result = cli(tiny_root, "sample", str(run), "--epsilon", "1.0", "--no-progress")
    assert result.exit_code == 0, result.output
    assert not shown(headline, result)
    assert shown("The report is out of date (it ran with another config)", result)
    assert shown(f"`rashomon run --out {run}` redoes the stages that need it", result)


# --------------------------------------------------------------------------- issue #21, item 5


def add_validate(run: Path, epsilon: float) -> None:
    """A validate stage of the run's current set (hand-chosen figures at `epsilon`) with its
    record, as `rashomon validate` would leave it."""
    shutil.rmtree(run / "validate", ignore_errors=True)
    _write_validate(run / "validate", {**VALIDATE_FIGURES, "epsilon": epsilon})
    cfg = config(run)
    recs = records(run)
    recs["validate"] = make_record(cfg, "validate", recs, data_identity(cfg, run), run)
    (run / "stages.json").write_text(json.dumps(recs, indent=2))


def validity_section(run: Path) -> str:
    html = (run / "report" / "report.html").read_text()
    body = html[html.index('<section id="validity"') :]
    return body[: body.index("</section>")]


def test_the_report_marks_a_validate_stage_of_another_set_stale(run, tiny_root):
    add_validate(run, 0.5)
    # validate is an input of the report: the report made before it is out of date
    ok, why = stage_status(run, config(run), "report")
    assert not ok and "stage 'validate'" in why
    result = cli(tiny_root, "run", "--out", str(run), "--epsilon", "1.0", "--no-progress")
    assert result.exit_code == 0, result.output
    section = validity_section(run)
    assert "Out of date." in section
    assert "ran at ε = 0.5 while the set is now filtered at ε = 1" in section
    assert f"rashomon validate {run}" in section
    assert "0.60 ± 0.08" not in section  # before: the ε = 0.5 figures, unmarked
    summary = (run / "report" / "summary.txt").read_text()
    assert "The validate stage's figures are out of date" in summary
    assert "of the ceiling" not in summary  # the stale flag recall is not quoted
    assert shown(summary.splitlines()[0], result)  # the report is current: its summary shown
    # validate redone on the current set: the report is redone and shows its figures
    add_validate(run, 1.0)
    ok, why = stage_status(run, config(run), "report")
    assert (ok, why) == (
        False,
        "read another run of stage 'validate' than the one the run now holds",
    )
    result = cli(tiny_root, "report", str(run), "--no-progress")
    assert result.exit_code == 0, result.output
    section = validity_section(run)
    assert "Out of date." not in section and "0.60 ± 0.08" in section


# --------------------------------------------------------------------------- issue #21, item 21


def attributes_csv(path: Path, flip: int | None = None) -> Path:
    """A `sex` attribute for the 120/40/40 images of the tiny BreastMNIST (alternating F/M),
    with row `flip` changed."""
    rows = [(s, i) for s, n in (("train", 120), ("val", 40), ("test", 40)) for i in range(n)]
    frame = pd.DataFrame(rows, columns=["split", "index"])
    frame["sex"] = np.where(np.arange(len(frame)) % 2 == 0, "F", "M")
    if flip is not None:
        frame.loc[flip, "sex"] = "M" if frame.loc[flip, "sex"] == "F" else "F"
    frame.to_csv(path, index=False)
    return path


def test_attributes_are_an_input_of_evaluate_onwards_only(run, tiny_root, tmp_path):
    before = {k: v["id"] for k, v in records(run).items()}
    csv = attributes_csv(tmp_path / "sex.csv")
    result = cli(
        tiny_root,
        *("run", "--out", str(run), "--attributes", str(csv), "--stages", "train,sample"),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("up to date, skipped") == 2  # before: retrained and resampled
    assert {k: records(run)[k]["id"] for k in ("train", "sample")} == {
        k: before[k] for k in ("train", "sample")
    }
    cfg = config(run, {"data.attributes_csv": str(csv)})
    assert not stage_status(run, cfg, "evaluate")[0]  # evaluate reads attributes: redone
    # One patient's sex edited: train and sample stay current, evaluate does not
    full = data_identity(cfg, run)
    attributes_csv(csv, flip=130)
    edited = data_identity(cfg, run)
    assert edited.task == full.task and edited.full != full.full
    assert stage_status(run, cfg, "train", edited) == (True, "up to date")
    assert stage_status(run, cfg, "sample", edited) == (True, "up to date")


def test_a_label_csv_attribute_column_is_not_an_input_of_training(tmp_path):
    """A folder task's label CSV: editing its `sex` column changes the data that evaluate
    reads, not what train and sample read; editing a label changes both."""
    from PIL import Image

    folder = tmp_path / "task"
    folder.mkdir()
    rows = []
    for i in range(6):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
        rows.append((f"{i}.png", i % 2, ("train", "val", "test")[i // 2], "FM"[i % 2]))
    labels = pd.DataFrame(rows, columns=["path", "label", "split", "sex"])
    labels.to_csv(folder / "labels.csv", index=False)
    cfg = load_config(None, {"data.dataset": str(folder)})
    first = data_identity(cfg)
    labels.loc[0, "sex"] = "M"
    labels.to_csv(folder / "labels.csv", index=False)
    sex_edited = data_identity(cfg)
    assert sex_edited.task == first.task and sex_edited.full != first.full
    labels.loc[0, "label"] = 1
    labels.to_csv(folder / "labels.csv", index=False)
    assert data_identity(cfg).task != first.task
