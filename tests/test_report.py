"""The HTML report: built from a synthetic run directory (tests/fake_run.py), checked for its
numbers, its behaviour with missing stages, and rendered in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import BrowserError, find_chromium, inspect_page, screenshot_stats
from fake_run import VALIDATE_FIGURES, write_fake_run

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.report import build_report, write_report
from rashomon.report.study import study_table

FIGURES = {
    "training_curve",
    "set_survival",
    "set_distance",
    "multiplicity_hist",
    "convergence",
    "multiplicity_groups",
    "desiderata",
    "fairness_front",
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


SAMPLE_SUMMARY = {
    "source": "laplace",
    "options": {"subset": "last_layer", "hessian": "kron", "prior": "marglik", "kind": "nn"},
    "models": 50,
    "models_in_set": 40,
    "epsilon": 0.01,
    "on": "loss",
}


def _minimal_run(
    root: Path, per_sample: pd.DataFrame, extra: dict[str, pd.DataFrame] | None = None
) -> Path:
    """Only what the required stages must hold; no config, no checkpoint, no decide stage."""
    for stage in ("train", "sample", "evaluate"):
        (root / stage).mkdir(parents=True)
    (root / "train" / "summary.json").write_text('{"test_accuracy": 0.8, "test_auroc": 0.9}')
    (root / "sample" / "summary.json").write_text(json.dumps(SAMPLE_SUMMARY))
    per_sample.to_csv(root / "evaluate" / "per_sample.csv", index=False)
    for name, df in (extra or {}).items():
        stage, file = name.split("/")
        (root / stage).mkdir(exist_ok=True)
        df.to_csv(root / stage / file, index=False)
    return root


def test_summary_numbers_come_from_per_sample(tmp_path):
    # 10 patients: 3 flipped by some model; disagreement >= 0.64 for 2 of them (4·0.2·0.8).
    flips = np.array([0, 0, 8, 20, 1, 0, 0, 0, 0, 0]) / 40
    ps = pd.DataFrame(
        {
            S.SAMPLE: range(10),
            S.TRUE_LABEL: [0, 1] * 5,
            S.MAP_LABEL: [0, 1] * 5,
            S.FLIP_RATE: flips,
            S.AMBIGUOUS: flips > 0,
            S.DISAGREEMENT: [0, 0, 0.64, 1.0, 0.1, 0, 0, 0, 0, 0],
            S.CAPACITY: [1, 1, 1.2, 1.9, 1.01, 1, 1, 1, 1, 1],
            S.VPR_LOW: [0.1] * 10,
            S.VPR_HIGH: [0.2, 0.3, 0.7, 0.9, 0.45, 0.2, 0.3, 0.2, 0.1, 0.2],
            "sex": [0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
            "random": [0, 1] * 5,
        }
    )
    run = _minimal_run(tmp_path / "run", ps)
    page = build_report(run, tmp_path / "out", load_images=False)
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert lines[0] == (
        "30 % of test patients (3 of 10) would receive a different diagnosis from at least one "
        "equally good model (validation loss within ε = 0.01 of the trained model's; 40 of 50 "
        "models of the last-layer Laplace set (kron))."
    )
    assert lines[1].startswith("For 20 % of test patients at least one in five")
    assert "test accuracy is 80.0 % (AUROC 0.900)" in lines[2]
    # sex=1 holds patients 2, 3, 4: all three arbitrary (100 %), against 30 % overall; the
    # random control's groups hold 2 of 5 (40 %) and 1 of 5 (20 %): 10 points from it.
    assert lines[3] == (
        "Arbitrariness is highest for sex = 1: 100 % of its 3 patients, against 30 % overall "
        "(the random control's groups lie within 10.0 points of it)."
    )
    html = page.read_text()
    assert "30 % of test patients (3 of 10)" in html
    # Missing optional stages name the command that produces them.
    assert "rashomon decide RUN_DIR" in html
    assert "robustness.csv is written by" in html


def _group_summary(tmp_path: Path, name: str, groups: dict[str, list[int]], extra=None) -> list:
    """summary.txt of a run of 40 patients, patients 0-11 arbitrary (30 %), with the given
    attribute codes (no checkpoint: intensity and random are derived, the rest real)."""
    arbitrary = np.arange(40) < 12
    ps = pd.DataFrame(
        {S.SAMPLE: range(40), S.TRUE_LABEL: [0, 1] * 20, S.MAP_LABEL: [0, 1] * 20}
        | {S.AMBIGUOUS: arbitrary, S.FLIP_RATE: arbitrary * 0.1, S.DISAGREEMENT: arbitrary * 0.3}
        | {S.VPR_LOW: 0.2, S.VPR_HIGH: np.where(arbitrary, 0.6, 0.3)}
        | groups
    )
    run = _minimal_run(tmp_path / name, ps, extra)
    build_report(run, tmp_path / f"{name}-out", load_images=False)
    return (tmp_path / f"{name}-out" / "summary.txt").read_text().splitlines()


def test_the_summary_names_a_real_group_only_beyond_the_random_control(tmp_path):
    """The headline names a patient group only for a real attribute whose most arbitrary group
    lies further from the overall share than the random control's groups do; derived proxies
    (intensity: patients 0-11, all arbitrary) are never named there."""
    i = np.arange(40)
    intensity = np.where(i < 12, 0, 1 + i % 2).tolist()
    sex = ((i < 10) | ((i >= 20) & (i < 30))).astype(int).tolist()  # sex 1: 10 of 20 arbitrary
    even = (i % 2).tolist()  # random groups: 6 of 20 each (30 %): 0 points from overall
    skewed = ((i < 10) | (i >= 30)).astype(int).tolist()  # random 1: 50 %, random 0: 10 %

    # (a) only a derived attribute has a gap: no group is named
    lines = _group_summary(tmp_path, "proxy", {"intensity": intensity, "random": even})
    assert not any("intensity" in s or "Arbitrariness" in s for s in lines), lines
    assert (
        "No real patient attribute on this task: the summary names no patient group (derived "
        "proxies are in the multiplicity section)."
    ) in lines
    # (b) a real attribute beyond the null control: named, the proxy still is not
    lines = _group_summary(tmp_path, "real", {"sex": sex, "intensity": intensity, "random": even})
    assert (
        "Arbitrariness is highest for sex = 1: 50 % of its 20 patients, against 30 % overall "
        "(the random control's groups lie within 0.0 points of it)."
    ) in lines
    assert not any("intensity" in s for s in lines)
    # (c) the same real gap (20 points) within the random control's (20 points): not named
    lines = _group_summary(
        tmp_path, "noise", {"sex": sex, "intensity": intensity, "random": skewed}
    )
    assert (
        "No patient group stands out beyond the random control's 20.0 points: the most "
        "arbitrary real group, sex = 1, has 50 % against 30 % overall."
    ) in lines
    assert not any("Arbitrariness" in s or "intensity" in s for s in lines)
    # without a random control there is nothing to tell a gap from noise with
    lines = _group_summary(tmp_path, "nonull", {"sex": sex})
    assert (
        "This run has no random control attribute to tell a group's arbitrariness from noise: "
        "the summary names no patient group."
    ) in lines


def test_the_selection_sentence_names_gaps_of_real_attributes_beyond_random(tmp_path):
    """A real gain on a fairness gap is named in the summary only for a real attribute, and
    only when it exceeds the same gap's gain on the random control."""
    rows = [
        ("accuracy", 0.010, "real gain"),
        ("tpr_gap:intensity", 0.050, "real gain"),  # a derived proxy: never named
        ("tpr_gap:sex", 0.030, "real gain"),  # beyond random's 0.02: named
        ("tpr_gap:random", 0.020, "real gain"),
        ("dp_gap:sex", 0.010, "real gain"),  # within random's 0.04: not named
        ("dp_gap:random", 0.040, "selection noise"),
    ]
    sel = pd.DataFrame(
        {
            S.DESIDERATUM: [r[0] for r in rows],
            S.HIGHER_IS_BETTER: False,
            S.CHOSEN: 1,
            S.CHOSEN_VAL: 0.1,
            S.CHOSEN_TEST: 0.1,
            S.MAP_TEST: 0.1,
            S.TEST_GAIN: [r[1] for r in rows],
            S.GAIN_CI_LOW: 0.001,
            S.GAIN_CI_HIGH: 0.06,
            S.SPEARMAN_RHO: 0.5,
            S.VERDICT: [r[2] for r in rows],
        }
    )
    i = np.arange(40)
    groups = {"sex": (i % 2).tolist(), "intensity": (i % 3).tolist(), "random": (i // 20).tolist()}
    lines = _group_summary(tmp_path, "sel", groups, {"decide/selection.csv": sel})
    assert (
        "Picking the best model of the set on validation data gives a real test gain for: "
        "accuracy, tpr_gap:sex (see the selection section for the size and its interval)."
    ) in lines
    only_proxies = sel[sel[S.DESIDERATUM].str.endswith(("intensity", "random", "dp_gap:sex"))]
    lines = _group_summary(tmp_path, "sel2", groups, {"decide/selection.csv": only_proxies})
    assert (
        "Picking the best model of the set on validation data gives a real test gain only on "
        "derived proxies or within the random control's gain (see the selection section)."
    ) in lines


def test_decide_and_robustness_tables_render_under_the_schemas_names(tmp_path):
    """Hand-made selection, ensemble and robustness tables under the names the stages write
    (rashomon.schema): the sentences, the interval column, the rule legend and the figures."""
    ps = pd.DataFrame(
        {
            S.SAMPLE: range(4),
            S.TRUE_LABEL: [0, 1, 1, 0],
            S.MAP_LABEL: [0, 1, 0, 0],
            S.FLIP_RATE: [0.0, 0.5, 0.25, 0.0],
            S.AMBIGUOUS: [False, True, True, False],
            S.DISAGREEMENT: [0.0, 1.0, 0.75, 0.0],
            S.CAPACITY: [1.0, 1.5, 1.2, 1.0],
            S.VPR_LOW: [0.1, 0.3, 0.4, 0.0],
            S.VPR_HIGH: [0.2, 0.8, 0.6, 0.1],
        }
    )
    sel = pd.DataFrame(
        {
            S.DESIDERATUM: ["accuracy", "nll"],
            S.HIGHER_IS_BETTER: [True, False],
            S.CHOSEN: [3, 1],
            S.CHOSEN_VAL: [0.8, 0.3],
            S.CHOSEN_TEST: [0.81, 0.4],
            S.MAP_TEST: [0.8, 0.35],
            S.TEST_GAIN: [0.01, -0.05],
            S.GAIN_CI_LOW: [0.002, -0.08],
            S.GAIN_CI_HIGH: [0.02, -0.01],
            S.SPEARMAN_RHO: [0.5, 0.6],
            S.VERDICT: ["real gain", "real loss"],
        }
    )
    ens = pd.DataFrame(
        {
            S.COMBINE: "vote",
            S.RULE: ["none", "share", "binomial"] * 2,
            S.THRESHOLD: [np.nan, 0.8, 0.05] * 2,
            S.K: [1, 1, 1, 5, 5, 5],
            S.COVERAGE: [1, 0.9, 0.8, 1, 0.95, 0.9],
            S.COVERED_ACCURACY: [0.8, 0.85, 0.86, 0.82, 0.84, 0.85],
            S.RESIDUAL_AMBIGUITY: [0.2, 0.1, 0.1, 0.05, 0.005, 0.0],
        }
    )
    rob = pd.DataFrame(
        {
            S.MODEL: [-1, 0, 1, -1, 0, 1, -1, 0, -1, 0],
            S.IS_MAP: [True, False, False] * 2 + [True, False] * 2,
            S.FAMILY: ["clean"] * 3 + ["corruption"] * 3 + ["attack"] * 4,
            S.CORRUPTION: ["clean"] * 3 + ["pixelate"] * 3 + ["fgsm"] * 4,
            S.SEVERITY: [0, 0, 0, 1, 1, 1] + [np.nan] * 4,
            S.EPSILON: [np.nan] * 6 + [0.0, 0.0, 2 / 255, 2 / 255],
            S.MODE: [""] * 6 + ["whitebox", "transfer", "whitebox", "transfer"],
            S.METRIC: "accuracy",
            S.VALUE: [0.9, 0.88, 0.89, 0.7, 0.72, 0.69, 0.9, 0.88, 0.3, 0.5],
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
    page = build_report(run, tmp_path / "out", load_images=False)
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert lines[0].startswith("50 % of test patients (2 of 4)")
    # A real loss is no gain: only accuracy is named.
    assert any("real test gain for: accuracy (see" in s for s in lines)
    assert any(
        s.startswith("An ensemble of k = 5 models that abstains unless at least 80 %")
        for s in lines
    )
    html = page.read_text()
    assert "accuracy ↑" in html and "nll ↓" in html and "+0.010 [+0.002, +0.020]" in html
    assert "−0.050 [−0.080, −0.010]" in html  # a selection.csv without power columns: no bar
    assert "binomial test, α = 0.05" in html and "no abstention" in html
    pngs = {p.stem for p in (tmp_path / "out").glob("*.png")}
    assert {"robustness_corruptions", "robustness_attacks", "patients", "selection"} <= pngs


def test_the_set_section_reads_the_sample_stages_options(tmp_path):
    """ε and the source's options come from sample/summary.json, not from config.yaml (whose
    flat fields are None unless given); without that summary the report names the stage."""
    import yaml

    ps = pd.DataFrame(
        {S.SAMPLE: [0, 1], S.TRUE_LABEL: [0, 1], S.MAP_LABEL: [0, 1], S.AMBIGUOUS: [True, False]}
    )
    run = _minimal_run(tmp_path / "run", ps)
    cfg = {"sample": {"source": "laplace", "hessian": None, "epsilon": 0.5}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = dict(SAMPLE_SUMMARY, options={"hessian": "diag", "subnetwork": None})
    (run / "sample" / "summary.json").write_text(json.dumps(summary))
    html = build_report(run, tmp_path / "out", load_images=False).read_text()
    assert "<th>laplace hessian</th><td>diag</td>" in html
    assert "subnetwork" not in html  # unset options are left out
    assert "ε = 0.01" in html and "ε = 0.5" not in html
    (run / "sample" / "summary.json").write_text(json.dumps({"source": "laplace"}))
    with pytest.raises(RashomonError, match=r"lacks epsilon, on, options .*rashomon sample"):
        build_report(run, tmp_path / "out", load_images=False)
    (run / "sample" / "summary.json").unlink()
    with pytest.raises(RashomonError, match=r"no finished stage 'sample'.*rashomon sample"):
        build_report(run, tmp_path / "out", load_images=False)


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
    share = ps[S.AMBIGUOUS].mean()
    n = int(ps[S.AMBIGUOUS].sum())
    headline = (out / "summary.txt").read_text().splitlines()[0]
    assert headline.startswith(f"{100 * share:.0f} % of test patients ({n} of {len(ps)})")
    assert html_escape(headline) in html
    # The study's validity figure for this kind of set on this dataset is the December round's
    # size-matched one (report/study_recall.csv); it says how its MAP model was trained and how
    # this run's differs (the fake run trains 20 epochs without dropout).
    study = [s for s in (out / "summary.txt").read_text().splitlines() if "validity study" in s]
    rows = study_table()
    row = rows[
        (rows["dataset"] == "pneumoniamnist")
        & (rows["source"] == "laplace")
        & (rows["scale"] == "posterior")
        & (rows["subset"] == "last_layer")
        & (rows["flag_recall_ratio"] != "")
    ].iloc[-1]
    recall, precision = float(row["flag_recall_ratio"]), float(row["flag_precision_ratio"])
    assert study == [
        "In the validity study on pneumoniamnist (cnn-small, MAP model trained for 1000 steps, "
        f"dropout 0.1, class weights when imbalanced), a set of this kind reached {recall:.2f} of "
        f"the retrained ceiling's flag recall and {precision:.2f} of its precision "
        f"({row['matched_models']} of its models against {row['matched_models']} retrained "
        f"networks, two halves of {row['retrained']} retrained networks giving the ceiling; "
        f"{row['where']}); this run's MAP model was trained differently (20 epochs, not 1000 "
        "steps; no dropout, not 0.1), so the figure is only indicative."
    ]
    validity = html[html.index('<section id="validity"') :]
    assert html_escape(study[0]) in validity[: validity.index("</section>")]
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
        "validity",
        "desiderata",
        "fairness",
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
    ps[S.MAP_LABEL] = 1
    ps.loc[:9, S.MAP_LABEL] = 0  # 614 of 624 patients: 98 %
    ps.to_csv(run / "evaluate" / "per_sample.csv", index=False)
    (run / "decide" / "selection.csv").unlink()
    reason = "the trained model predicts 'class 1' for 98 % of test patients (...)"
    pd.DataFrame({"part": ["selection", "pareto"], "note": [f"skipped: {reason}"] * 2}).to_csv(
        run / "decide" / "notes.csv", index=False
    )
    page = build_report(run, tmp_path / "out", load_images=False).read_text()
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    bacc = balanced_accuracy_score(ps[S.TRUE_LABEL], ps[S.MAP_LABEL])
    warning = (
        f"The trained model predicts 'pneumonia' for 98 % of test patients (balanced accuracy "
        f"{bacc:.2f}, chance 0.50): multiplicity of a near-constant classifier is no finding; "
        "train longer or check the data."
    )
    assert lines[0] == warning
    n = int(ps[S.AMBIGUOUS].sum())  # then the usual headline
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
            S.DESIDERATUM: ["dp_gap:intensity", "accuracy"],
            S.TEST_GAIN: [0.0, 0.01],
            S.GAIN_CI_LOW: [0.03, np.nan],
            S.GAIN_CI_HIGH: [0.38, np.nan],
            S.VERDICT: ["real gain", "ranks transfer (no CI)"],
        }
    )
    fig = plots.selection_gains(sel, "desideratum")
    assert plots.save_png(fig, tmp_path / "sel.png").stat().st_size > 1000
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 0.0 and hi > 0.38  # both the point and the whole interval are in view


def test_fake_run_files_have_the_schemas_columns(fake_run, task_pneumonia):
    """The fake run writes every table of rashomon.schema, each with the schema's columns (as a
    real run does: tests/test_schema.py checks the stages' functions)."""
    attributes = list(task_pneumonia.attributes)
    for key, table in S.TABLES.items():
        path = table.path(fake_run)
        assert path.exists(), path
        columns = list(pd.read_csv(path, nrows=0).columns)
        if key == "per_sample":
            assert columns == S.per_sample_columns("binary", 2, attributes)
        elif table.varying:
            assert columns[: len(table.columns)] == list(table.columns), key
            assert table.unexpected(columns) == [], key
        else:
            assert columns == list(table.columns), key
    per_model = pd.read_csv(S.table_path(fake_run, "per_model"), nrows=0)
    assert [c for c in per_model.columns if S.parse_in_set_column(c) is not None] == [
        "in_set@0.005",
        "in_set@0.01",
        "in_set@0.02",
        "in_set@0.05",
    ]


def _multilabel_run(
    root: Path, flips: dict[int, list[bool]], extra=None, map_labels: np.ndarray | None = None
) -> Path:
    """A multilabel per_sample.csv (labels of a checkpoint-less run are named 'label <l>'); the
    MAP model's findings `map_labels` [N, L], by default patient i gets label l when i + l is
    odd (no one finding vector for nearly everyone)."""
    n = len(flips[0])
    if map_labels is None:
        map_labels = (np.add.outer(np.arange(n), np.arange(len(flips))) % 2).astype(int)
    cols = {S.SAMPLE: range(n)}
    for lab, f in flips.items():
        cols[S.label_column(lab, S.MAP_LABEL)] = map_labels[:, lab]
        cols[S.label_column(lab, S.AMBIGUOUS)] = f
        cols[S.label_column(lab, S.DISAGREEMENT)] = np.where(f, 0.5, 0.0)
        cols[S.label_column(lab, S.CAPACITY)] = np.where(f, 1.2, 1.0)
        cols[S.label_column(lab, S.FLIP_RATE)] = np.where(f, 0.1, 0.0)
    return _minimal_run(root, pd.DataFrame(cols), extra)


def test_multilabel_headline_and_selection_name_labels(tmp_path):
    """Multilabel: the headline names the most arbitrary label and counts the others; the
    selection sentence speaks per label (most gains first), not per (label, desideratum)."""
    flips = {
        0: [False, False, False, False],
        1: [True, True, True, False],  # the worst label: 3 of 4 patients
        2: [False, True, False, False],
    }
    desiderata = ["accuracy", "nll", "brier"]
    sel = pd.DataFrame(
        {
            S.DESIDERATUM: desiderata * 2,
            S.HIGHER_IS_BETTER: [True, False, False] * 2,
            S.CHOSEN: 0,
            S.CHOSEN_VAL: 0.5,
            S.CHOSEN_TEST: 0.5,
            S.MAP_TEST: 0.5,
            S.TEST_GAIN: 0.01,
            S.GAIN_CI_LOW: 0.001,
            S.GAIN_CI_HIGH: 0.02,
            S.SPEARMAN_RHO: 0.5,
            S.VERDICT: ["real gain", "selection noise", "real loss"]
            + ["real gain", "real gain", "selection noise"],
            S.LABEL: [0, 0, 0, 2, 2, 2],
        }
    )
    notes = pd.DataFrame(
        {
            S.PART: ["selection", "pareto"],
            S.NOTE: ["skipped: the trained model predicts 'class 0' for 100 % of test patients"]
            * 2,
            S.LABEL: [1, 1],
        }
    )
    run = _multilabel_run(
        tmp_path / "run", flips, {"decide/selection.csv": sel, "decide/notes.csv": notes}
    )
    page = build_report(run, tmp_path / "out", load_images=False).read_text()
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    cond = (
        "validation loss within ε = 0.01 of the trained model's; 40 of 50 models of the "
        "last-layer Laplace set (kron)"
    )
    assert lines[0] == (
        "For label 1, the most arbitrary of the 3 labels, 75 % of test patients (3 of 4) would "
        f"receive a different finding from at least one equally good model ({cond})."
    )
    assert lines[1] == (
        "2 of the 3 labels change for some test patient (after label 1: label 2 25 %); 75 % of "
        "test patients (3 of 4) have at least one label that changes."
    )
    assert (
        "Picking the best model of the set on validation data gives a real test gain for 2 of "
        "the 2 labels checked: label 2 (accuracy, nll) and label 0 (accuracy) (see the "
        "selection section for the sizes and their intervals)."
    ) in lines
    assert (
        "Best-in-set selection was skipped for 1 of the 3 labels (label 1); for label 1: the "
        "trained model predicts 'class 0' for 100 % of test patients."
    ) in lines
    assert "label 2: nll ↓" in page and "Selection skipped for some labels:" in page


def test_multilabel_selection_plot_shows_the_real_verdicts(tmp_path):
    """Multilabel selection: the plot keeps the (label, desideratum) pairs whose gain or loss is
    real and says so; the table lists every pair, the real ones first."""
    flips = {0: [True, False, False, False], 1: [False, True, False, False]}
    sel = pd.DataFrame(
        {
            S.DESIDERATUM: ["accuracy", "nll"] * 2,
            S.HIGHER_IS_BETTER: [True, False] * 2,
            S.CHOSEN: 0,
            S.CHOSEN_VAL: 0.5,
            S.CHOSEN_TEST: 0.5,
            S.MAP_TEST: 0.5,
            S.TEST_GAIN: 0.01,
            S.GAIN_CI_LOW: 0.001,
            S.GAIN_CI_HIGH: 0.02,
            S.SPEARMAN_RHO: 0.5,
            S.VERDICT: ["selection noise", "real loss", "real gain", "selection noise"],
            S.LABEL: [0, 0, 1, 1],
        }
    )
    run = _multilabel_run(tmp_path / "run", flips, {"decide/selection.csv": sel})
    page = build_report(run, tmp_path / "out", load_images=False).read_text()
    assert "Shown: the 2 of 4 (label, desideratum) pairs with a real gain or loss" in page
    table = page[page.index("Shown: the 2 of 4") :]
    rows = [table.index(f"label {r}") for r in ("0: nll", "1: accuracy", "0: accuracy")]
    assert rows == sorted(rows)  # the real verdicts first


def test_a_degenerate_multilabel_map_model_gets_the_banner(tmp_path):
    """A multilabel MAP model that finds nothing on any label for every test patient (or is at
    chance per label) is flagged above the headline, as a binary one is."""
    rng = np.random.default_rng(0)
    flips = {lab: list(rng.random(20) < 0.9) for lab in range(3)}
    run = _multilabel_run(tmp_path / "run", flips, map_labels=np.zeros((20, 3), int))
    page = build_report(run, tmp_path / "out", load_images=False).read_text()
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    warning = (
        "The trained model predicts no finding on any label for 100 % of test patients (mean "
        "per-label AUROC 0.90, chance 0.50): multiplicity of a near-constant classifier is no "
        "finding; train longer or check the data."
    )  # the AUROC: the train stage's mean (no per_model_test.csv)
    assert lines[0] == warning and lines[1].startswith("For label ")
    assert "Degenerate trained model." in page and html_escape(warning) in page
    # varied findings, but the MAP row of per_model_test.csv is at chance on every label
    pm = pd.DataFrame(
        {S.MODEL: [-1, 0]} | {S.label_column(lab, "auroc"): [0.5, 0.9] for lab in range(3)}
    )
    run = _multilabel_run(tmp_path / "chance", flips, {"evaluate/per_model_test.csv": pm})
    build_report(run, tmp_path / "out2", load_images=False)
    first = (tmp_path / "out2" / "summary.txt").read_text().splitlines()[0]
    assert first.startswith(
        "The trained model is near chance on test patients (mean per-label AUROC 0.50, chance 0.50"
    )
    # a working multilabel model gets no banner
    pm[[S.label_column(lab, "auroc") for lab in range(3)]] = 0.8
    run = _multilabel_run(tmp_path / "fine", flips, {"evaluate/per_model_test.csv": pm})
    build_report(run, tmp_path / "out3", load_images=False)
    assert (tmp_path / "out3" / "summary.txt").read_text().startswith("For label ")


def _validate_run(tmp_path: Path, validate: dict) -> Path:
    """A minimal run (4 patients) whose validate/summary.json is `validate`."""
    ps = pd.DataFrame(
        {S.SAMPLE: range(4), S.TRUE_LABEL: [0, 1, 0, 1], S.MAP_LABEL: [0, 1, 1, 1]}
        | {S.AMBIGUOUS: [False] * 4, S.DISAGREEMENT: 0.0, S.FLIP_RATE: 0.0}
        | {S.VPR_LOW: [0.1, 0.6, 0.7, 0.8], S.VPR_HIGH: [0.2, 0.7, 0.8, 0.9]}
    )
    run = _minimal_run(tmp_path / "run", ps)
    # validate filtered its networks at the set's ε: figures of another ε are shown as stale
    epsilon = S.sample_record(run).epsilon
    (run / "validate").mkdir()
    (run / "validate" / "summary.json").write_text(json.dumps({**validate, "epsilon": epsilon}))
    return run


def test_undefined_validity_figures_read_undefined(tmp_path):
    """validate writes null where a figure is undefined: a matched precision when the set's h
    models flag nobody, a ceiling whose halves flag nobody, the number of retrained networks
    when none reaches the set's ambiguity. The summary and the section say so in words; without
    validate/growth.csv the section says how to get it."""
    validate = VALIDATE_FIGURES | {
        "flag_recall_matched": 0.0,
        "flag_precision_matched": None,
        "flag_precision_matched_sd": None,
        "flag_precision_ratio": None,
        "flag_recall_ceiling": None,
        "flag_recall_ratio": None,
        "retrained_models_for_ambiguity": None,
        "ambiguity_set": 0.5,
    }
    run = _validate_run(tmp_path, validate)
    report = write_report(run, tmp_path / "out", load_images=False)
    assert report.failures == []
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert (
        "Against 25 networks retrained on this task (within ε), 12 of this set's models find 0 % "
        "of the patients that 12 retrained networks flag (undefined between two retrained "
        "halves: no ceiling to read it against), precision undefined: its 12 models flag no "
        "patient."
    ) in lines
    # 40 of the run's 50 models within ε (sample/summary.json)
    assert (
        "The whole set of 40 models shows more arbitrariness (50.0 % of test patients) than all "
        "25 retrained networks (34.9 %): seeing as much would take more retrained networks than "
        "were trained."
    ) in lines
    html = report.page.read_text()
    section = html[html.index('<section id="validity"') :]
    section = section[: section.index("</section>")]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", section)
    # this set / ceiling / ratio / full size, recall then precision
    assert cells[:8] == [
        "this set: 12 models against 12 retrained (mean ± sd over 200 rounds)",
        "0.00 ± 0.08",
        "undefined",
        "ceiling: two disjoint halves of 12 retrained networks",
        "undefined",
        "0.83 ± 0.07",
        "ratio: this set / ceiling",
        "undefined",
    ]
    assert "more than all 25" in cells
    assert "validate/growth.csv</code> is missing" in section
    assert not (tmp_path / "out" / "validity_growth.png").exists()


def test_a_validate_stage_without_matched_figures_asks_for_a_rerun(tmp_path):
    """validate/summary.json from before the size-matched figures (full-size flag_recall): the
    summary and the section ask for a re-run instead of failing."""
    old = {"retrained": 30, "retrained_in_set": 25, "retrained_flags": 12}
    run = _validate_run(tmp_path, old | {"flag_recall": 0.5, "flag_precision": None})
    report = write_report(run, tmp_path / "out", load_images=False)
    assert report.failures == []
    rerun = (
        "This run's validate stage compared the whole set with 25 retrained networks, which "
        "mixes the set's size with its validity: re-run `rashomon validate RUN_DIR --force` for "
        "the size-matched figures."
    )
    assert rerun in (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert html_escape(rerun) in report.page.read_text()


def test_desiderata_legend_is_drawn_outside_the_strips():
    """The legend of the strips sits below the axes, over no strip's data."""
    from rashomon.report import plots

    rng = np.random.default_rng(0)
    pm = pd.DataFrame(
        {S.MODEL: np.arange(-1, 30), "accuracy": rng.uniform(0.8, 0.9, 31)}
        | {"nll": rng.uniform(0.2, 0.4, 31), "ece": rng.uniform(0, 0.1, 31)}
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plots.desiderata_strips(pm, ["accuracy", "nll", "ece"])
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out
    renderer = canvas.get_renderer()
    legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend())]
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    for a in fig.axes:
        assert not box.overlaps(a.get_window_extent(renderer)), a.get_title()
    assert box.y1 <= min(a.get_window_extent(renderer).y0 for a in fig.axes)


def test_training_curve_ticks_are_whole_epochs():
    """A short training (3 epochs) labels its epoch axes with whole numbers only."""
    from rashomon.report import plots

    hist = pd.DataFrame(
        {S.EPOCH: [1, 2, 3], S.TRAIN_LOSS: [0.6, 0.5, 0.45], S.VAL_LOSS: [0.62, 0.55, 0.5]}
        | {S.VAL_ACC: [0.7, 0.75, 0.8]}
    )
    fig = plots.training_curve(hist)
    fig.canvas.draw()
    for a in fig.axes:
        lo, hi = a.get_xlim()
        ticks = [t for t in a.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_wide_tables_scroll_inside_their_section(tmp_path):
    """In a narrow window every table (key-value tables too) scrolls inside its own box, which
    ends within its section: nothing is cut off at the section's edge or spills past it."""
    from browser import inspect_self_contained

    ps = pd.DataFrame(
        {S.SAMPLE: range(4), S.TRUE_LABEL: [0, 1, 0, 1], S.MAP_LABEL: [0, 1, 1, 1]}
        | {S.AMBIGUOUS: [True, False, False, False], S.DISAGREEMENT: [0.5, 0, 0, 0]}
    )
    surv = pd.DataFrame(
        {S.EPSILON: [0.01, 0.02], S.ON: "loss", S.MODELS_IN_SET: [40, 45], S.MODELS: 50}
        | {S.THRESHOLD: [0.31, 0.32]}
        | {f"a_long_extra_column_{i}": 1.0 for i in range(6)}
    )
    run = _minimal_run(tmp_path / "run", ps, {"sample/survival.csv": surv})
    long = dict(SAMPLE_SUMMARY, options={"hessian": "kron", "note": "x" * 160})
    (run / "sample" / "summary.json").write_text(json.dumps(long))
    page = inspect_self_contained(build_report(run, tmp_path / "out", load_images=False), 560)
    boxes = page.table_boxes
    assert boxes and all(t["in_scroll"] for t in boxes), boxes
    for t in boxes:
        assert t["box_right"] <= t["section_right"] + 1, t
    assert [t["scrolls"] for t in boxes if t["section"] == "set"] == [True, True]


@pytest.mark.slow
def test_multilabel_run_report(tmp_path):
    """A real multilabel run (ChestMNIST layout, 14 labels): every table has the schema's
    columns, the report names labels by the task's class names and renders in Chromium with no
    failed section."""
    from browser import inspect_self_contained
    from conftest import synthetic_npz
    from rich.console import Console

    from rashomon.config import load_config
    from rashomon.run import run_pipeline

    synthetic_npz(tmp_path / "chestmnist.npz", sizes=(300, 80, 80), n_labels=14, seed=3)
    cfg = load_config(
        None,
        {
            "data.dataset": "chestmnist",
            "data.root": str(tmp_path),
            "train.arch": "cnn",
            "train.width": 0.25,
            "train.epochs": 3,
            "sample.models": 50,
            "sample.epsilon": 0.05,
            "evaluate.metrics": ["multiplicity", "performance", "calibration", "fairness"],
            "evaluate.bootstrap": 50,
            "decide.constrained_baseline": False,
        },
    )
    run = tmp_path / "run"
    run_pipeline(run, cfg, progress=False, console=Console(quiet=True))
    for key, table in S.TABLES.items():
        path = table.path(run)
        if not path.exists():
            continue
        columns = list(pd.read_csv(path, nrows=0).columns)
        if key == "per_sample":
            expected = S.per_sample_columns("multilabel", 2, ["intensity", "random"], labels=14)
            assert columns == expected
        elif table.stage == "decide":
            assert columns == [
                *table.columns,
                *([S.DISAGREEMENT, S.FLIP_RATE] if key == "lsi" else []),
                S.LABEL,
            ], key
        else:
            assert table.missing(columns) == [] and table.unexpected(columns) == [], key
    assert not (run / "evaluate" / "convergence.csv").exists()
    assert not (run / "decide" / "ensemble_curves.csv").exists()  # each table once
    out = run / "report"
    assert not (out / "errors.txt").exists()
    # 3 epochs of a quarter-width CNN on 300 images stay at chance (mean per-label AUROC 0.50,
    # the same findings for nearly everyone): the degenerate-model banner leads the summary.
    warning, headline = (out / "summary.txt").read_text().splitlines()[:2]
    assert warning.startswith("The trained model predicts ") and "AUROC 0.50" in warning
    assert warning.endswith(
        "multiplicity of a near-constant classifier is no finding; train longer or check the data."
    )
    assert "Degenerate trained model." in (out / "report.html").read_text()
    classes = ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule"]
    classes += ["pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis"]
    classes += ["pleural", "hernia"]
    assert headline.startswith("For ") and headline.split(",")[0][4:] in classes
    if find_chromium() is None:
        pytest.fail("headless Chromium is required for this test (apt-get install -y chromium)")
    page = inspect_self_contained(out / "report.html", height=2400)
    assert page.console_errors == []
    assert [s["id"] for s in page.sections if s["cls"] == "failed"] == []
    broken = [im for im in page.images if not im["complete"] or im["naturalWidth"] == 0]
    assert page.images and broken == []


def test_fairness_section_answers_on_a_real_attribute_in_chromium(tmp_path, data_root):
    """HAM10000's real sex and age group (labels and groups from the real task; the set's
    probabilities simulated by the fake run): the fairness section leads with the real
    attributes, then the random noise floor, the proxies folded away, and the front drawn."""
    from browser import inspect_self_contained

    import rashomon as rs

    folder = data_root / "ham10000"
    if not (folder / "labels-binary.csv").exists():
        pytest.skip("HAM10000 folder task not present")
    task = rs.load_task(str(folder), labels="labels-binary.csv", size=28)
    run = write_fake_run(tmp_path / "run", task, models=60, robustness=False, dataset=str(folder))
    build_report(run, run / "report", task=task)
    sel = pd.read_csv(run / "decide" / "selection.csv").set_index("desideratum")
    post = pd.read_csv(run / "decide" / "postprocess.csv")
    page = inspect_self_contained(run / "report" / "report.html", height=1200)
    text = {s["id"]: s for s in page.sections}["fairness"]["text"]
    real, floor = text.index("Real patient attributes"), text.index("Noise floor: the random attr")
    assert real < text.index("age_group, TPR gap") < text.index("sex, TPR gap") < floor
    assert floor < text.index("random, worst-group accuracy")
    row = sel.loc["tpr_gap:sex"]
    assert f"has {row['chosen_val']:.3f} against the trained model's {row['map_val']:.3f}" in text
    assert f"the gain is {100 * row['test_gain']:+.1f} points" in text
    # the fake run post-processes on the first attribute, age_group (the stage: decide's)
    q = "model == -1 and split == 'test' and desideratum == 'tpr_gap:age_group'"
    to = post.query(q)["value"]
    assert f"ThresholdOptimizer (equalized_odds) on the trained model reaches {to.iloc[0]:.3f}" in (
        text
    )
    assert "Derived proxies" in text and "intensity, TPR gap" not in text[:floor]
    sections = {s["id"]: s["text"] for s in page.sections}
    # the exact last-layer upper line heads the multiplicity section; validity points to validate
    ext = json.loads((run / "evaluate" / "summary.json").read_text())["extremes_ambiguity"]
    assert f"of the trained model's, {100 * ext:.0f} % of test patients" in sections["multiplicity"]
    assert "rashomon validate" in sections["validity"]
    assert (run / "report" / "fairness_front.png").stat().st_size > 5000
