"""Sweeps: grid expansion, cell names, budgets (pure), and a real 4-cell sweep under local Ray with
one cell failing on purpose; re-running launches no task for the finished cells."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rashomon.errors import RashomonError
from rashomon.sweep import (
    CELL_LOG,
    CELLS_DIR,
    Resources,
    SweepSpec,
    axis_study,
    cell_is_finished,
    cell_memory_budget,
    cell_name,
    concurrent_slots,
    expand_grid,
    headline_table,
    load_sweep,
    one_line,
    run_sweep,
)

# --------------------------------------------------------------------------- pure parts


def test_expand_grid_products_and_bundles():
    spec = SweepSpec(
        grid={
            "train.width": [0.5, 1.0],
            "seed": [0, 1, 2],
            "set": [
                {"label": "ll", "sample.subset": "last_layer"},
                {"sample.subset": "all", "sample.hessian": "diag"},
            ],
        }
    )
    cells = expand_grid(spec, {"train": {"arch": "cnn", "epochs": 3}})
    assert len(cells) == 2 * 3 * 2
    names = [c.name for c in cells]
    assert len(set(names)) == 12
    assert names[0] == "width-0.5_seed-0_set-ll"
    assert names[-1] == "width-1_seed-2_set-all-diag"  # 1.0 written as 1; label from values
    last = cells[-1].cfg
    opts = last.sample.resolved_options  # sample.subset/hessian are the source's options
    assert (last.train.width, last.seed, opts.subset, opts.hessian) == (
        1.0,
        2,
        "all",
        "diag",
    )
    assert last.train.arch == "cnn" and last.train.epochs == 3  # from the base
    assert last.name == "width-1_seed-2_set-all-diag"


def test_cell_name_disambiguates_and_sanitises():
    assert cell_name({"train.dropout": 0.1, "sample.dropout": 0.2}) == (
        "train-dropout-0.1_sample-dropout-0.2"
    )
    assert cell_name({"data.dataset": "/data/my images/chest"}) == "dataset-chest"
    assert cell_name({}) == "base"


def test_invalid_cell_config_fails_alone():
    spec = SweepSpec(grid={"train.epochs": [1, 0]})  # epochs 0 is refused by the config
    ok, bad = expand_grid(spec, {})
    assert ok.cfg is not None and ok.error == ""
    assert bad.cfg is None and "epochs" in bad.error


def test_grid_axis_must_be_a_key():
    with pytest.raises(RashomonError, match="not a config key"):
        expand_grid(SweepSpec(grid={"width": [1, 2]}), {})


def test_load_sweep_checks_stages_and_base(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"base": {"train": {"epochs": 1}}, "stages": ["trian"]}))
    with pytest.raises(RashomonError, match="unknown stage"):
        load_sweep(f)
    f.write_text(yaml.safe_dump({"base": {"trian": {"epochs": 1}}}))
    with pytest.raises(RashomonError, match="trian"):
        load_sweep(f)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    f.write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"seed": [0, 1]}}))
    _, base = load_sweep(f)
    assert base == {"train": {"epochs": 2}}


def test_slots_and_memory_budget():
    cluster = {"CPU": 8.0, "GPU": 2.0, "memory": 16e9}
    assert concurrent_slots(Resources(num_cpus=2), cluster) == 4
    assert concurrent_slots(Resources(num_cpus=1, num_gpus=0.5), cluster) == 4
    assert concurrent_slots(Resources(num_cpus=1, num_gpus=1), cluster) == 2
    with pytest.raises(RashomonError, match="cluster has"):
        concurrent_slots(Resources(num_cpus=16), cluster)
    # the sweep's budget split over the cells that run at once, in whole MB
    assert cell_memory_budget(SweepSpec(max_memory="8GB"), 4, cluster) == "2000MB"
    # default: the sample stage's 25 % share of the cluster's memory, split likewise
    assert cell_memory_budget(SweepSpec(), 4, cluster) == "1000MB"
    assert cell_memory_budget(SweepSpec(resources=Resources(num_gpus=1)), 2, cluster) is None


def test_one_line():
    assert one_line(RashomonError("bad arch; use cnn")) == "bad arch; use cnn"
    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
    assert len(one_line(ValueError("x" * 1000))) == 300


def test_headline_and_axis_study():
    tidy = pd.DataFrame(
        [
            {
                "cell": c,
                "train.width": w,
                "stage": "evaluate",
                "metric": "ambiguity",
                "group": "all",
                "stat": "value",
                "value": v,
            }
            for c, w, v in (("a", 0.5, 0.2), ("b", 0.5, 0.4), ("c", 2.0, 0.1))
        ]
        + [
            {
                "cell": "a",
                "train.width": 0.5,
                "stage": "evaluate",
                "metric": "ambiguity",
                "group": "random=0",
                "stat": "value",
                "value": 9.0,
            }
        ]
    )
    head = headline_table(tidy, ["cell", "train.width"])
    assert head.set_index("cell")["ambiguity"].to_dict() == {"a": 0.2, "b": 0.4, "c": 0.1}
    study = axis_study(head, "train.width")
    assert study["mean"].round(6).tolist() == [0.3, 0.1]
    assert study["n"].tolist() == [2, 1]


def test_sweep_page_renders_in_headless_chromium(tmp_path):
    """The page of a hand-made 2 × 2 sweep (width × seed, one cell failed): status, headline
    table and the study against the width, in a real browser."""
    from browser import BrowserError, inspect_self_contained

    from rashomon.sweep import write_sweep_report

    cells = [(0.5, 0, 0.30), (0.5, 1, 0.20), (2.0, 0, 0.10), (2.0, 1, None)]
    status = pd.DataFrame(
        [
            {
                "cell": f"width-{w:g}_seed-{s}",
                "train.width": w,
                "seed": s,
                "run_dir": str(tmp_path / "cells" / f"width-{w:g}_seed-{s}"),
                "status": "failed" if amb is None else "done",
                "error": "RuntimeError: <out of memory>" if amb is None else "",
                "seconds": 12.0,
                "peak_rss_mb": 900.0,
            }
            for w, s, amb in cells
        ]
    )
    tidy = pd.DataFrame(
        [
            {
                "cell": f"width-{w:g}_seed-{s}",
                "train.width": w,
                "seed": s,
                "stage": "evaluate",
                "metric": metric,
                "group": "all",
                "stat": "value",
                "value": value,
            }
            for w, s, amb in cells
            if amb is not None
            for metric, value in (("ambiguity", amb), ("test_accuracy", 0.8 + w / 10))
        ]
    )
    path = write_sweep_report(tmp_path, status, tidy, axes=["train.width", "seed"])
    assert path == tmp_path / "sweep.html"
    try:
        page = inspect_self_contained(path)
    except BrowserError as exc:
        pytest.fail(f"Chromium could not render the sweep page: {exc}")
    assert page.title == f"rashomon sweep: {tmp_path.name}"
    ids = [s["id"] for s in page.sections]
    assert ids == ["cells", "headline", "axis-0", "axis-1"]  # width and seed are numeric
    assert page.sections[2]["title"] == "Against train.width"
    assert len(page.images) == 2 and page.tables == 4
    cells_text = page.sections[0]["text"]
    assert "done: 3, failed: 1 (of 4 cells)" in cells_text
    assert "1 of 4 cells failed" in cells_text
    assert "RuntimeError: <out of memory>" in cells_text  # escaped, shown as text
    # the study: mean ambiguity 0.25 at width 0.5 (two seeds), 0.1 at width 2 (one)
    study = page.sections[2]["text"]
    assert "0.2500" in study and "0.1000" in study


# --------------------------------------------------------------------------- real Ray


@pytest.fixture(scope="session")
def ray_local():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from rashomon.sweep import start_ray

    started = start_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


def _sweep_file(tmp_path: Path, root: Path) -> Path:
    sweep = {
        "name": "tiny",
        "base": {
            "data": {"dataset": "breastmnist", "root": str(root)},
            "train": {"epochs": 1, "batch_size": 64, "patience": 1},
        },
        "grid": {"train.arch": ["cnn-small", "mlp", "no-such-arch", "cnn"], "seed": [0]},
        "stages": ["train"],
        "resources": {"num_cpus": 1},
        "max_memory": "1GB",
        "reuse_workers": True,  # the import start-up once per worker keeps this test short
    }
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return f


@pytest.mark.slow
def test_sweep_runs_cells_reports_failure_and_skips_on_rerun(tmp_path, tiny_root, ray_local):
    sweep_yaml = _sweep_file(tmp_path, tiny_root)
    out = tmp_path / "out"
    status = run_sweep(sweep_yaml, out, progress=False).set_index("cell")

    bad = "arch-no-such-arch_seed-0"
    good = ["arch-cnn-small_seed-0", "arch-mlp_seed-0", "arch-cnn_seed-0"]
    assert status.loc[good, "status"].tolist() == ["done"] * 3, status["error"].to_dict()
    assert status.loc[bad, "status"] == "failed"
    assert "no-such-arch" in status.loc[bad, "error"] and "\n" not in status.loc[bad, "error"]
    assert (out / CELLS_DIR / bad / "error.txt").exists()
    for name in good:  # ordinary run directories with the sweep's per-cell memory budget
        run_dir = out / CELLS_DIR / name
        assert json.loads((run_dir / "stages.json").read_text()).keys() == {"train"}
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["sample"]["max_memory"] == "500MB"  # 1GB over the 2 cells running at once

    # the tidy table holds each finished cell's train summary, keyed by its grid values
    tidy = pd.read_csv(out / "sweep.csv")
    assert set(tidy["cell"]) == set(good)
    for name in good:
        summary = json.loads((out / CELLS_DIR / name / "train" / "summary.json").read_text())
        row = tidy[(tidy["cell"] == name) & (tidy["metric"] == "test_accuracy")]
        assert row["value"].item() == pytest.approx(summary["test_accuracy"])
        assert row["train.arch"].item() == name.split("_")[0].removeprefix("arch-")
    page = (out / "sweep.html").read_text()
    assert "no-such-arch" in page and "test_accuracy" in page

    # re-run: the finished cells are skipped without a task (their logs gain no new start line);
    # the failed cell is tried again and fails again
    again = run_sweep(sweep_yaml, out, progress=False).set_index("cell")
    assert again.loc[good, "status"].tolist() == ["skipped"] * 3, again["error"].to_dict()
    assert again.loc[bad, "status"] == "failed"
    for name in good:
        log = (out / CELLS_DIR / name / CELL_LOG).read_text()
        assert log.count("sweep cell started") == 1
    assert (out / CELLS_DIR / bad / CELL_LOG).read_text().count("sweep cell started") == 2

    # a cell finished under another memory budget is still finished
    spec, base = load_sweep(sweep_yaml)
    cell = next(c for c in expand_grid(spec, base) if c.name == good[0])
    other = cell.cfg.model_copy(
        update={"sample": cell.cfg.sample.model_copy(update={"max_memory": "3GB"})}
    )
    assert cell_is_finished(out / CELLS_DIR / good[0], other, ("train",))
    changed = cell.cfg.model_copy(update={"train": cell.cfg.train.model_copy(update={"epochs": 2})})
    assert not cell_is_finished(out / CELLS_DIR / good[0], changed, ("train",))


def test_memory_budget_is_not_part_of_a_stage_identity():
    from rashomon.config import load_config

    small = load_config(None, {"sample.max_memory": "300MB"})
    large = load_config(None, {"sample.max_memory": "8GB"})
    other = load_config(None, {"sample.models": 999, "sample.max_memory": "300MB"})
    assert small.section_hash("train", "sample") == large.section_hash("train", "sample")
    assert small.section_hash("train", "sample") != other.section_hash("train", "sample")


def test_a_cell_run_elsewhere_is_refused(tmp_path):
    import fcntl

    from rashomon.config import load_config
    from rashomon.sweep import CELL_LOCK, run_cell

    tmp_path.joinpath(CELL_LOCK).touch()
    with open(tmp_path / CELL_LOCK) as held:  # another process runs this cell
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        cfg = load_config(None, {}).model_dump(mode="json")
        result = run_cell(str(tmp_path), cfg, ["train"], False, 1)
    assert result["status"] == "failed" and "another process" in result["error"]
    assert not (tmp_path / "stages.json").exists()


@pytest.mark.slow
def test_cells_sharing_a_map_model_train_it_once(tmp_path, tiny_root, ray_local):
    sweep = {
        "name": "shared-map",
        "base": {
            "data": {"dataset": "breastmnist", "root": str(tiny_root)},
            "train": {"epochs": 1, "batch_size": 64, "patience": 1},
            "sample": {"epsilon": 0.5, "epsilons": [0.5]},
        },
        "grid": {"sample.models": [3, 5], "seed": [0]},
        "stages": ["train", "sample"],
        "resources": {"num_cpus": 1},
        "reuse_workers": True,
    }
    sweep_yaml = tmp_path / "sweep.yaml"
    sweep_yaml.write_text(yaml.safe_dump(sweep, sort_keys=False))
    out = tmp_path / "out"
    status = run_sweep(sweep_yaml, out, progress=False).set_index("cell")
    assert (status["status"] == "done").all(), status["error"].to_dict()

    dirs = [out / CELLS_DIR / name for name in status.index]
    trained_here = ["▶ train" in (d / CELL_LOG).read_text() for d in dirs]
    assert sorted(trained_here) == [False, True]  # one cell trained the MAP model, once
    copied = [json.loads((d / "stages.json").read_text())["train"] for d in dirs]
    assert sum("copied_from" in rec for rec in copied) == 1
    checkpoints = [sorted(p.name for p in (d / "train").iterdir()) for d in dirs]
    assert checkpoints[0] == checkpoints[1]
    for name in checkpoints[0]:
        assert (dirs[0] / "train" / name).read_bytes() == (dirs[1] / "train" / name).read_bytes()
    models = sorted(json.loads((d / "sample" / "summary.json").read_text())["models"] for d in dirs)
    assert models == [3, 5]

    # adding a cell later reuses the finished MAP model instead of training a third time
    sweep["grid"]["sample.models"] = [3, 5, 4]
    sweep_yaml.write_text(yaml.safe_dump(sweep, sort_keys=False))
    again = run_sweep(sweep_yaml, out, progress=False).set_index("cell")
    new = [n for n in again.index if again.loc[n, "status"] == "done"]
    assert again["status"].value_counts().to_dict() == {"skipped": 2, "done": 1}
    assert "▶ train" not in (out / CELLS_DIR / new[0] / CELL_LOG).read_text()
