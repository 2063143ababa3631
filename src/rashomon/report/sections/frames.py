"""The tables the report's sections draw, computed from the run's tables: pure functions on
DataFrames and arrays, no prose and no markup (the sections write those)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.metrics.acquisition import MARGINAL, POOLED
from rashomon.report.fairness import undetectable
from rashomon.report.summary import rule_label
from rashomon.report.words import attr_label

SPLITS = ("train", "val", "test")

# --- task ------------------------------------------------------------------------------------


def class_counts(y: np.ndarray, n_classes: int) -> list[int]:
    """Patients per class; multilabel ([N, L] labels): positives per label."""
    y = np.asarray(y)
    if y.ndim == 2:
        return [int(v) for v in y.sum(axis=0)]
    return [int(v) for v in np.bincount(y.astype(int), minlength=n_classes)]


def balance_row(split: str, n: int, counts: list[int], names: list[str]) -> dict[str, Any]:
    """One split's row of the class-balance table: its size, then 'count (share %)' per class."""
    row: dict[str, Any] = {"split": split, "patients": n}
    for c, k in zip(names, counts, strict=False):
        row[c] = f"{k:,} ({100 * k / max(n, 1):.1f} %)"
    return row


def split_balance(
    task: Any, per_sample: pd.DataFrame | None, sizes: dict[str, int], names: list[str]
) -> pd.DataFrame:
    """The class balance of each split: from the task when it is loaded; otherwise the test
    split's from per_sample.csv and the other splits' sizes only (`sizes`, the checkpoint's)."""
    rows = []
    for split in SPLITS:
        if task is not None:
            s = task.split(split)
            rows.append(balance_row(split, len(s), class_counts(s.y.numpy(), len(names)), names))
        elif split == "test" and per_sample is not None and S.TRUE_LABEL in per_sample:
            counts = class_counts(per_sample[S.TRUE_LABEL].to_numpy(), len(names))
            rows.append(balance_row(split, len(per_sample), counts, names))
        elif split in sizes:
            rows.append({"split": split, "patients": sizes[split]})
    return pd.DataFrame(rows)


def attribute_table(
    attributes: dict[str, dict], per_sample: pd.DataFrame | None, binary: bool = False
) -> pd.DataFrame:
    """One row per patient attribute: its name, its levels with their test patients, for a
    binary task the test positives per level (their share of all test positives), and its
    description."""
    rows = []
    y = None
    if binary and per_sample is not None and S.TRUE_LABEL in per_sample:
        y = per_sample[S.TRUE_LABEL].to_numpy() == 1
    for name, info in attributes.items():
        levels = list(info.get("levels") or [])
        row = {"attribute": attr_label(name, info)}
        if per_sample is not None and name in per_sample:
            counts = per_sample[name].value_counts().to_dict()
            row["levels (test patients)"] = ", ".join(
                f"{lv} ({counts.get(i, 0)})" for i, lv in enumerate(levels)
            )
            if y is not None and y.any():
                codes = per_sample[name].to_numpy()
                pos = [int((y & (codes == i)).sum()) for i in range(len(levels))]
                row["test positives"] = ", ".join(
                    f"{lv} {k} ({100 * k / y.sum():.0f} %)"
                    for lv, k in zip(levels, pos, strict=True)
                )
        else:
            row["levels (test patients)"] = ", ".join(levels)
        row["description"] = info.get("description", "")
        rows.append(row)
    return pd.DataFrame(rows)


# --- multiplicity ----------------------------------------------------------------------------


def overall_multiplicity(mult: pd.DataFrame) -> pd.DataFrame:
    """multiplicity.csv's rows over all test patients: (metric, value)."""
    overall = mult[mult[S.GROUP].astype(str) == "all"]
    return overall[[S.METRIC, S.VALUE]].reset_index(drop=True)


def multiplicity_by_group(mult: pd.DataFrame) -> pd.DataFrame | None:
    """multiplicity.csv as one row per group and one column per metric (columns no group has
    dropped); None when it holds only all patients."""
    if mult[S.GROUP].nunique() <= 1:
        return None
    index = [c for c in mult.columns if c not in (S.METRIC, S.VALUE)]
    pivot = mult.pivot_table(
        index=index, columns=S.METRIC, values=S.VALUE, aggfunc="first", sort=False
    ).reset_index()
    return pivot.dropna(axis=1, how="all")


# --- the most arbitrary patients -------------------------------------------------------------


