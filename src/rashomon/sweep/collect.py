"""Collecting a sweep: one tidy table across its cells, the headline numbers per cell and each
headline number against a numeric grid axis (the capacity study is the one against
`train.width`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.sweep.spec import STATUS_FILE, STATUS_ONLY

TIDY_COLUMNS = ["stage", "metric", "group", "source", "epsilon", "stat", "value"]
# Numbers worth a column in the headline table, in this order, when a cell has them.
HEADLINE = (
    "val_accuracy",
    "test_accuracy",
    "test_auroc",
    "models_in_set",
    "ambiguity",
    "discrepancy",
    "mean_disagreement",
    "mean_capacity",
)


def grid_keys(status: pd.DataFrame) -> list[str]:
    """The columns of a status table that name a cell: 'cell' and its grid values."""
    return [c for c in status.columns if c not in STATUS_ONLY]


def cell_rows(run_dir: Path) -> pd.DataFrame:
    """The tidy result rows of one run directory: train and sample summaries (numbers), the
    evaluate stage's multiplicity.csv and metrics.csv when present."""
    frames = []
    for stage in ("train", "sample"):
        f = run_dir / stage / S.SUMMARY
        if f.exists():
            summary = json.loads(f.read_text())
            rows = [
                {"stage": stage, "metric": k, "group": "all", "stat": "value", "value": v}
                for k, v in summary.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            ]
            frames.append(pd.DataFrame(rows, columns=["stage", "metric", "group", "stat", "value"]))
    mult = S.TABLES["multiplicity"].path(run_dir)
    if mult.exists():
        df = pd.read_csv(mult)
        df.insert(0, "stage", "evaluate")
        df[S.STAT] = "value"  # multiplicity.csv holds single values, no spread statistics
        frames.append(df)
    metrics = S.TABLES["metrics"].path(run_dir)
    if metrics.exists():
        df = pd.read_csv(metrics)
        df.insert(0, "stage", "evaluate")
        frames.append(df)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=TIDY_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    for col in TIDY_COLUMNS:
        if col not in table:
            table[col] = pd.NA
    extra = [c for c in table.columns if c not in TIDY_COLUMNS]
    return table[TIDY_COLUMNS + extra]


def collect_sweep(out: Path) -> pd.DataFrame:
    """One tidy table across the cells of a sweep: the cell's grid values, then its rows."""
    out = Path(out)
    status_file = out / STATUS_FILE
    if not status_file.exists():
        raise RashomonError(f"{out} holds no sweep ({STATUS_FILE} missing); run `rashomon sweep`")
    status = pd.read_csv(status_file)
    keys = grid_keys(status)
    frames = []
    for _, row in status.iterrows():
        rows = cell_rows(Path(row["run_dir"]))
        if rows.empty:
            continue
        for i, k in enumerate(keys):
            rows.insert(i, k, row[k])
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=keys + TIDY_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def headline_table(tidy: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per cell: its grid values and the headline numbers it has (overall group, single
    values, not spread statistics)."""
    keys = [k for k in keys if k in tidy.columns]
    if tidy.empty:
        return pd.DataFrame(columns=["cell", *keys])
    overall = tidy["group"].isna() | (tidy["group"].astype(str) == "all")
    single = tidy["stat"].astype(str) == "value"
    rows = tidy[overall & single & tidy["metric"].isin(HEADLINE)]
    index = ["cell", *[k for k in keys if k != "cell"]]
    values = pd.to_numeric(rows["value"], errors="coerce")
    wide = (
        values.groupby([rows[c] for c in [*index, "metric"]], dropna=False, sort=False)
        .first()
        .unstack("metric")
        .reset_index()
    )
    wide.columns.name = None
    metrics = [m for m in HEADLINE if m in wide.columns]
    return wide[index + metrics]


def axis_study(
    headline: pd.DataFrame, axis: str, metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """Each headline number against one grid axis: mean, std and count over the other cells.
    Returns columns axis, metric, mean, std, n, sorted by the axis value."""
    metrics = [m for m in (metrics or HEADLINE) if m in headline.columns]
    if axis not in headline.columns:
        return pd.DataFrame(columns=[axis, "metric", "mean", "std", "n"])
    long = headline.melt(id_vars=[axis], value_vars=metrics, var_name="metric").dropna()
    stats = (
        long.groupby([axis, "metric"])["value"].agg(mean="mean", std="std", n="count").reset_index()
    )
    return stats.sort_values(["metric", axis]).reset_index(drop=True)


def numeric_axes(headline: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """Grid axes whose values are all numbers, with more than one value."""
    out = []
    for a in axes:
        if a not in headline.columns:
            continue
        values = pd.to_numeric(headline[a], errors="coerce")
        if values.notna().all() and values.nunique() > 1:
            out.append(a)
    return out


def axis_studies(headline: pd.DataFrame, axes: Sequence[str]) -> dict[str, pd.DataFrame]:
    """`axis_study` of every numeric grid axis with more than one value (empty studies left
    out), in grid order: what the sweep report draws."""
    studies = {a: axis_study(headline, a) for a in numeric_axes(headline, axes)}
    return {a: s for a, s in studies.items() if not s.empty}
