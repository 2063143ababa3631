"""The validity study: model sets side by side against the retrained set (the ground truth).

For one task, several set sources (Laplace last-layer and all-weights, sampled and linearized,
Riemannian, MC dropout) and the retrained set (K independently trained seeds) are each an
ordinary run directory with a finished sample stage. On the same test patients and at one matched
ε (every set filtered by its own `in_set@ε` column of sample/per_model.csv; by default the ground
truth's ε as its sample stage recorded it), each set gets:

- ambiguity, discrepancy, mean disagreement and mean Rashomon capacity (rashomon.metrics);
- size-matched flag agreement, the headline: a patient is flagged ("arbitrary") when some model
  of a set flips the MAP model's label, so a larger set flags more whatever its quality. With
  h = ⌊T/2⌋ (T the ground truth's models within ε), each of R rounds draws h of the set's models
  and a random half of the ground truth, and scores the draw's flags against that half's (recall,
  precision); the ceiling is the same statistic of the other, disjoint half of the ground truth
  against the first. The validity figures are the ratios set / ceiling;
- per-patient flip rates (the share of a set's models that flip the MAP label): Spearman ρ with
  the ground truth's, and the average precision of the set's flip rate as a score for the ground
  truth's flags, beside its base rate;
- ambiguity growth: the expected share of patients flagged by k models drawn from the set
  (exact, hypergeometric) with a 5–95 % band over random draws, and the number of retrained
  models whose expected ambiguity reaches the set's full-size ambiguity;
- the full-size flag precision and recall (all of the set's models against all of the ground
  truth's: not comparable across set sizes, kept under names that say so);
- spread (max − min over the set's models) of each desideratum of evaluate/per_model_test.csv,
  and its ratio to the retrained set's spread;
- cost: the seconds of the sample stage (building and predicting the set) and every timing or
  memory figure of sample/summary.json.

Everything past loading is a pure function of arrays (`rashomon.metrics.agreement`).
Multilabel sets ([M, N, L] sigmoid probabilities, recognised by rows that do not sum to one) are
audited per label as binary tasks: each (patient, label) pair counts as one sample.

The capacity study (multiplicity against the width multiplier at fixed data) is a sweep over
`train.width`: `capacity_study(sweep_dir)` gives its table.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics.agreement import GROWTH_BAND as GROWTH_BAND
from rashomon.metrics.agreement import GROWTH_COLUMNS as GROWTH_COLUMNS
from rashomon.metrics.agreement import GROWTH_DRAWS as GROWTH_DRAWS
from rashomon.metrics.agreement import GROWTH_POINTS as GROWTH_POINTS
from rashomon.metrics.agreement import MATCHED_ROUNDS as MATCHED_ROUNDS
from rashomon.metrics.agreement import NOT_DESIDERATA as NOT_DESIDERATA
from rashomon.metrics.agreement import Comparison as Comparison
from rashomon.metrics.agreement import SetArrays as SetArrays
from rashomon.metrics.agreement import ambiguity_growth as ambiguity_growth
from rashomon.metrics.agreement import as_binary as as_binary
from rashomon.metrics.agreement import compare_sets as compare_sets
from rashomon.metrics.agreement import compare_with_truth as compare_with_truth
from rashomon.metrics.agreement import desideratum_spread as desideratum_spread
from rashomon.metrics.agreement import expected_ambiguity as expected_ambiguity
from rashomon.metrics.agreement import flag_agreement as flag_agreement
from rashomon.metrics.agreement import flag_ceiling as flag_ceiling
from rashomon.metrics.agreement import flip_matrix as flip_matrix
from rashomon.metrics.agreement import flip_rate_agreement as flip_rate_agreement
from rashomon.metrics.agreement import growth_grid as growth_grid
from rashomon.metrics.agreement import label_flips as label_flips
from rashomon.metrics.agreement import matched_flag_agreement as matched_flag_agreement
from rashomon.metrics.agreement import models_for_ambiguity as models_for_ambiguity
from rashomon.metrics.agreement import rank_agreement as rank_agreement
from rashomon.metrics.agreement import reach_phrase as reach_phrase
from rashomon.metrics.agreement import set_multiplicity as set_multiplicity
from rashomon.metrics.agreement import size_matched_agreement as size_matched_agreement
from rashomon.metrics.agreement import truth_halves as truth_halves

COMPARE_FILE = S.COMPARE_FILE
PER_PATIENT_FILE = S.PER_PATIENT_FILE
COMPARE_REPORT = "compare.html"
GROWTH_FILE = S.GROWTH_FILE
FRONTIER_FILE = "frontier.csv"
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
    `map_train_seconds` from the train stage (the MAP model's training, which every set
    shares; not `train_seconds`, the sample stage's own training of forks or seeds)."""
    cost: dict[str, float] = {}
    for stage, prefix in (("sample", ""), ("train", "map_train_")):
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


def set_seconds(cost: Mapping[str, float]) -> float:
    """What building a set cost, training included: the sample stage's seconds, with the
    training it did now replaced by what training its networks took when they were trained
    (`trained_seconds`: forks and retrained seeds read from the cache keep their cost)."""
    seconds = float(cost.get("seconds", math.nan))
    if "trained_seconds" in cost:
        seconds += float(cost["trained_seconds"]) - float(cost.get("train_seconds", 0.0))
    return seconds


