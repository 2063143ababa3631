"""What the validity study measured for sets of the kind a run built: the headline's line for a
run without a validate stage.

The figures live in `study_recall.csv` beside this module, copied from docs/results.md (each row
names its table, and how its MAP model was trained: epochs or steps, dropout, class weights). A
row holds the size-matched figures (`flag_recall_ratio`, `flag_precision_ratio`: h of the set's
models against h retrained networks, over two retrained halves' ceiling; `matched_models` = h)
once they are measured, and the full-size ones of the older study (`flag_recall_full`,
`flag_precision_full`: the whole set against all retrained networks, which grow with the set's
size whatever its quality). A run matches a row by dataset, architecture and the set's kind
(source, varied weights, scale), preferring a size-matched row, then the row whose MAP model was
trained like the run's. No row, no line: the report never borrows another task's figure, and it
says where the run's training differs from the study's.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

STUDY_FILE = Path(__file__).with_name("study_recall.csv")
STUDY_COLUMNS = (
    "dataset",
    "arch",
    "source",
    "subset",
    "scale",
    "flag_recall_ratio",
    "flag_precision_ratio",
    "matched_models",
    "flag_recall_full",
    "flag_precision_full",
    "retrained",
    "epochs",
    "steps",
    "dropout",
    "class_weights",
    "where",
)
DEFAULT_LABELS = "labels.csv"


def dataset_key(data: dict[str, Any]) -> str:
    """How the study names a run's task, from its config's data section: a MedMNIST name as
    given, a folder task by its folder's name, with the label file's stem when it is not the
    default one (HAM10000's binary and seven-class tasks differ): 'ham10000:labels-binary'."""
    dataset = str(data.get("dataset", "")).rstrip("/\\")
    name = Path(dataset).name.lower() if ("/" in dataset or "\\" in dataset) else dataset.lower()
    labels = data.get("labels")
    if labels and Path(str(labels)).name != DEFAULT_LABELS:
        name += f":{Path(str(labels)).stem}"
    return name


@lru_cache(maxsize=1)
def study_table() -> pd.DataFrame:
    """The study's rows (every column as text; empty where a figure was not measured)."""
    return pd.read_csv(STUDY_FILE, dtype=str, keep_default_na=False)


def set_kind(sample_summary: dict[str, Any]) -> tuple[str, str, str]:
    """(source, varied weights, scale) of a sample stage's record."""
    options = sample_summary.get("options") or {}
    source = str(sample_summary.get("source", ""))
    if source in ("dropout", "retrain", "perturb") or (
        source == "fork" and options.get("around", "none") == "none"
    ):
        return source, "", str(options.get("scale", "posterior") or "posterior")
    subset = "" if source in ("swag", "multimode") else "last_layer"
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
    weights = str(train.get("class_weights", False)).lower()
    return {
        "budget": budget,
        "dropout": f"dropout {dropout:g}" if dropout else "no dropout",
        "class weights": CLASS_WEIGHT_WORDS.get(weights, "no class weights"),
    }


CLASS_WEIGHT_WORDS = {
    "true": "class weights",
    "auto": "class weights when imbalanced",
    "false": "no class weights",
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
            theirs = "none" if theirs.startswith("no ") else theirs.removeprefix("dropout ")
        elif aspect == "class weights":
            theirs = "none" if theirs.startswith("no ") else theirs.removeprefix("class weights ")
            theirs = "weighted" if theirs == "class weights" else theirs
        out.append(f"{ours}, not {theirs}")
    return out


def size_matched(row: dict[str, Any]) -> bool:
    """Whether a study row holds the size-matched ratios (rows of the older study do not)."""
    return _number(row.get("flag_recall_ratio")) is not None


def measured_recall(
    dataset: str, arch: str, sample_summary: dict[str, Any], train: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The study's row for this run's dataset, architecture and kind of set, or None: of
    several, a size-matched one first, then the one trained most like the run (`train`: its
    config's train section), the last on a tie. Undefined figures are None."""
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
    matched = rows[rows.apply(lambda r: size_matched(r.to_dict()), axis=1)]
    rows = matched if len(matched) else rows
    run = training(train or {})
    found = []
    for _, row in rows.iterrows():
        study = training(row.to_dict()) or {}  # a row that records no training: nothing to compare
        found.append((study, differences(run, study), row))
    fewest = min(len(d) for _, d, _ in found)
    study, diffs, row = [f for f in found if len(f[1]) == fewest][-1]
    if train and train.get("weights"):
        diffs = ["a given network, not one trained here", *diffs]
    figures = (
        "flag_recall_ratio",
        "flag_precision_ratio",
        "matched_models",
        "flag_recall_full",
        "flag_precision_full",
    )
    return {
        "size_matched": size_matched(row.to_dict()),
        **{key: _number(row[key]) for key in figures},
        "retrained": int(row["retrained"]),
        "map_training": ", ".join(study.values()),
        "differences": diffs,
        "where": row["where"],
    }


def _full_size_clause(found: dict[str, Any], differs: str) -> str:
    """The older study's full-size figures in words, named as such, then which way the run's
    share leans: a whole set flagged recall / precision times the retrained networks' patients."""
    recall, precision = found["flag_recall_full"], found["flag_precision_full"]
    lean = "those sets flagged more patients than retraining did"
    if recall < precision:
        lean = "those sets flagged fewer patients than retraining: read the share above as a lower "
        lean += "bound"
    return (
        f"whole sets of this kind flagged {recall:.0%} of the patients that {found['retrained']} "
        f"retrained networks flag, with precision {precision:.0%} ({found['where']}): full-size "
        "figures, which grow with the set's size whatever its quality, not size-matched ones "
        f"(not yet measured for this kind of set){differs}; {lean}"
    )


def validity_line(
    dataset: str, arch: str, sample_summary: dict[str, Any], train: dict[str, Any] | None = None
) -> str | None:
    """One sentence for the headline, or None when the study has no figure for this kind: the
    size-matched ratios when the study has them, else the older study's full-size figures,
    named as such. It says how the study's MAP model was trained and, given the run's `train`
    config section, where the run's training differs."""
    found = measured_recall(dataset, arch, sample_summary, train)
    if found is None:
        return None
    differs = ""
    if found["differences"]:
        differs = (
            f"; this run's MAP model was trained differently ({'; '.join(found['differences'])}),"
            " so the figure is only indicative"
        )
    setup = f"{dataset} ({arch}, MAP model trained for {found['map_training']})"
    if found["size_matched"]:
        h, precision = found["matched_models"], found["flag_precision_ratio"]
        precise = (
            f"{precision:.2f} of its precision" if precision is not None else "undefined precision"
        )
        at = f"{h:g} of its models against {h:g} retrained networks, " if h is not None else ""
        return (
            f"In the validity study on {setup}, a set of this kind reached "
            f"{found['flag_recall_ratio']:.2f} of the retrained ceiling's flag recall and "
            f"{precise} ({at}two halves of {found['retrained']} retrained networks giving the "
            f"ceiling; {found['where']}){differs}."
        )
    clause = _full_size_clause(found, differs)
    return f"In an older round of the validity study on {setup}, {clause}."
