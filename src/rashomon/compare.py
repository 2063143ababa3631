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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics import (
    ambiguity,
    disagreement,
    discrepancy,
    predict_labels,
    rashomon_capacity,
)

COMPARE_FILE = "compare.csv"
PER_PATIENT_FILE = "per_patient.csv"
COMPARE_REPORT = "compare.html"
COST_KEY = re.compile(r"seconds|memory|rss|bytes|peak", re.IGNORECASE)
NOT_DESIDERATA = (S.MODEL,)


@dataclass
class SetArrays:
    """One set's test predictions at the matched ε and what it cost to build."""

    name: str
    probs: np.ndarray  # [M_kept, N, C] test probabilities of the models within ε
    map_probs: np.ndarray  # [N, C] the MAP model's
    models: int = 0  # M before filtering
    per_model_test: pd.DataFrame | None = None  # desiderata of the kept models, one row each
    cost: dict[str, float] = field(default_factory=dict)
    source: str = ""
    run_dir: str = ""


# --------------------------------------------------------------------------- pure functions


def as_binary(probs: np.ndarray, map_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multilabel [M, N, L] / [N, L] sigmoid probabilities → binary [M, N·L, 2] / [N·L, 2]; a
    softmax set (rows summing to one) is returned unchanged."""
    probs = np.asarray(probs, dtype=np.float64)
    map_probs = np.asarray(map_probs, dtype=np.float64)
    if np.allclose(map_probs.sum(axis=-1), 1.0, atol=1e-3):
        return probs, map_probs
    p = probs.reshape(probs.shape[0], -1)
    q = map_probs.reshape(-1)
    return np.stack([1 - p, p], axis=-1), np.stack([1 - q, q], axis=-1)


def set_multiplicity(
    probs: np.ndarray, map_probs: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Ambiguity, discrepancy, mean disagreement and mean capacity of a set against its MAP
    model, plus the per-sample disagreement and arbitrary-patient flags the agreement needs."""
    probs, map_probs = as_binary(probs, map_probs)
    preds = predict_labels(probs, threshold)
    ref = predict_labels(map_probs[None], threshold)[0]
    per_sample = disagreement(preds, num_classes=probs.shape[-1])
    flags = (preds != ref[None, :]).any(axis=0)
    return {
        "ambiguity": ambiguity(preds, ref),
        "discrepancy": discrepancy(preds, ref),
        "mean_disagreement": float(per_sample.mean()),
        "mean_capacity": float(rashomon_capacity(probs).mean()),
        "arbitrary_share": float(flags.mean()),
        "disagreement": per_sample,
        "flags": flags,
    }


def flag_agreement(flags: np.ndarray, truth_flags: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a set's arbitrary-patient flags against the ground truth's (NaN
    when the set flags nobody, resp. the ground truth flags nobody)."""
    flags = np.asarray(flags, dtype=bool)
    truth_flags = np.asarray(truth_flags, dtype=bool)
    hits = float((flags & truth_flags).sum())
    precision = hits / flags.sum() if flags.any() else math.nan
    recall = hits / truth_flags.sum() if truth_flags.any() else math.nan
    return float(precision), float(recall)


def rank_agreement(values: np.ndarray, truth_values: np.ndarray) -> float:
    """Spearman rank correlation of two per-sample arrays (NaN when either is constant)."""
    from scipy.stats import spearmanr

    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(truth_values, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def desideratum_spread(per_model: pd.DataFrame | None) -> dict[str, float]:
    """Max − min over the set's models of every numeric desideratum column (MAP row excluded)."""
    if per_model is None or per_model.empty:
        return {}
    rows = per_model[per_model[S.MODEL] >= 0]
    numeric = rows.drop(columns=[c for c in NOT_DESIDERATA if c in rows]).select_dtypes("number")
    return {c: float(numeric[c].max() - numeric[c].min()) for c in numeric.columns}


def compare_sets(
    sets: Sequence[SetArrays], truth: SetArrays, threshold: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compare table (one row per set, then the ground-truth row) and the per-patient table
    (each set's disagreement and flag per test sample)."""
    _check_same_patients([*sets, truth])
    truth_m = set_multiplicity(truth.probs, truth.map_probs, threshold)
    truth_spread = desideratum_spread(truth.per_model_test)
    rows = []
    per_patient = {}
    for s, is_truth in [*((s, False) for s in sets), (truth, True)]:
        m = truth_m if is_truth else set_multiplicity(s.probs, s.map_probs, threshold)
        precision, recall = flag_agreement(m["flags"], truth_m["flags"])
        row: dict[str, Any] = {
            "set": s.name,
            "source": s.source,
            "ground_truth": is_truth,
            "models": s.models,
            "models_in_set": s.probs.shape[0],
            **{
                k: m[k]
                for k in (
                    "ambiguity",
                    "discrepancy",
                    "mean_disagreement",
                    "mean_capacity",
                    "arbitrary_share",
                )
            },
            "spearman_disagreement": rank_agreement(m["disagreement"], truth_m["disagreement"]),
            "flag_precision": precision,
            "flag_recall": recall,
        }
        for key, value in s.cost.items():
            row[f"cost:{key}"] = value
        spread = desideratum_spread(s.per_model_test)
        for metric, value in spread.items():
            row[f"spread:{metric}"] = value
            ref = truth_spread.get(metric)
            row[f"spread_ratio:{metric}"] = value / ref if ref else math.nan
        row["run_dir"] = s.run_dir
        rows.append(row)
        per_patient[f"disagreement:{s.name}"] = m["disagreement"]
        per_patient[f"arbitrary:{s.name}"] = m["flags"]
    table = pd.DataFrame(rows)
    front = [c for c in table.columns if not c.startswith(("cost:", "spread")) and c != "run_dir"]
    back = sorted(c for c in table.columns if c.startswith("cost:"))
    back += sorted(c for c in table.columns if c.startswith("spread"))
    table = table[front + back + ["run_dir"]]
    patients = pd.DataFrame(per_patient)
    patients.insert(0, S.SAMPLE, np.arange(len(patients)))
    return table, patients


def _check_same_patients(sets: Sequence[SetArrays]) -> None:
    n = {s.name: s.map_probs.shape[0] for s in sets}
    if len(set(n.values())) > 1:
        raise RashomonError(
            f"the sets hold different numbers of test samples ({n}); compare runs of one task"
        )
    for s in sets:
        if s.probs.ndim != 3 or s.probs.shape[1:] != s.map_probs.shape:
            raise RashomonError(
                f"set {s.name!r}: probabilities {s.probs.shape} do not match its MAP model's "
                f"{s.map_probs.shape}; re-run its sample stage"
            )


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
