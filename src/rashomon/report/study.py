"""What the validity study measured for sets of the kind a run built: the headline's lower-bound
line ("sets of this kind found 47 % of the patients that retraining flags").

The figures live in `study_recall.csv` beside this module, copied from docs/results.md (each row
names its table, and how its MAP model was trained: epochs or steps, dropout, class weights); a
run matches a row by dataset, architecture and the set's kind (source, varied weights, scale),
preferring the row whose MAP model was trained like the run's. No row, no line: the report never
borrows another task's figure, and it says where the run's training differs from the study's.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

STUDY_FILE = Path(__file__).with_name("study_recall.csv")


@lru_cache(maxsize=1)
def study_table() -> pd.DataFrame:
    return pd.read_csv(STUDY_FILE, dtype=str, keep_default_na=False)


def set_kind(sample_summary: dict[str, Any]) -> tuple[str, str, str]:
    """(source, varied weights, scale) of a sample stage's record."""
    options = sample_summary.get("options") or {}
    source = str(sample_summary.get("source", ""))
    subset = "" if source in ("dropout", "retrain", "swag", "multimode") else "last_layer"
    subset = str(options.get("subset", subset) or subset)
    return source, subset, str(options.get("scale", "posterior") or "posterior")


def _number(x: Any) -> float | None:
    if x is None or str(x).strip() in ("", "None", "null", "nan"):
        return None
    return float(x)


def training(train: dict[str, Any]) -> dict[str, str] | None:
    """How a MAP model was trained, in words per aspect (budget, dropout, class weights), from a
    run's `train` config section or a study row; None when the section says nothing of it."""
    epochs, steps = _number(train.get("epochs")), _number(train.get("steps"))
    if epochs is None and steps is None:
        return None
    budget = f"{epochs:g} epochs" if epochs is not None else f"{steps:g} steps"
    dropout = _number(train.get("dropout"))
    weighted = str(train.get("class_weights", False)).lower() == "true"
    return {
        "budget": budget,
        "dropout": f"dropout {dropout:g}" if dropout else "no dropout",
        "class weights": "class weights" if weighted else "no class weights",
    }


def differences(run: dict[str, str] | None, study: dict[str, str]) -> list[str]:
    """Where the run's training differs from the study's: '300 steps, not 1000 steps'."""
    if run is None:
        return []
    out = []
    for aspect, theirs in study.items():
        ours = run[aspect]
        if ours == theirs:
            continue
        if aspect == "dropout":
            theirs = theirs.removeprefix("dropout ")
        elif aspect == "class weights":
            theirs = "none" if theirs.startswith("no ") else "weighted"
        out.append(f"{ours}, not {theirs}")
    return out


def measured_recall(
    dataset: str, arch: str, sample_summary: dict[str, Any], train: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The study's row for this run's dataset, architecture and kind of set, or None; of
    several, the one trained most like the run (`train`: its config's train section), the last
    on a tie."""
    source, subset, scale = set_kind(sample_summary)
    t = study_table()
    rows = t[
        (t["dataset"] == str(dataset).lower())
        & (t["arch"] == str(arch))
        & (t["source"] == source)
        & (t["subset"] == subset)
        & (t["scale"] == scale)
    ]
    if rows.empty:
        return None
    run = training(train or {})
    found = []
    for _, row in rows.iterrows():
        study = training(row.to_dict())
        found.append((study, differences(run, study), row))
    fewest = min(len(d) for _, d, _ in found)
    study, diffs, row = [f for f in found if len(f[1]) == fewest][-1]
    if train and train.get("weights"):
        diffs = ["a given network, not one trained here", *diffs]
    return {
        "recall": float(row["recall"]),
        "precision": float(row["precision"]),
        "retrained": int(row["retrained"]),
        "map_training": ", ".join(study.values()),
        "differences": diffs,
        "where": row["where"],
    }


def validity_line(
    dataset: str, arch: str, sample_summary: dict[str, Any], train: dict[str, Any] | None = None
) -> str | None:
    """One sentence for the headline, or None when the study has no figure for this kind. It
    says how the study's MAP model was trained and, given the run's `train` config section,
    where the run's training differs."""
    found = measured_recall(dataset, arch, sample_summary, train)
    if found is None:
        return None
    differs = ""
    if found["differences"]:
        differs = (
            f"; this run's MAP model was trained differently ({'; '.join(found['differences'])}),"
            " so the figure is only indicative"
        )
    return (
        f"In the validity study on {dataset} ({arch}, MAP model trained for "
        f"{found['map_training']}), sets of this kind found {found['recall']:.0%} of the patients "
        f"that {found['retrained']} retrained networks flag (precision {found['precision']:.0%}; "
        f"{found['where']}){differs}: read the figure above as a lower bound."
    )
