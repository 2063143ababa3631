"""The command line: staged runs, resuming, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml


def rashomon(
    *args: str, root: Path, timeout: int = 300, env_extra: dict | None = None, **kw
) -> subprocess.CompletedProcess:
    env = {**os.environ, "RASHOMON_DATA": str(root), "COLUMNS": "200", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "rashomon.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        **kw,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    import re

    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


TRAIN_ARGS = (
    "--dataset",
    "breastmnist",
    "--arch",
    "mlp",
    "--epochs",
    "1",
    "--stages",
    "train",
    "--no-progress",
)


def test_run_writes_run_dir_and_resumes(tiny_root, tmp_path):
    out = tmp_path / "run"
    first = rashomon("run", *TRAIN_ARGS, "--out", str(out), root=tiny_root)
    assert first.returncode == 0, first.stderr
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["dataset"] == "breastmnist" and cfg["train"]["epochs"] == 1
    env = json.loads((out / "environment.json").read_text())
    assert env["seed"] == 0 and env["packages"]["torch"].startswith("2.")
    summary = json.loads((out / "train" / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["epochs_run"] == 1
    stamp = (out / "train" / "model.pt").stat().st_mtime_ns
    second = rashomon("run", *TRAIN_ARGS, "--out", str(out), root=tiny_root)
    assert second.returncode == 0 and "up to date" in second.stdout
    assert (out / "train" / "model.pt").stat().st_mtime_ns == stamp
    forced = rashomon("run", *TRAIN_ARGS, "--out", str(out), "--force", root=tiny_root)
    assert forced.returncode == 0
    assert (out / "train" / "model.pt").stat().st_mtime_ns != stamp
    # a changed training option invalidates the stage
    changed = rashomon(
        "run",
        *TRAIN_ARGS[:-3],
        "--lr",
        "0.01",
        "--stages",
        "train",
        "--out",
        str(out),
        root=tiny_root,
    )
    assert changed.returncode == 0 and "up to date" not in changed.stdout


def test_config_file_and_flag_override(tiny_root, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {dataset: breastmnist}\ntrain: {arch: mlp, epochs: 3}\nseed: 5\n")
    out = tmp_path / "run"
    proc = rashomon(
        "run",
        str(cfg),
        "--epochs",
        "1",
        "--stages",
        "train",
        "--out",
        str(out),
        "--no-progress",
        root=tiny_root,
    )
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["seed"] == 5 and saved["train"]["epochs"] == 1 and saved["train"]["arch"] == "mlp"


def test_unknown_dataset(tiny_root, tmp_path):
    proc = rashomon("run", "--dataset", "nomnist", "--out", str(tmp_path / "r"), root=tiny_root)
    assert_one_line_error(proc, r"unknown dataset 'nomnist'; choose one of: .*breastmnist")
    assert proc.returncode == 2


def test_unknown_architecture(tiny_root, tmp_path):
    proc = rashomon(
        "run",
        "--dataset",
        "breastmnist",
        "--arch",
        "vgg",
        "--stages",
        "train",
        "--out",
        str(tmp_path / "r"),
        root=tiny_root,
    )
    assert_one_line_error(proc, r"unknown architecture 'vgg'; choose one of: cnn, cnn-small")


def test_debug_shows_traceback(tiny_root, tmp_path):
    proc = rashomon(
        "--debug", "run", "--dataset", "nomnist", "--out", str(tmp_path / "r"), root=tiny_root
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_missing_npz_offline(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env_root = empty
    proc = rashomon(
        "run",
        "--dataset",
        "breastmnist",
        "--stages",
        "train",
        "--out",
        str(tmp_path / "r"),
        root=env_root,
        timeout=120,
    )
    assert_one_line_error(proc, r"breastmnist\.npz")


def test_bad_config_field(tiny_root, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {epochs: 0}\n")
    proc = rashomon("run", str(cfg), "--out", str(tmp_path / "r"), root=tiny_root)
    assert_one_line_error(proc, r"config field 'train.epochs'.*at least 1")
    cfg.write_text("train: {epoch: 3}\n")
    proc = rashomon("run", str(cfg), "--out", str(tmp_path / "r"), root=tiny_root)
    assert_one_line_error(proc, r"config field 'train.epoch': Extra inputs")


def test_unwritable_out_dir(tiny_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    proc = rashomon("run", *TRAIN_ARGS, "--out", str(blocker / "r"), root=tiny_root)
    assert_one_line_error(proc, r"cannot write to .*choose another run directory")


def test_existing_run_dir_with_other_config(tiny_root, tmp_path):
    out = tmp_path / "run"
    assert rashomon("run", *TRAIN_ARGS, "--out", str(out), root=tiny_root).returncode == 0
    before = (out / "config.yaml").read_text()
    proc = rashomon("run", *TRAIN_ARGS, "--seed", "9", "--out", str(out), root=tiny_root)
    assert_one_line_error(
        proc, r"holds a run of another seed \(0; this command: 9\); give a new run directory"
    )
    assert (out / "config.yaml").read_text() == before
    assert (out / "train" / "model.pt").exists()


def test_stage_commands_refuse_a_folder_that_is_not_a_run(tiny_root, tmp_path):
    """`report /nonexistent` and `train DATA_FOLDER` once created run files there; a run whose
    config.yaml is gone once advised `rashomon train RUN`, a default training replacing the
    finished model."""
    missing = tmp_path / "nonexistent"
    proc = rashomon("report", str(missing), root=tiny_root)
    assert_one_line_error(proc, r"is not a run directory \(it does not exist\); start the run")
    assert not missing.exists()
    proc = rashomon("sample", str(missing), "--no-progress", root=tiny_root)
    assert_one_line_error(proc, r"not a run directory.*rashomon run --out")
    assert not missing.exists()
    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.csv").write_text("path,label,split\n")
    proc = rashomon("train", str(data), "--dataset", "breastmnist", root=tiny_root)
    assert_one_line_error(proc, r"is not a run directory \(no config.yaml; it holds 'labels.csv'")
    assert sorted(p.name for p in data.iterdir()) == ["labels.csv"]
    finished = tmp_path / "finished"
    (finished / "train").mkdir(parents=True)
    (finished / "stages.json").write_text("{}")
    for cmd in ("train", "sample", "report"):
        proc = rashomon(cmd, str(finished), root=tiny_root)
        assert_one_line_error(proc, r"holds finished stages but no config.yaml; restore it")
        assert "rashomon train" not in proc.stderr
    assert sorted(p.name for p in finished.iterdir()) == ["stages.json", "train"]


def test_refused_runs_leave_nothing_behind(tiny_root, tmp_path):
    out = tmp_path / "runs" / "r"
    for flags, pattern in (
        (("--size", "30"), r"size 30 is not a MedMNIST size"),
        (("--labels", "x.csv"), r"labels='x.csv' applies to folder tasks"),
    ):
        proc = rashomon("run", *TRAIN_ARGS, *flags, "--out", str(out), root=tiny_root)
        assert_one_line_error(proc, pattern)
        assert not (tmp_path / "runs").exists()
    proc = rashomon("run", *TRAIN_ARGS[:-3], "--stages", "", "--out", str(out), root=tiny_root)
    assert_one_line_error(proc, r"--stages '' names none; choose from train, sample, evaluate")
    proc = rashomon("run", *TRAIN_ARGS, "-o", "prior=[1,2", "--out", str(out), root=tiny_root)
    assert_one_line_error(proc, r"--option 'prior=\[1,2': the value is not valid YAML \(expected")
    assert not (tmp_path / "runs").exists()


def test_a_full_disk_is_one_line_naming_the_file(tiny_root, tmp_path, monkeypatch):
    """ENOSPC once surfaced as a bare 'OSError: [Errno 28]', exit 1, no path."""
    import errno

    import pytest
    import torch
    from typer.testing import CliRunner

    from rashomon.cli import app
    from rashomon.errors import RashomonError
    from rashomon.torchio import save_atomic

    def full(payload, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    target = tmp_path / "model.pt"
    with pytest.raises(RashomonError, match=rf"writing {target} failed: no space left.*free space"):
        save_atomic({}, target)
    assert list(tmp_path.iterdir()) == []  # no half-written temporary file
    monkeypatch.setenv("RASHOMON_DATA", str(tiny_root))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", *TRAIN_ARGS, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Errno" not in result.output
    assert (
        f"writing {out / 'train'}" in result.output and "finished stages are kept" in result.output
    )


def test_interrupted_stage_keeps_earlier_and_resumes(tiny_root, tmp_path):
    out = tmp_path / "run"
    args = (
        "--dataset",
        "breastmnist",
        "--arch",
        "mlp",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--stages",
        "train",
        "--no-progress",
    )
    assert rashomon("run", *args, root=tiny_root).returncode == 0
    model = (out / "train" / "model.pt").read_bytes()
    # Interrupt a forced re-train midway: the finished stage must survive untouched. The slow
    # run must outlive the signal: many epochs and no early stop (a 400-step MLP run finished
    # before the signal about one time in three, and the interpreter then died of it, -2).
    env = {**os.environ, "RASHOMON_DATA": str(tiny_root)}
    slow = [a if a != "1" else "100000" for a in args]
    patient = tmp_path / "patient.yaml"
    patient.write_text("train: {patience: 100000}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rashomon.cli", "run", str(patient), *slow, "--force"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A terminal's Ctrl-C: pytest-xdist's workers ignore SIGINT, an ignored signal stays
        # ignored across exec, and Python then installs no KeyboardInterrupt handler at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("train.tmp-*")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Seen once here: a SIGINT right after the stage started went unanswered; a second
            # Ctrl-C, as a user would press, must still end the run cleanly.
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a 100,000-epoch run behind
            proc.kill()
    # 130, or death by SIGINT (-2) when the interrupt lands while the interpreter shuts down
    # after the handler ran: a shell reports both as exit status 130.
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "interrupted" in err and "Traceback" not in err
    assert (out / "train" / "model.pt").read_bytes() == model
    assert not list(out.glob("train.tmp-*"))
    again = rashomon("run", *args, root=tiny_root)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_help_of_every_command(tiny_root):
    top = rashomon("--help", root=tiny_root)
    assert top.returncode == 0
    for cmd in (
        "run",
        "train",
        "sample",
        "evaluate",
        "decide",
        "report",
        "datasets",
        "sweep",
        "compare",
    ):
        assert cmd in top.stdout
        sub = rashomon(cmd, "--help", root=tiny_root)
        assert sub.returncode == 0 and "Usage" in sub.stdout, cmd


def test_datasets_lists_local_files(tiny_root):
    proc = rashomon("datasets", root=tiny_root)
    assert proc.returncode == 0
    line = next(ln for ln in proc.stdout.splitlines() if "breastmnist" in ln)
    assert "yes" in line


def test_arch_and_model_together_are_one_line(tiny_root, tmp_path):
    out = tmp_path / "r"
    proc = rashomon(
        "run", "--dataset", "breastmnist", "--arch", "cnn", "--model", "pkg.nets:build",
        "--out", str(out), root=tiny_root,
    )  # fmt: skip
    assert proc.returncode == 2
    assert_one_line_error(proc, r"--arch and --model both set train.arch; give one of them")
    assert not out.exists()


def test_source_option_flags_are_aliases_of_dash_o():
    """--subset/--hessian/--prior/--kind/--linearized write the source's options, as -o does;
    the source's options model alone checks and converts them."""
    import pytest

    from rashomon.cli import flag_overrides
    from rashomon.config import load_config
    from rashomon.errors import RashomonError

    flags = flag_overrides({"prior": "1e-4", "linearized": None, "hessian": "diag"})
    assert flags == {"sample.options.prior": "1e-4", "sample.options.hessian": "diag"}
    dash_o = flag_overrides({"option": ["prior=1e-4", "hessian=diag"]})
    assert load_config(None, flags).section_hash("sample") == load_config(
        None, dash_o
    ).section_hash("sample")
    assert load_config(None, flags).sample.resolved_options.prior == 1e-4
    with pytest.raises(RashomonError, match="--option and --kind both set sample.options.kind"):
        flag_overrides({"option": ["kind=glm"], "kind": "nn"})
    assert flag_overrides({"option": ["kind=glm"], "kind": "glm"}) == {"sample.options.kind": "glm"}
