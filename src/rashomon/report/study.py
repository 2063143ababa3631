"""What the validity study measured for sets of the kind a run built: the headline's lower-bound
line ("sets of this kind found 47 % of the patients that retraining flags").

The figures live in `study_recall.csv` beside this module, copied from docs/results.md (each row
names its table); a run matches a row by dataset, architecture and the set's kind (source,
varied weights, scale). No row, no line: the report never borrows another task's figure.
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


def measured_recall(
    dataset: str, arch: str, sample_summary: dict[str, Any]
) -> dict[str, Any] | None:
    """The study's row for this run's dataset, architecture and kind of set, or None."""
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
    row = rows.iloc[-1]
    return {
        "recall": float(row["recall"]),
        "precision": float(row["precision"]),
        "retrained": int(row["retrained"]),
        "map_training": row["map_training"],
        "where": row["where"],
    }


def validity_line(dataset: str, arch: str, sample_summary: dict[str, Any]) -> str | None:
    """One sentence for the headline, or None when the study has no figure for this kind."""
    found = measured_recall(dataset, arch, sample_summary)
    if found is None:
        return None
    return (
        f"In the validity study on {dataset} ({arch}), sets of this kind found "
        f"{found['recall']:.0%} of the patients that {found['retrained']} retrained networks "
        f"flag (precision {found['precision']:.0%}; MAP trained {found['map_training']}; "
        f"{found['where']}): read the figure above as a lower bound."
    )
