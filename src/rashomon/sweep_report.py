"""The sweep report: one self-contained HTML page (plots embedded) over a sweep's cells.

It shows every cell's status, a headline table (one row per cell: scores of the MAP model, the
size of the Rashomon set and the set's multiplicity) and, for every numeric grid axis with more
than one value (a width multiplier, an ε, ...), each headline number against that axis: mean and
standard deviation over the other cells (seeds, datasets, ...). The capacity study is the plot
against `train.width`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# Numbers worth a column in the headline table, in this order, when a cell has them.
HEADLINE = (
    "val_accuracy",
    "test_accuracy",
    "test_auroc",
    "kept",
    "ambiguity",
    "discrepancy",
    "mean_disagreement",
    "mean_capacity",
)
STATUS_COLUMNS = ("cell", "status", "seconds", "peak_rss_mb", "error")


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


def _plot_axis(study: pd.DataFrame, axis: str) -> str:
    """PNG (base64) of every metric against `axis`, one small panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(study["metric"]))
    cols = min(4, len(metrics))
    rows = int(np.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        s = study[study["metric"] == metric]
        x = pd.to_numeric(s[axis])
        ax.errorbar(x, s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(axis, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(
        index=False,
        na_rep="",
        float_format=lambda v: f"{v:.4g}",
        border=0,
        classes="t",
        escape=True,
    )


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table.t{border-collapse:collapse;font-size:13px;margin:1em 0}
table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
table.t th{background:#f4f4f4}.failed{color:#b00}h2{margin-top:1.6em}"""


def render_sweep_report(
    status: pd.DataFrame, tidy: pd.DataFrame, axes: Sequence[str], title: str
) -> str:
    """The HTML page as a string."""
    keys = [a for a in axes if a in status.columns]
    counts = status["status"].value_counts().to_dict()
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        "<p>"
        + ", ".join(f"{html.escape(str(k))}: {v}" for k, v in sorted(counts.items()))
        + f" (of {len(status)} cells)</p>",
        "<h2>Cells</h2>",
        _table_html(
            status[
                ["cell", *keys, *[c for c in STATUS_COLUMNS if c != "cell" and c in status.columns]]
            ]
        ),
    ]
    head = headline_table(tidy, ["cell", *keys])
    if len(head.columns) > 1 + len(keys):
        parts += [
            "<h2>Headline numbers</h2>",
            "<p>MAP model scores (train stage), Rashomon set size and multiplicity of the "
            "set on the test split (evaluate stage), per cell.</p>",
            _table_html(head),
        ]
        for axis in numeric_axes(head, keys):
            study = axis_study(head, axis)
            if study.empty:
                continue
            parts += [
                f"<h2>Against {html.escape(axis)}</h2>",
                "<p>Mean ± standard deviation over the other cells.</p>",
                f"<img alt='metrics against {html.escape(axis)}' "
                f"src='data:image/png;base64,{_plot_axis(study, axis)}'>",
                _table_html(study),
            ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_sweep_report(
    out: Path, status: pd.DataFrame, tidy: pd.DataFrame, axes: Sequence[str]
) -> Path:
    """Write OUT/sweep.html and return its path."""
    from rashomon.sweep import REPORT_FILE

    path = Path(out) / REPORT_FILE
    page = render_sweep_report(status, tidy, axes, title=f"rashomon sweep: {Path(out).name}")
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