def frontier_table(table: pd.DataFrame, truth_seconds: float | None = None) -> pd.DataFrame:
    """The cost–validity frontier of a compare table: per set its seconds (`set_seconds`),
    their share of the ground truth's (`truth_seconds` when given: e.g. measured apart, when
    the retrained networks were read from a cache that did not record their training), the
    size-matched recall and precision ratios, and whether no other set is both cheaper and at
    least as good on both ratios (`on_frontier`)."""
    cost_cols = {c: c.removeprefix("cost:") for c in table.columns if c.startswith("cost:")}
    rows = []
    for _, r in table.iterrows():
        cost = {v: r[k] for k, v in cost_cols.items() if pd.notna(r[k])}
        rows.append(
            {
                "set": r["set"],
                "ground_truth": bool(r["ground_truth"]),
                "seconds": set_seconds(cost),
                "flag_recall_ratio": r.get("flag_recall_ratio", math.nan),
                "flag_precision_ratio": r.get("flag_precision_ratio", math.nan),
            }
        )
    out = pd.DataFrame(rows)
    if truth_seconds is not None:
        out.loc[out["ground_truth"], "seconds"] = float(truth_seconds)
    truth = out[out["ground_truth"]]["seconds"]
    out["share_of_truth_seconds"] = out["seconds"] / truth.iloc[0] if len(truth) else math.nan
    sets = out[~out["ground_truth"]]
    best = []
    for _, r in sets.iterrows():
        others = sets[sets["set"] != r["set"]]
        dominated = (
            (others["seconds"] <= r["seconds"])
            & (others["flag_recall_ratio"] >= r["flag_recall_ratio"])
            & (others["flag_precision_ratio"] >= r["flag_precision_ratio"])
        ).any()
        best.append(not dominated)
    out.loc[~out["ground_truth"], "on_frontier"] = best
    return out


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
    rounds: int = MATCHED_ROUNDS,
    seed: int = 0,
    truth_seconds: float | None = None,
) -> pd.DataFrame:
    """Compare model sets with the retrained set on the same test patients at one ε.

    RUN_DIRS are run directories with a finished sample stage, or sweep directories (every cell
    that has one). The ground truth is --truth, else the one run whose source is `retrain`.
    ε defaults to the ground truth's ε as its sample stage recorded it (sample/summary.json).
    Writes OUT/compare.csv (one row per set, then the ground-truth row), OUT/per_patient.csv,
    OUT/growth.csv (ambiguity against the number of models, every set), OUT/frontier.csv (each
    set's cost against its size-matched validity, `frontier_table`; `truth_seconds` sets the
    ground truth's cost when its networks came from a cache without timings) and
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
    c = compare_with_truth(sets, truth_set, threshold, rounds=rounds, seed=seed)
    table = c.table
    table.insert(1, "epsilon", epsilon)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / COMPARE_FILE, index=False)
    c.patients.to_csv(out / PER_PATIENT_FILE, index=False)
    c.growth.to_csv(out / GROWTH_FILE, index=False)
    frontier = frontier_table(table, truth_seconds)
    frontier.to_csv(out / FRONTIER_FILE, index=False)
    from rashomon.report.compare_page import render_compare_page

    page = render_compare_page(table, c.patients, truth_set.name, c.growth, frontier)
    (out / COMPARE_REPORT).write_text(page, encoding="utf-8")
    _print_table(table, console)
    for line in validity_notes(table):
        console.print(line)
    console.print(
        f"compare table {out / COMPARE_FILE}, growth {out / GROWTH_FILE}, "
        f"report {out / COMPARE_REPORT}"
    )
    return table


def validity_notes(table: pd.DataFrame) -> list[str]:
    """Plain lines under the compare table: what the matched size is, which sets were drawn with
    replacement, and how many retrained models show each set's ambiguity."""
    truth = table[table["ground_truth"]].iloc[0]
    t, h = int(truth["models_in_set"]), int(truth["matched_models"])
    lines = [
        f"matched: {h} models of each set against {h} of the {t} retrained within ε, "
        f"{int(truth['matched_rounds'])} rounds; ratio = set / two retrained halves "
        f"(ceiling: recall {truth['flag_recall_ceiling']:.2f}, "
        f"precision {truth['flag_precision_ceiling']:.2f}); "
        "flag_*_full compare whole sets of different sizes"
    ]
    for _, row in table[~table["ground_truth"]].iterrows():
        if row["matched_with_replacement"]:
            lines.append(
                f"{row['set']}: only {int(row['models_in_set'])} models within ε, fewer than "
                f"{h}; its matched draws repeat models (drawn with replacement)"
            )
        reach = reach_phrase(row["retrained_models_for_ambiguity"], t, float(truth["ambiguity"]))
        lines.append(f"{row['set']}: ambiguity {row['ambiguity']:.3f} at full size; {reach}")
    return lines


def _print_table(table: pd.DataFrame, console: Any) -> None:
    from rich.table import Table

    shown = {
        "set": "set",
        "models_in_set": "in set",
        "flag_recall_ratio": "rec/ceil",
        "flag_precision_ratio": "prec/ceil",
        "flip_rate_spearman": "rho",
        "flip_rate_ap": "AP",
        "ambiguity": "ambig.",
        "ambiguity_matched": "ambig.@T",
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
