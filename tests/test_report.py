"""The HTML report: built from a synthetic run directory (tests/fake_run.py), checked for its
numbers, its behaviour with missing stages, and rendered in a real headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import BrowserError, find_chromium, inspect_page, screenshot_stats
from fake_run import write_fake_run

from rashomon.errors import RashomonError
from rashomon.report import build_report
from rashomon.report.load import load_run

FIGURES = {
    "training_curve",
    "set_survival",
    "set_distance",
    "multiplicity_hist",
    "convergence",
    "multiplicity_groups",
    "desiderata",
    "selection",
    "ensembles",
    "lsi",
    "lsi_top_images",
    "patients",
    "robustness_corruptions",
    "robustness_attacks",
}


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory, task_pneumonia, data_root) -> Path:
    run = tmp_path_factory.mktemp("fake") / "run"
    return write_fake_run(run, task_pneumonia, data_root=str(data_root))


@pytest.fixture(scope="module")
def report(fake_run, task_pneumonia) -> Path:
    return build_report(fake_run, fake_run / "report", task=task_pneumonia)


def _minimal_run(
    root: Path, per_sample: pd.DataFrame, extra: dict[str, pd.DataFrame] | None = None
) -> Path:
    """Only what the required stages must hold; no config, no checkpoint, no decide stage."""
    for stage in ("train", "sample", "evaluate"):
        (root / stage).mkdir(parents=True)
    (root / "train" / "summary.json").write_text('{"test_accuracy": 0.8, "test_auroc": 0.9}')
    (root / "sample" / "summary.json").write_text(
        '{"source": "laplace", "models": 50, "models_in_set": 40, "epsilon": 0.01, "on": "loss"}'
    )
    per_sample.to_csv(root / "evaluate" / "per_sample.csv", index=False)
    for name, df in (extra or {}).items():
        stage, file = name.split("/")
        (root / stage).mkdir(exist_ok=True)
        df.to_csv(root / stage / file, index=False)
    return root


def test_summary_numbers_come_from_per_sample(tmp_path):
    # 10 patients: 3 flipped by some model; disagreement >= 0.64 for 2 of them (4·0.2·0.8).
    ps = pd.DataFrame(
        {
            "index": range(10),
            "label": [0, 1] * 5,
            "map_pred": [0, 1] * 5,
            "disagreement": [0, 0, 0.64, 1.0, 0.1, 0, 0, 0, 0, 0],
            "capacity": [1, 1, 1.2, 1.9, 1.01, 1, 1, 1, 1, 1],
            "vpr_min": [0.1] * 10,
            "vpr_max": [0.2, 0.3, 0.7, 0.9, 0.45, 0.2, 0.3, 0.2, 0.1, 0.2],
            "flips": [0, 0, 8, 20, 1, 0, 0, 0, 0, 0],
            "sex": [0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
        }
    )
    run = _minimal_run(tmp_path / "run", ps)
    page = build_report(run, tmp_path / "out", load_images=False)
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert lines[0] == (
        "30 % of test patients (3 of 10) would receive a different diagnosis from at least one "
        "equally good model (validation loss within ε = 0.01 of the trained model's; 40 of 50 "
        "sampled models)."
    )
    assert lines[1].startswith("For 20 % of test patients at least one in five")
    assert "test accuracy is 80.0 % (AUROC 0.900)" in lines[2]
    # sex=1 holds patients 2, 3, 4: all three arbitrary (100 %), against 30 % overall.
    assert "sex = 1: 100 % of its 3 patients, against 30 % overall" in lines[3]
    html = page.read_text()
    assert "30 % of test patients (3 of 10)" in html
    # Missing optional stages name the command that produces them.
    assert "rashomon decide RUN_DIR" in html
    assert "robustness.csv is written by" in html


def test_library_column_names_are_accepted(tmp_path):
    """The names rashomon.metrics / rashomon.decide produce (aliases) give the same numbers."""
    ps = pd.DataFrame(
        {
            "sample": range(4),
            "true_label": [0, 1, 1, 0],
            "ref_label": [0, 1, 0, 0],
            "flip_rate": [0.0, 0.5, 0.25, 0.0],
            "ambiguous": [False, True, True, False],
            "disagreement": [0.0, 1.0, 0.75, 0.0],
            "capacity": [1.0, 1.5, 1.2, 1.0],
            "vpr_low": [0.1, 0.3, 0.4, 0.0],
            "vpr_high": [0.2, 0.8, 0.6, 0.1],
        }
    )
    sel = pd.DataFrame(
        {
            "desideratum": ["accuracy"],
            "higher_is_better": [True],
            "chosen": [3],
            "chosen_test": [0.81],
            "map_test": [0.8],
            "test_gain": [0.01],
            "gain_ci_low": [0.002],
            "gain_ci_high": [0.02],
            "spearman_rho": [0.5],
            "verdict": ["real gain"],
        }
    )
    ens = pd.DataFrame(
        {
            "combine": "vote",
            "rule": ["none", "share", "binomial"] * 2,
            "threshold": [np.nan, 0.8, 0.05] * 2,
            "k": [1, 1, 1, 5, 5, 5],
            "coverage": [1, 0.9, 0.8, 1, 0.95, 0.9],
            "covered_accuracy": [0.8, 0.85, 0.86, 0.82, 0.84, 0.85],
            "residual_ambiguity": [0.2, 0.1, 0.1, 0.05, 0.005, 0.0],
        }
    )
    rob = pd.DataFrame(
        {
            "model": [-1, 0, 1, -1, 0, 1, -1, 0, -1, 0],
            "is_map": [True, False, False] * 2 + [True, False] * 2,
            "family": ["clean"] * 3 + ["corruption"] * 3 + ["attack"] * 4,
            "corruption": ["clean"] * 3 + ["pixelate"] * 3 + ["fgsm"] * 4,
            "severity": [0, 0, 0, 1, 1, 1] + [np.nan] * 4,
            "epsilon": [np.nan] * 6 + [0.0, 0.0, 2 / 255, 2 / 255],
            "mode": [""] * 6 + ["whitebox", "transfer", "whitebox", "transfer"],
            "metric": "accuracy",
            "value": [0.9, 0.88, 0.89, 0.7, 0.72, 0.69, 0.9, 0.88, 0.3, 0.5],
        }
    )
    run = _minimal_run(
        tmp_path / "run",
        ps,
        {
            "decide/selection.csv": sel,
            "decide/ensembles.csv": ens,
            "evaluate/robustness.csv": rob,
        },
    )
    data = load_run(run, load_images=False)
    assert data.table("per_sample")["arbitrary"].tolist() == [False, True, True, False]
    assert {"vpr_min", "vpr_max", "map_pred", "label", "index"} <= set(data.table("per_sample"))
    assert data.table("selection")["direction"].tolist() == ["max"]
    page = build_report(run, tmp_path / "out", load_images=False)
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert lines[0].startswith("50 % of test patients (2 of 4)")
    assert any("real test gain for: accuracy" in s for s in lines)
    assert any(
        s.startswith("An ensemble of k = 5 models that abstains unless at least 80 %")
        for s in lines
    )
    html = page.read_text()
    assert "accuracy ↑" in html and "[+0.0020, +0.0200]" in html
    assert "binomial test, α = 0.05" in html and "no abstention" in html
    pngs = {p.stem for p in (tmp_path / "out").glob("*.png")}
    assert {"robustness_corruptions", "robustness_attacks", "patients"} <= pngs


def test_missing_required_stage_names_the_command(fake_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(fake_run, run, ignore=shutil.ignore_patterns("report", "*.npy", "*.pt"))
    shutil.rmtree(run / "evaluate")
    with pytest.raises(RashomonError, match=r"rashomon evaluate .*first"):
        build_report(run, tmp_path / "out", load_images=False)
    with pytest.raises(RashomonError, match="does not exist"):
        build_report(tmp_path / "nowhere", tmp_path / "out")


def test_report_files_and_numbers(report, fake_run):
    out = report.parent
    html = report.read_text()
    pngs = {p.stem for p in out.glob("*.png")}
    assert pngs == FIGURES
    for name in FIGURES:  # every PNG on disk is the one embedded in the page
        b64 = base64.b64encode((out / f"{name}.png").read_bytes()).decode()
        assert b64 in html, name
    # Self-contained: no scripts, no external resources.
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    # The headline is computed from per_sample.csv.
    ps = pd.read_csv(fake_run / "evaluate" / "per_sample.csv")
    share = (ps["flips"] > 0).mean()
    n = int((ps["flips"] > 0).sum())
    headline = (out / "summary.txt").read_text().splitlines()[0]
    assert headline.startswith(f"{100 * share:.0f} % of test patients ({n} of {len(ps)})")
    assert html_escape(headline) in html
    # Derived attributes are marked as proxies; tables are copied next to the page.
    assert "intensity (derived proxy)" in html
    assert (out / "tables" / "evaluate_per_sample.csv").exists()
    kept = pd.read_csv(fake_run / "sample" / "survival.csv").set_index("epsilon")["models_in_set"]
    assert f"{kept[0.02]} / 200" in html


def test_report_stage_through_run_stage(fake_run, tmp_path):
    from rashomon.config import load_config
    from rashomon.run import run_stage

    run = tmp_path / "run"
    # Without the optional LSI and robustness tables (also keeps this test short).
    shutil.copytree(
        fake_run, run, ignore=shutil.ignore_patterns("report", "lsi.csv", "robustness.csv", "*.npy")
    )
    cfg = load_config(run / "config.yaml")
    summary = run_stage(run, cfg, "report", progress=False)
    html = (run / "report" / "report.html").read_text()
    optional = {"lsi", "lsi_top_images", "robustness_corruptions", "robustness_attacks"}
    assert {p.stem for p in (run / "report").glob("*.png")} == FIGURES - optional
    assert summary["figures"] == len(FIGURES - optional)
    assert "No LSI table" in html and "No robustness results" in html
    assert summary["headline"] == (run / "report" / "summary.txt").read_text().splitlines()[0]


def test_report_renders_in_headless_chromium(report):
    if find_chromium() is None:
        pytest.fail(
            "headless Chromium is required for this test and was not found; install "
            "Debian's chromium (apt-get install -y chromium) or set $CHROMIUM"
        )
    try:
        page = inspect_page(report, width=1280, height=2400)  # screenshot: the top 2400 px
    except BrowserError as exc:
        pytest.fail(f"Chromium could not render the report: {exc}")
    assert page.console_errors == []
    assert page.title.startswith("Rashomon audit")
    assert len(page.images) == len(FIGURES)
    broken = [im for im in page.images if not im["complete"] or im["naturalWidth"] == 0]
    assert broken == []
    # Nothing but the page itself and its embedded images was requested.
    assert all(u.startswith(("file:", "data:")) for u in page.requests), page.requests
    colours, ink = screenshot_stats(page.screenshot)
    assert page.height > 5000  # the whole page laid out, not an error page
    assert colours > 500 and ink > 0.05, (colours, ink)


def test_a_failing_section_shows_a_box_and_the_rest_is_written(fake_run, tmp_path, monkeypatch):
    """A figure that raises while it is drawn (the selection plot's old crash): its section shows
    a failure box with the reason, every other section and figure is on the page, the report
    stage records the failure and warns through its console, and Chromium renders the page."""
    from io import StringIO

    from browser import inspect_self_contained
    from rich.console import Console

    from rashomon.config import load_config
    from rashomon.report import plots
    from rashomon.run import run_stage

    run = tmp_path / "run"
    shutil.copytree(
        fake_run, run, ignore=shutil.ignore_patterns("report", "lsi.csv", "robustness.csv", "*.npy")
    )

    def broken(*args, **kwargs):
        raise ValueError("'xerr' must not contain\n  negative values")

    monkeypatch.setattr(plots, "selection_gains", broken)
    printed = StringIO()
    summary = run_stage(
        run,
        load_config(run / "config.yaml"),
        "report",
        progress=False,
        console=Console(file=printed, width=300),
    )
    reason = "ValueError: 'xerr' must not contain negative values"
    assert summary["failed_sections"] == [{"section": "Best-in-set selection", "error": reason}]
    assert "warning: report section 'Best-in-set selection' failed and shows an error box: " in (
        printed.getvalue()
    )
    out = run / "report"
    assert "in broken" in (out / "errors.txt").read_text()  # the traceback, next to the page
    drawn = FIGURES - {"lsi", "lsi_top_images", "robustness_corruptions", "robustness_attacks"}
    assert {p.stem for p in out.glob("*.png")} == drawn - {"selection"}
    assert summary["figures"] == len(drawn) - 1

    page = inspect_self_contained(out / "report.html", height=2400)
    sections = {s["id"]: s for s in page.sections}
    assert list(sections) == [
        "summary",
        "task",
        "map",
        "set",
        "multiplicity",
        "desiderata",
        "selection",
        "ensembles",
        "lsi",
        "patients",
        "robustness",
        "run",
    ]
    failed = sections.pop("selection")
    assert failed["cls"] == "failed" and failed["title"] == "Best-in-set selection"
    assert "The section “Best-in-set selection” could not be built" in failed["text"]
    assert reason in failed["text"] and failed["height"] > 50
    assert all(s["cls"] != "failed" and s["height"] > 50 for s in sections.values())
    assert len(page.images) == len(drawn) - 1
    headline = (out / "summary.txt").read_text().splitlines()[0]
    assert headline in sections["summary"]["text"]


def test_a_degenerate_map_model_is_the_headline(fake_run, tmp_path):
    """A MAP model that says 'pneumonia' for 98 % of test patients: the headline says so first
    (summary.txt, which the CLI prints, and the page), and the selection section shows why the
    decide stage refused to select."""
    from sklearn.metrics import balanced_accuracy_score

    run = tmp_path / "run"
    shutil.copytree(fake_run, run, ignore=shutil.ignore_patterns("report", "*.npy", "lsi.csv"))
    ps = pd.read_csv(run / "evaluate" / "per_sample.csv")
    ps["map_pred"] = 1
    ps.loc[:9, "map_pred"] = 0  # 614 of 624 patients: 98 %
    ps.to_csv(run / "evaluate" / "per_sample.csv", index=False)
    (run / "decide" / "selection.csv").unlink()
    reason = "the trained model predicts 'class 1' for 98 % of test patients (...)"
    pd.DataFrame({"part": ["selection", "pareto"], "note": [f"skipped: {reason}"] * 2}).to_csv(
        run / "decide" / "notes.csv", index=False
    )
    page = build_report(run, tmp_path / "out", load_images=False).read_text()
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    bacc = balanced_accuracy_score(ps["label"], ps["map_pred"])
    warning = (
        f"The trained model predicts 'pneumonia' for 98 % of test patients (balanced accuracy "
        f"{bacc:.2f}, chance 0.50): multiplicity of a near-constant classifier is no finding; "
        "train longer or check the data."
    )
    assert lines[0] == warning
    n = int((ps["flips"] > 0).sum())  # then the usual headline
    assert lines[1].startswith(f"{100 * n / len(ps):.0f} % of test patients ({n} of {len(ps)})")
    assert f"Best-in-set selection was skipped: {reason}." in lines
    assert html_escape(warning) in page and "Degenerate trained model." in page
    assert "Selection skipped:" in page and html_escape(reason) in page


def test_selection_plot_draws_a_point_outside_its_interval(tmp_path):
    """A selection.csv written before the interval fix (gain 0 outside [0.03, 0.38]) made
    matplotlib refuse negative error bars; the plot now draws interval and point apart."""
    from rashomon.report import plots

    sel = pd.DataFrame(
        {
            "desideratum": ["dp_gap:intensity", "accuracy"],
            "gain": [0.0, 0.01],
            "gain_low": [0.03, np.nan],
            "gain_high": [0.38, np.nan],
            "verdict": ["real gain", "ranks transfer (no CI)"],
        }
    )
    fig = plots.selection_gains(sel, "desideratum")
    assert plots.save_png(fig, tmp_path / "sel.png").stat().st_size > 1000
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 0.0 and hi > 0.38  # both the point and the whole interval are in view
