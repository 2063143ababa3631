"""The validity study: model sets side by side against the retrained set (the ground truth).

For one task, several set sources (Laplace last-layer and all-weights, sampled and linearized,
Riemannian, MC dropout) and the retrained set (K independently trained seeds) are each an
ordinary run directory with a finished sample stage. On the same test patients and at one matched
ε (every set filtered by its own `in_set@ε` column of sample/per_model.csv; by default the ground
truth's ε as its sample stage recorded it), each set gets:

- ambiguity, discrepancy, mean disagreement and mean Rashomon capacity (rashomon.metrics);
- per-patient agreement with the ground truth: Spearman rank correlation of per-sample
  disagreement, and precision / recall of its "arbitrary patient" flags (at least one model of
  the set flips the MAP model's label) against the retrained set's flags;
- spread (max − min over the set's models) of each desideratum of evaluate/per_model_test.csv,
  and its ratio to the retrained set's spread;
- cost: the seconds of the sample stage (building and predicting the set) and every timing or
  memory figure of sample/summary.json.

Everything past loading is a pure function of arrays. Multilabel sets ([M, N, L] sigmoid
probabilities, recognised by rows that do not sum to one) are audited per label as binary tasks:
each (patient, label) pair counts as one sample.

The capacity study (multiplicity against the width multiplier at fixed data) is a sweep over
`train.width`: `capacity_study(sweep_dir)` gives its table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics.agreement import NOT_DESIDERATA as NOT_DESIDERATA
from rashomon.metrics.agreement import SetArrays, compare_sets
from rashomon.metrics.agreement import as_binary as as_binary
from rashomon.metrics.agreement import desideratum_spread as desideratum_spread
from rashomon.metrics.agreement import flag_agreement as flag_agreement
from rashomon.metrics.agreement import rank_agreement as rank_agreement
from rashomon.metrics.agreement import set_multiplicity as set_multiplicity

COMPARE_FILE = "compare.csv"
PER_PATIENT_FILE = "per_patient.csv"
COMPARE_REPORT = "compare.html"
COST_KEY = re.compile(r"seconds|memory|rss|bytes|peak", re.IGNORECASE)


# --------------------------------------------------------------------------- loading


def set_label(source: str, options: Mapping[str, Any]) -> str:
    """A short name of a set from its source and resolved options (the sample stage's record),
    e.g. 'laplace last_layer kron nn'."""
    if source == "laplace":
        return f"laplace {options.get('subset')} {options.get('hessian')} {options.get('kind')}"
    if source == "riemannian":
        lin = " linearized" if options.get("linearized") else ""
        return f"riemannian {options.get('subset')}{lin}"
    return str(source)


def load_set(run_dir: Path, epsilon: float | None = None, name: str | None = None) -> SetArrays:
    """A run directory's test predictions of the models within ε (default: the ε its sample stage
    recorded), its MAP model's, the kept models' desiderata and the cost of building the set."""
    run_dir = Path(run_dir)
    sample = run_dir / "sample"
    per_model_file = S.TABLES["per_model"].path(run_dir)
    needed = (S.probs_file("test"), S.map_probs_file("test"), per_model_file.name)
    missing = [f for f in needed if not (sample / f).exists()]
    if missing:
        raise RashomonError(
            f"{run_dir} lacks sample/{missing[0]}; re-run `rashomon sample {run_dir} --force`"
        )
    record = S.sample_record(run_dir)  # ε, source and options as the sample stage recorded them
    if epsilon is None:
        epsilon = record.epsilon
    per_model = pd.read_csv(per_model_file)
    col = S.find_in_set_column(per_model.columns, epsilon, str(per_model_file))
    probs = np.load(sample / S.probs_file("test"), mmap_mode="r")
    if len(per_model) != probs.shape[0]:
        raise RashomonError(
            f"{sample}: per_model.csv has {len(per_model)} rows for {probs.shape[0]} models; "
            f"re-run `rashomon sample {run_dir} --force`"
        )
    keep = per_model[col].astype(bool).to_numpy()
    if not keep.any():
        raise RashomonError(
            f"no model of {run_dir} is within ε={epsilon:g}; use a larger --epsilon"
        )
    ids = per_model[S.MODEL].to_numpy()
    desiderata = None
    pm_test = S.TABLES["per_model_test"].path(run_dir)
    if pm_test.exists():
        df = pd.read_csv(pm_test)
        desiderata = df[df[S.MODEL].isin(ids[keep])]
    return SetArrays(
        name=name or set_label(record.source, record.options) or run_dir.name,
        probs=np.asarray(probs[keep], dtype=np.float32),
        map_probs=np.load(sample / S.map_probs_file("test")),
        models=int(probs.shape[0]),
        per_model_test=desiderata,
        cost=build_cost(run_dir),
        source=record.source,
        run_dir=str(run_dir),
    )


def build_cost(run_dir: Path) -> dict[str, float]:
    """Seconds of the sample stage and every timing / memory number of sample/summary.json;
    `train_seconds` from the train stage (what every set shares)."""
    cost: dict[str, float] = {}
    for stage, prefix in (("sample", ""), ("train", "train_")):
        f = Path(run_dir) / stage / S.SUMMARY
        if not f.exists():
            continue
        summary = json.loads(f.read_text())
        for key, value in summary.items():
            if stage == "train" and key != "seconds":
                continue
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and (COST_KEY.search(key))
            ):
                cost[prefix + key] = float(value)
    return cost


def expand_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Run directories from paths that are run directories or sweep directories (every cell
    with a finished sample stage)."""
    from rashomon.sweep import STATUS_FILE

    out: list[Path] = []
    for p in map(Path, paths):
        if (p / STATUS_FILE).exists():
            status = pd.read_csv(p / STATUS_FILE)
            out += [Path(d) for d in status["run_dir"] if (Path(d) / "sample").is_dir()]
        else:
            out.append(p)
    return out


