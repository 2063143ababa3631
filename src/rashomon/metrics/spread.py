"""Spread of per-model metrics across a Rashomon set, as one tidy table.

    per_model = per_model_table(probs, y, groups, attributes_derived)          # [M rows]
    map_row = per_model_table(ref_probs[None], y, groups, attributes_derived).iloc[0]
    tidy = spread_table(per_model, map_row, source="laplace", epsilon=0.01)
    write_table(tidy, "runs/x/spread.csv"); print(summarise(tidy))
    warning = null_control_warning(per_model, real_attribute="sex")          # str or None

`spread_table` columns: metric, group, source, epsilon, stat, value, attribute, derived.
`group` is "all" for overall metrics, "{attribute}={level}" for per-group metrics and the
attribute name for gaps; `derived` is True for proxy / null-control attributes, empty for overall
metrics. Stats per metric (NaN models, e.g. an undefined AUROC, are left out): n (models with a
value), mean, std (ddof 1), min, max, q05, q50, q95 (linear interpolation), map (the MAP
model's value), map_rank (percentile of the MAP value in the set: 100 · (#below + ½ #equal) / n),
ci95_low and ci95_high (percentile bootstrap of the mean over models, `n_boot` resamples, seeded;
the same resamples serve every metric).

Null-control rule (`null_control_warning`): a fairness gap under the `random` attribute measures
noise only. With spread = q95 − q05 of the gap across the set, warn when the null control's
spread is at least `ratio` (default 1) times the real attribute's, or when its mean gap is at
least `ratio` times the real attribute's mean gap: the real attribute's gap is then not
distinguishable from a random split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon.errors import RashomonError
from rashomon.metrics.table import split_column

STATS = (
    "n",
    "mean",
    "std",
    "min",
    "max",
    "q05",
    "q50",
    "q95",
    "map",
    "map_rank",
    "ci95_low",
    "ci95_high",
)
TIDY_COLUMNS = ("metric", "group", "source", "epsilon", "stat", "value", "attribute", "derived")
N_BOOT = 1000

MISSING_GAP_COLUMN = (
    "column {column!r} is not in the per-model table; compute it with per_model_table(..., "
    "groups={{{attribute!r}: codes}})"
)
MISSING_SPREAD_ROWS = (
    "the spread table has no {metric!r} rows for group {group!r}; build it from a per-model "
    "table with that attribute"
)


def _bootstrap_counts(m: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, m] how often each model is drawn in each resample (means become one matmul)."""
    draws = np.random.default_rng(seed).integers(0, m, size=(n_boot, m))
    counts = np.zeros((n_boot, m))
    np.add.at(counts, (np.repeat(np.arange(n_boot), m), draws.ravel()), 1.0)
    return counts


def spread_stats(
    values: Any, map_value: float | None = None, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, float]:
    """Stats of one per-model metric [M] (see module docstring)."""
    vals = np.asarray(values, dtype=np.float64).ravel()
    finite = vals[np.isfinite(vals)]
    boot = None
    if finite.size:
        boot = _bootstrap_counts(finite.size, n_boot, seed) @ finite / finite.size
    return _stats(finite, map_value, boot)


def _stats(
    finite: np.ndarray, map_value: float | None, boot: np.ndarray | None
) -> dict[str, float]:
    out = {s: float("nan") for s in STATS}
    out["n"] = float(finite.size)
    if finite.size == 0:
        return out
    q05, q50, q95 = np.quantile(finite, [0.05, 0.5, 0.95])
    out.update(
        mean=float(finite.mean()),
        std=float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
        min=float(finite.min()),
        max=float(finite.max()),
        q05=float(q05),
        q50=float(q50),
        q95=float(q95),
    )
    if map_value is not None and np.isfinite(map_value):
        below = float((finite < map_value).sum())
        equal = float((finite == map_value).sum())
        out["map"] = float(map_value)
        out["map_rank"] = 100.0 * (below + 0.5 * equal) / finite.size
    if boot is not None:
        lo, hi = np.quantile(boot, [0.025, 0.975])
        out["ci95_low"], out["ci95_high"] = float(lo), float(hi)
    return out


def _map_lookup(map_values: Any) -> Mapping[str, float]:
    if map_values is None:
        return {}
    if isinstance(map_values, pd.DataFrame):
        map_values = map_values.iloc[0]
    return {str(k): float(val) for k, val in dict(map_values).items()}