def range_columns(per_sample: pd.DataFrame) -> tuple[str, str]:
    """The viable prediction range drawn per patient: binary, the positive class's; multiclass,
    class 1's."""
    if S.VPR_LOW in per_sample:
        return S.VPR_LOW, S.VPR_HIGH
    return S.class_column(S.VPR_LOW, 1), S.class_column(S.VPR_HIGH, 1)


def most_arbitrary(per_sample: pd.DataFrame, low: str, high: str, n: int) -> pd.DataFrame:
    """The `n` arbitrary patients with the highest disagreement (ties: the widest range)."""
    order = per_sample.assign(_w=per_sample[high] - per_sample[low]).sort_values(
        [S.DISAGREEMENT, "_w"], ascending=False, kind="stable"
    )
    return order[per_sample[S.AMBIGUOUS].loc[order.index].to_numpy(bool)].head(n)


PATIENT_COLUMNS = (
    S.SAMPLE,
    S.TRUE_LABEL,
    S.MAP_LABEL,
    S.MAP_PROB,
    S.DISAGREEMENT,
    S.CAPACITY,
)


def patient_table(
    top: pd.DataFrame, names: list[str], low: str, high: str, patients: pd.DataFrame | None
) -> pd.DataFrame:
    """The patients' table: their labels named, their range, flip rate and (from decide's
    patients.csv, when present) what the ensembles do with them."""
    cols = [*PATIENT_COLUMNS, low, high, S.FLIP_RATE]
    tab = top[[c for c in cols if c in top]].copy()
    for c in (S.TRUE_LABEL, S.MAP_LABEL):
        tab[c] = [names[int(v)] if 0 <= int(v) < len(names) else str(v) for v in tab[c]]
    if patients is not None:
        extra = [c for c in patients.columns if c not in tab.columns or c == S.SAMPLE]
        extra = [c for c in extra if c not in (S.AMBIGUOUS, S.MAP_CORRECT)]
        tab = tab.merge(patients[extra], how="left", on=S.SAMPLE)
    return tab.reset_index(drop=True)


# --- desiderata ------------------------------------------------------------------------------

OVERALL_ORDER = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "auprc",
    "sensitivity",
    "specificity",
    "ece",
    "nll",
    "brier",
)
GAP_ORDER = (
    "accuracy_gap",
    "tpr_gap",
    "fpr_gap",
    "auroc_gap",
    "ece_gap",
    "equalized_odds_diff",
    "demographic_parity_diff",
)
MAX_STRIPS = 16
SPREAD_STATS = ("map", "map_rank", "mean", "std", "min", "q05", "q50", "q95", "max")


def desiderata_metrics(pm: pd.DataFrame) -> list[str]:
    """The metrics drawn as strips: overall ones, then fairness gaps per attribute; per-group
    values (`metric[attr=level]`) and per-label columns stay in the CSV."""
    cols = [
        c
        for c in pm.columns
        if c != S.MODEL
        and pd.api.types.is_numeric_dtype(pm[c])
        and pm[c].notna().any()
        and "=" not in c
        and not c.startswith(S.LABEL_PREFIX)
    ]

    def rank(c: str) -> tuple[int, int, str]:
        base = re.split(r"[\[:]", c)[0]
        if base in OVERALL_ORDER:
            return (0, OVERALL_ORDER.index(base), c)
        if base in GAP_ORDER:
            return (1, GAP_ORDER.index(base), c)
        return (2, 0, c)

    return sorted(cols, key=rank)[:MAX_STRIPS]


def spread_pivot(metrics: pd.DataFrame, epsilon: float) -> pd.DataFrame:
    """metrics.csv at the run's ε (every ε when none matches) as one row per metric and one
    column per statistic; per-group values stay in the CSV, overall metrics and gaps here."""
    at = metrics[np.isclose(metrics[S.EPSILON].astype(float), epsilon)]
    sub = at if len(at) else metrics
    sub = sub[~sub[S.GROUP].astype(str).str.contains("=")]
    index = [
        c for c in (S.METRIC, S.GROUP, S.SOURCE, S.EPSILON) if c == S.METRIC or sub[c].nunique() > 1
    ]
    pivot = sub.pivot_table(
        index=index, columns=S.STAT, values=S.VALUE, aggfunc="first", sort=False
    ).reset_index()
    order = [c for c in SPREAD_STATS if c in pivot.columns]
    return pivot[index + order + [c for c in pivot.columns if c not in index + order]]


# --- selection -------------------------------------------------------------------------------