def _find_truth(run_dirs: Sequence[Path]) -> Path:
    retrain = [d for d in run_dirs if S.sample_record(d).source == "retrain"]
    if len(retrain) != 1:
        raise RashomonError(
            f"found {len(retrain)} retrained sets among the runs; name the ground truth with "
            "--truth RUN_DIR"
        )
    return retrain[0]


def _unique_names(sets: Sequence[SetArrays]) -> None:
    labels = [s.name for s in sets]
    for s in sets:
        if labels.count(s.name) > 1:
            s.name = f"{s.name} ({Path(s.run_dir).name})"


# --------------------------------------------------------------------------- the command


def run_compare(
    run_dirs: Sequence[Path],
    out: Path,
    truth: Path | None = None,
    epsilon: float | None = None,
    threshold: float = 0.5,
    console: Any = None,
) -> pd.DataFrame:
    """Compare model sets with the retrained set on the same test patients at one ε.

    RUN_DIRS are run directories with a finished sample stage, or sweep directories (every cell
    that has one). The ground truth is --truth, else the one run whose source is `retrain`.
    ε defaults to the ground truth's ε as its sample stage recorded it (sample/summary.json).
    Writes OUT/compare.csv (one row per set, then the ground-truth row), OUT/per_patient.csv and
    OUT/compare.html; returns the compare table.
    """
    from rich.console import Console

    console = console or Console()
    dirs = expand_run_dirs(run_dirs)
    truth_dir = Path(truth) if truth is not None else _find_truth(dirs)
    dirs = [d for d in dirs if d.resolve() != truth_dir.resolve()]
    if not dirs:
        raise RashomonError("no set to compare with the ground truth; give more run directories")
    if epsilon is None:
        epsilon = S.sample_record(truth_dir).epsilon
    truth_set = load_set(truth_dir, epsilon)
    truth_set.name = f"{truth_set.name} (ground truth)"
    sets = [load_set(d, epsilon) for d in dirs]
    _unique_names(sets)
    table, patients = compare_sets(sets, truth_set, threshold)
    table.insert(1, "epsilon", epsilon)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / COMPARE_FILE, index=False)
    patients.to_csv(out / PER_PATIENT_FILE, index=False)
    from rashomon.report.compare_page import render_compare_page

    page = render_compare_page(table, patients, truth_set.name)
    (out / COMPARE_REPORT).write_text(page, encoding="utf-8")
    _print_table(table, console)
    console.print(f"compare table {out / COMPARE_FILE}, report {out / COMPARE_REPORT}")
    return table


def _print_table(table: pd.DataFrame, console: Any) -> None:
    from rich.table import Table

    shown = {
        "set": "set",
        "models_in_set": "in set",
        "ambiguity": "ambig.",
        "discrepancy": "discr.",
        "mean_disagreement": "disagr.",
        "mean_capacity": "capac.",
        "spearman_disagreement": "rho",
        "flag_precision": "prec.",
        "flag_recall": "recall",
        "cost:seconds": "sec.",
    }
    cols = [c for c in shown if c in table.columns]
    t = Table(title=f"rashomon compare at ε={table['epsilon'].iloc[0]:g}")
    for c in cols:
        t.add_column(shown[c], overflow="fold", min_width=22 if c == "set" else None)
    for _, row in table.iterrows():
        t.add_row(*[f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols])
    console.print(t)


# --------------------------------------------------------------------------- capacity study


def capacity_study(sweep_dir: Path, axis: str = "train.width") -> pd.DataFrame:
    """Headline numbers (accuracy, ambiguity, discrepancy, disagreement, capacity) against a
    sweep axis, mean / std / n over the other cells: multiplicity vs width at fixed data."""
    from rashomon.sweep import STATUS_FILE, axis_study, collect_sweep, grid_keys, headline_table

    sweep_dir = Path(sweep_dir)
    tidy = collect_sweep(sweep_dir)
    status = pd.read_csv(sweep_dir / STATUS_FILE)
    if axis not in status.columns:
        raise RashomonError(
            f"the sweep in {sweep_dir} has no grid axis {axis!r}; its axes are "
            f"{[c for c in status.columns if '.' in c or c == 'seed']}"
        )
    return axis_study(headline_table(tidy, grid_keys(status)), axis)