def spread_table(
    per_model: pd.DataFrame,
    map_values: Any = None,
    source: str = "",
    epsilon: float | None = None,
    attributes_derived: Mapping[str, bool] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Tidy spread table of every column of `per_model` (one row per model).

    `map_values`: the MAP model's values (a mapping, Series or one-row DataFrame with the same
    column names). `attributes_derived` defaults to `per_model.attrs["attributes_derived"]`."""
    derived_of = dict(per_model.attrs.get("attributes_derived", {}))
    derived_of.update(attributes_derived or {})
    lookup = _map_lookup(map_values)
    names = list(metrics) if metrics is not None else [str(c) for c in per_model.columns]
    matrix = per_model[names].to_numpy(dtype=np.float64)
    m = matrix.shape[0]
    all_finite = np.isfinite(matrix).all(axis=0)
    boot_all = np.zeros((0, len(names)))
    if m and all_finite.any():
        counts = _bootstrap_counts(m, n_boot, seed)
        boot_all = counts @ np.where(np.isfinite(matrix), matrix, 0.0) / m
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        column = matrix[:, j]
        if all_finite[j] and m:
            stats = _stats(column, lookup.get(name), boot_all[:, j])
        else:
            stats = spread_stats(column, lookup.get(name), n_boot, seed)
        metric, attribute, level = split_column(name)
        if attribute is None:
            group, derived = "all", None
        else:
            group = f"{attribute}={level}" if level is not None else attribute
            derived = bool(derived_of.get(attribute, False))
        for stat in STATS:
            rows.append(
                {
                    "metric": metric,
                    "group": group,
                    "source": source,
                    "epsilon": epsilon,
                    "stat": stat,
                    "value": stats[stat],
                    "attribute": attribute if attribute is not None else "",
                    "derived": derived,
                }
            )
    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write to CSV or Parquet, chosen by the suffix (.csv, .parquet)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame = table.copy()
        frame["derived"] = frame["derived"].astype("boolean")
        frame.to_parquet(out, index=False)
    else:
        table.to_csv(out, index=False)
    return out


def summarise(table: pd.DataFrame, metrics: Sequence[str] | None = None, group: str = "all") -> str:
    """A few plain lines, one per metric of `group`: MAP value and rank, set mean with its
    bootstrap CI, and the 5–95 % range across the set."""
    part = table[table["group"] == group]
    wanted = list(metrics) if metrics is not None else list(dict.fromkeys(part["metric"]))
    lines = []
    for metric in wanted:
        rows = part[part["metric"] == metric]
        if rows.empty:
            continue
        s = dict(zip(rows["stat"], rows["value"], strict=False))
        label = metric if group == "all" else f"{metric} [{group}]"
        lines.append(
            f"{label}: MAP {s['map']:.4f} (rank {s['map_rank']:.0f}%), set mean {s['mean']:.4f} "
            f"[95% CI {s['ci95_low']:.4f}, {s['ci95_high']:.4f}], "
            f"5-95% range {s['q05']:.4f}-{s['q95']:.4f} over {int(s['n'])} models"
        )
    return "\n".join(lines)


def _gap_stats(table: pd.DataFrame, gap: str, attribute: str) -> tuple[float, float]:
    """(q95 − q05, mean) of a gap, from a per-model table or a tidy spread table."""
    if {"metric", "group", "stat", "value"}.issubset(table.columns):
        rows = table[(table["metric"] == gap) & (table["group"] == attribute)]
        if rows.empty:
            raise RashomonError(MISSING_SPREAD_ROWS.format(metric=gap, group=attribute))
        s = dict(zip(rows["stat"], rows["value"], strict=False))
        return float(s["q95"] - s["q05"]), float(s["mean"])
    column = f"{gap}[{attribute}]"
    if column not in table.columns:
        raise RashomonError(MISSING_GAP_COLUMN.format(column=column, attribute=attribute))
    values = table[column].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    q05, q95 = np.quantile(values, [0.05, 0.95])
    return float(q95 - q05), float(values.mean())


def null_control_warning(
    table: pd.DataFrame,
    real_attribute: str,
    gap: str = "tpr_gap",
    null_attribute: str = "random",
    ratio: float = 1.0,
) -> str | None:
    """Plain-language warning when the null control's gap spreads (or sits) as high as the real
    attribute's (rule in the module docstring); None when the null control stays smaller."""
    null_spread, null_mean = _gap_stats(table, gap, null_attribute)
    real_spread, real_mean = _gap_stats(table, gap, real_attribute)
    reasons = []
    # Both zero means no gap anywhere: nothing to warn about.
    if np.isfinite(null_spread) and null_spread > 0 and null_spread >= ratio * real_spread:
        reasons.append(
            f"its 5-95% spread across the set ({null_spread:.3f}) is as large as under "
            f"{real_attribute!r} ({real_spread:.3f})"
        )
    if np.isfinite(null_mean) and null_mean > 0 and null_mean >= ratio * real_mean:
        reasons.append(
            f"its mean gap ({null_mean:.3f}) is as large as under {real_attribute!r} "
            f"({real_mean:.3f})"
        )
    if not reasons:
        return None
    return (
        f"Null control: the {gap} for the random attribute {null_attribute!r} is not smaller than "
        f"for {real_attribute!r}: " + " and ".join(reasons) + f". Differences in {gap} across "
        f"{real_attribute!r} groups here are within what a random split of the patients produces; "
        "do not read them as a fairness finding."
    )