def with_label_names(table: pd.DataFrame, labels: dict[int, str]) -> pd.DataFrame:
    """A multilabel decide table with its `label` column named by the task's class names and
    its desiderata read `label: desideratum`; other tables unchanged."""
    if S.LABEL not in table or not labels:
        return table
    t = table.copy()
    names = [labels.get(int(lab), f"label {lab}") for lab in t[S.LABEL]]
    t[S.LABEL] = names
    if S.DESIDERATUM in t:
        t[S.DESIDERATUM] = [f"{n}: {x}" for n, x in zip(names, t[S.DESIDERATUM], strict=True)]
        t = t.drop(columns=S.LABEL)
    return t


def real_verdicts(sel: pd.DataFrame) -> pd.DataFrame:
    """The rows of selection.csv whose gain or loss is real (not selection noise)."""
    return sel[sel[S.VERDICT].astype(str).str.startswith("real")]


def _signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−") if pd.notna(x) else "–"


def _plain(x: float) -> str:
    return f"{x:.3f}" if pd.notna(x) else "–"


def _p_value(p: float) -> str:
    if pd.isna(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


POWER_COLUMN = "detectable gain (80 % power)"


def selection_table(sel: pd.DataFrame) -> pd.DataFrame:
    """selection.csv as the page shows it, one row per desideratum: its direction, what the
    chosen model and the trained one score on validation, the test gain with its 95 % interval,
    the gain the test split detects at 80 % power, the Holm-adjusted p-value and the verdict —
    with, where the gain is not real and the detectable gain exceeds it, what the test split
    could not show (`fairness.undetectable`). Every column is in decide/selection.csv."""
    rows = []
    for _, r in sel.iterrows():
        arrow = " ↑" if bool(r[S.HIGHER_IS_BETTER]) else " ↓"
        verdict = str(r[S.VERDICT])
        bar = undetectable(r)
        if bar is not None:
            verdict += f": the test split could not show a gain smaller than {bar:.3f}"
        rows.append(
            {
                S.DESIDERATUM: f"{r[S.DESIDERATUM]}{arrow}",
                "chosen on validation (trained model)": (
                    f"{_plain(r[S.CHOSEN_VAL])} ({_plain(r[S.MAP_VAL])})"
                    if S.MAP_VAL in r
                    else _plain(r[S.CHOSEN_VAL])
                ),
                "test gain [95 % interval]": (
                    f"{_signed(r[S.TEST_GAIN])} [{_signed(r[S.GAIN_CI_LOW])}, "
                    f"{_signed(r[S.GAIN_CI_HIGH])}]"
                ),
                POWER_COLUMN: _plain(r.get(S.MIN_DETECTABLE_GAIN, float("nan"))),
                "Holm p": _p_value(r.get(S.GAIN_P_HOLM, float("nan"))),
                S.VERDICT: verdict,
            }
        )
    return pd.DataFrame(rows)


def selection_vs_set_table(side_by_side: pd.DataFrame) -> pd.DataFrame:
    """validate/selection_vs_set.csv as the page shows it, one row per desideratum: for the
    set and for the retrained truth, the test gain of the model chosen on validation [95 %
    interval], the gain the test split detects at 80 % power, the verdict and the spread of
    the desideratum's test values across the set (q95 − q05); whether the verdicts agree."""
    rows = []
    for _, r in side_by_side.iterrows():
        arrow = " ↑" if bool(r[S.HIGHER_IS_BETTER]) else " ↓"
        row = {S.DESIDERATUM: f"{r[S.DESIDERATUM]}{arrow}"}
        for who, name in ((S.SET_SIDE, "set"), (S.TRUTH_SIDE, "retrained")):
            side = {c: r.get(S.side_column(who, c), float("nan")) for c in S.SIDE_BY_SIDE}
            selected = pd.notna(side[S.VERDICT])
            gain = (
                f"{_signed(side[S.TEST_GAIN])} [{_signed(side[S.GAIN_CI_LOW])}, "
                f"{_signed(side[S.GAIN_CI_HIGH])}]"
            )
            row[f"{name}: test gain [95 %]"] = gain if selected else "not selected for"
            row[f"{name}: detectable gain"] = _plain(side[S.MIN_DETECTABLE_GAIN])
            row[f"{name}: verdict"] = str(side[S.VERDICT]) if selected else "–"
            row[f"{name}: test spread"] = _plain(side[S.TEST_SPREAD])
        row["verdicts agree"] = "yes" if bool(r.get(S.VERDICTS_AGREE, False)) else "no"
        rows.append(row)
    return pd.DataFrame(rows)


def within_stratum_table(table: pd.DataFrame, attributes: dict[str, dict]) -> pd.DataFrame:
    """evaluate/within_stratum.csv as the page shows it: per attribute, acquisition attribute
    and gap, the trained model's gap over all patients, within each stratum (with the patients
    its rates count) and pooled, and the set's 5–95 % range of the pooled gap."""
    rows = []
    keys = [S.ATTRIBUTE, S.STRATUM_ATTRIBUTE, S.METRIC]
    for (attribute, stratum, metric), g in table.groupby(keys, sort=False):
        by = {str(r[S.STRATUM]): r for _, r in g.iterrows()}
        if MARGINAL not in by or POOLED not in by:
            continue
        levels = [
            f"{name} {_plain(r[S.MAP_GAP])} ({int(r[S.RATE_PATIENTS])})"
            for name, r in by.items()
            if name not in (MARGINAL, POOLED)
        ]
        pooled = by[POOLED]
        rows.append(
            {
                "attribute": attr_label(str(attribute), attributes.get(str(attribute), {})),
                "within": attr_label(str(stratum), attributes.get(str(stratum), {})),
                "gap": str(metric),
                "all patients": _plain(by[MARGINAL][S.MAP_GAP]),
                "per stratum (patients its rates count)": ", ".join(levels),
                "pooled": _plain(pooled[S.MAP_GAP]),
                "pooled, set 5–95 %": (
                    f"{_plain(pooled[S.SET_GAP_Q05])}–{_plain(pooled[S.SET_GAP_Q95])}"
                ),
            }
        )
    return pd.DataFrame(rows)


# --- ensembles -------------------------------------------------------------------------------


def ensemble_percentages(ens: pd.DataFrame, column: str) -> pd.DataFrame:
    """One ensembles.csv column in % (one decimal), one row per k (and combination rule, when
    several) and one column per abstention rule."""
    t = ens.copy()
    t["rule "] = [rule_label(r, th) for r, th in zip(t[S.RULE], t[S.THRESHOLD], strict=True)]
    index = [S.COMBINE] if t[S.COMBINE].nunique() > 1 else []
    index.append(S.K)
    piv = t.pivot_table(index=index, columns="rule ", values=column, aggfunc="mean", sort=False)
    piv = (100 * piv).round(1).reset_index()
    piv[S.K] = piv[S.K].astype(int)
    piv.columns.name = None
    return piv


# --- robustness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RobustnessCurves:
    """robustness.csv's curves for one metric: corruptions by severity, attacks by budget."""

    metric: str  # accuracy when robustness.csv has it
    corruptions: pd.DataFrame  # severity 0 = the clean images, on every corruption's curve
    attacks: pd.DataFrame  # the attack budget ε as the severity


def robustness_curves(rob: pd.DataFrame) -> RobustnessCurves:
    """robustness.csv's curves for one metric. The set's band under attack is the transfer
    attacks from the MAP model when present (white-box attacks on set members otherwise)."""
    metric = "accuracy" if (rob[S.METRIC] == "accuracy").any() else str(rob[S.METRIC].iloc[0])
    rob = rob[rob[S.METRIC] == metric]
    fam = rob[S.FAMILY].astype(str)
    clean = rob[fam == "clean"]
    rob = rob[fam.isin(["corruption", "attack"])].copy()
    att_rows = rob[S.FAMILY] == "attack"
    rob.loc[att_rows, S.SEVERITY] = rob.loc[att_rows, S.EPSILON]
    transfer = att_rows & (rob[S.MODE] == "transfer")
    if transfer.any():
        rob = rob[~(att_rows & (rob[S.MODEL] != -1) & ~transfer)]
    corr_names = rob.loc[rob[S.FAMILY] == "corruption", S.CORRUPTION].unique()
    if len(clean) and len(corr_names):
        zero = [
            clean.assign(**{S.CORRUPTION: c, S.SEVERITY: 0, S.FAMILY: "corruption"})
            for c in corr_names
        ]
        rob = pd.concat([rob, *zero], ignore_index=True)
    is_attack = rob[S.FAMILY] == "attack"
    return RobustnessCurves(metric, rob[~is_attack], rob[is_attack])


# --- run -------------------------------------------------------------------------------------


def stage_rows(records: dict[str, dict]) -> pd.DataFrame:
    """stages.json as one row per stage: when it finished and how long it took."""
    return pd.DataFrame(
        [
            {"stage": k, "finished": v.get("finished", ""), "seconds": v.get("seconds")}
            for k, v in records.items()
        ]
    )
