"""The validity study's tables and plots for one dataset, from `rashomon compare`'s folder and,
when measured, the cells' costs timed alone (benchmarks/bench_study_costs.py).

    .venv/bin/python scripts/study_validity.py runs/study/compare-breast \
        [--costs runs/study/costs-breast.csv] --out runs/study/validity-breast-study

Writes `study.csv` (per cell: size-matched recall and precision over the ceiling, flip-rate ρ
and AP, ambiguity at the truth's size against the truth's, spread ratios of the desiderata,
seconds and their share of the truth's, whether the cell meets each part of the goal),
`frontier.png` (cost against validity) and `growth.png` (the truth's ambiguity growth and the
three sets closest to it), and prints the table as Markdown for docs/results.md.

The goal, from the issue: size-matched recall and precision ≥ 0.9 of the ceiling, ambiguity at
the truth's size within ±20 % of the truth's, spread ratios 0.7–1.3, at ≤ 20 % of the truth's
cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

GOAL_RATIO = 0.9
GOAL_AMBIGUITY = 0.2
GOAL_SPREAD = (0.7, 1.3)
GOAL_COST = 0.2
SPREADS = ("accuracy", "auroc", "ece", "corruption_accuracy")


def cell_name(run_dir: str) -> str:
    """A sweep cell's label from its run directory (the part after 'set-')."""
    return Path(str(run_dir)).name.split("set-")[-1]


def training_unit_costs(compare: pd.DataFrame) -> pd.DataFrame:
    """Each cell's cost in the unit every cell shares, measured in the same run: the seconds the
    sweep took to train its MAP model (train/summary.json). A set that trains networks costs
    the share of a training each one takes (a fork at spawn s: 1 − s; a retrained seed or a
    multimode mode: 1) plus its sample stage's seconds beyond training; any other set its sample
    stage's seconds. The truth is its retrained networks. Seconds measured on a loaded machine
    inflate alike, so the shares of the truth's cost hold where the seconds do not."""
    import json

    rows = []
    for _, r in compare.iterrows():
        run = Path(r["run_dir"])
        unit = json.loads((run / "train" / "summary.json").read_text())["seconds"]
        sample = json.loads((run / "sample" / "summary.json").read_text())
        options = sample.get("options") or {}
        beyond = float(sample["seconds"]) - float(sample.get("train_seconds") or 0.0)
        source = sample.get("source")
        if source == "retrain":
            trainings = float(sample.get("models", r["models"]))
            beyond = 0.0  # the truth's networks, read from the cache here
        elif source == "fork":
            forks = float(options.get("forks") or len(sample.get("seeds") or []) or r["models"])
            spawn = float(options.get("spawn", 0.5))
            # spawn 1 fine-tunes the trained weights for a `finetune` share of the budget
            share = float(options.get("finetune", 0.1)) if spawn >= 1 else 1.0 - spawn
            trainings = forks * share
        elif source == "multimode":
            tried = sample.get("seeds_tried") or (sample.get("meta") or {}).get("seeds_tried")
            trainings = float(tried if isinstance(tried, int | float) else options["modes"] - 1)
        else:
            trainings = 0.0
        rows.append(
            {
                "cell": cell_name(r["run_dir"]),
                "trainings": trainings,
                "seconds": trainings * unit + beyond,
                "unit_seconds": unit,
            }
        )
    return pd.DataFrame(rows)


def study_table(compare: pd.DataFrame, costs: pd.DataFrame | None) -> pd.DataFrame:
    """One row per cell with the goal's figures; the truth's row last. Costs: `costs` (timed
    alone, benchmarks/bench_study_costs.py) when given, else `training_unit_costs`."""
    from rashomon.compare import frontier_table

    table = compare.copy()
    table["cell"] = [cell_name(r) for r in table["run_dir"]]
    if costs is None:
        costs = training_unit_costs(compare)
    if costs is not None:
        seconds = dict(
            zip(costs["cell"].map(lambda c: c.split("set-")[-1]), costs["seconds"], strict=False)
        )
        table["cost:seconds"] = table["cell"].map(seconds)
        table = table.drop(
            columns=[c for c in table if c.startswith("cost:") and c != "cost:seconds"]
        )
    frontier = frontier_table(table).set_index("set")
    truth = table[table["ground_truth"].astype(bool)].iloc[0]
    # fairness gaps across real patient attributes (the derived proxies and the null control
    # aside), where the data has them
    real_gaps = [
        c.removeprefix("spread_ratio:")
        for c in table
        if c.startswith("spread_ratio:")
        and c.split("[")[0].endswith(("tpr_gap", "dp_gap", "accuracy_gap"))
        and not any(f"[{d}" in c for d in ("intensity", "random"))
        and "=" not in c
    ]
    rows = []
    for _, r in table.iterrows():
        f = frontier.loc[r["set"]]
        # at matched size (h of the set's models against halves of the truth) where compare
        # wrote it: a full-size range grows with the number of models it spans
        prefix = (
            "spread_matched_ratio:"
            if any(c.startswith("spread_matched_ratio:") for c in table)
            else "spread_ratio:"
        )
        spread = {
            s: r.get(f"{prefix}{s}", np.nan)
            for s in (*SPREADS, *real_gaps)
            if f"{prefix}{s}" in table
        }
        amb_rel = r["ambiguity_matched"] / truth["ambiguity"] - 1 if truth["ambiguity"] else np.nan
        row = {
            "cell": r["cell"],
            "models_in_set": int(r["models_in_set"]) if "models_in_set" in r else np.nan,
            "recall_ratio": r["flag_recall_ratio"],
            "precision_ratio": r["flag_precision_ratio"],
            "flip_rate_rho": r["flip_rate_spearman"],
            "flip_rate_ap": r["flip_rate_ap"],
            "ambiguity_at_truth_size": r["ambiguity_matched"],
            "ambiguity_vs_truth": amb_rel,
            **{f"spread:{k}": v for k, v in spread.items()},
            "seconds": f["seconds"],
            "share_of_truth_cost": f["share_of_truth_seconds"],
            "on_frontier": f.get("on_frontier", np.nan),
            "ground_truth": bool(r["ground_truth"]),
        }
        spreads = [v for v in spread.values() if pd.notna(v)]
        row["goal_validity"] = bool(
            row["recall_ratio"] >= GOAL_RATIO and row["precision_ratio"] >= GOAL_RATIO
        )
        row["goal_ambiguity"] = bool(abs(amb_rel) <= GOAL_AMBIGUITY)
        row["goal_spread"] = bool(spreads) and all(
            GOAL_SPREAD[0] <= v <= GOAL_SPREAD[1] for v in spreads
        )
        row["goal_cost"] = bool(row["share_of_truth_cost"] <= GOAL_COST)
        row["goal_met"] = all(row[k] for k in ("goal_validity", "goal_ambiguity", "goal_spread"))
        row["goal_met"] = row["goal_met"] and row["goal_cost"]
        rows.append(row)
    return pd.DataFrame(rows)


def growth_plot(growth: pd.DataFrame, study: pd.DataFrame, compare: pd.DataFrame, out: Path):
    """The truth's ambiguity growth and the three sets closest to it (by the smaller of their
    recall and precision ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = dict(zip([cell_name(r) for r in compare["run_dir"]], compare["set"], strict=False))
    sets = study[~study["ground_truth"]].copy()
    sets["score"] = sets[["recall_ratio", "precision_ratio"]].min(axis=1)
    best = sets.sort_values("score", ascending=False).head(3)
    truth = compare[compare["ground_truth"].astype(bool)]["set"].iloc[0]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, label, color in [(truth, "retrained (truth)", "black")] + [
        (names[c], c, col)
        for c, col in zip(best["cell"], ("#1f77b4", "#ff7f0e", "#2ca02c"), strict=False)
    ]:
        g = growth[growth["set"] == name].sort_values("k")
        ax.plot(g["k"], 100 * g["ambiguity"], color=color, label=label)
        ax.fill_between(
            g["k"],
            100 * g["ambiguity_p05"],
            100 * g["ambiguity_p95"],
            color=color,
            alpha=0.15,
            lw=0,
        )
    ax.set_xscale("log")
    ax.set(xlabel="models drawn (k)", ylabel="test patients flagged (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "growth.png", dpi=120)
    plt.close(fig)


def main() -> None:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("compare_dir", type=Path)
    ap.add_argument("--costs", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--report-rows",
        metavar="WHERE",
        default=None,
        help="also write report_rows.csv: the size-matched rows for the report's study table "
        "(src/rashomon/report/study_recall.csv), WHERE naming the docs/results.md section",
    )
    args = ap.parse_args()
    from rashomon.compare import frontier_table
    from rashomon.report import plots
    from rashomon.report.kit import png_bytes

    args.out.mkdir(parents=True, exist_ok=True)
    compare = pd.read_csv(args.compare_dir / "compare.csv")
    costs = pd.read_csv(args.costs) if args.costs else None
    study = study_table(compare, costs)
    study.to_csv(args.out / "study.csv", index=False)
    frontier = study.rename(
        columns={
            "cell": "set",
            "recall_ratio": "flag_recall_ratio",
            "precision_ratio": "flag_precision_ratio",
        }
    )
    frontier = frontier_table(
        frontier.assign(**{"cost:seconds": frontier["seconds"]})[
            ["set", "ground_truth", "cost:seconds", "flag_recall_ratio", "flag_precision_ratio"]
        ]
    )
    (args.out / "frontier.png").write_bytes(png_bytes(plots.cost_validity_frontier(frontier)))
    growth_plot(pd.read_csv(args.compare_dir / "growth.csv"), study, compare, args.out)
    if args.report_rows:
        rows = report_rows(compare, args.report_rows)
        rows.to_csv(args.out / "report_rows.csv", index=False)
    shown = study.drop(columns=[c for c in study if c.startswith("goal_") and c != "goal_met"])
    print(markdown(shown))


def report_rows(compare: pd.DataFrame, where: str) -> pd.DataFrame:
    """The size-matched figures of every cell in the layout of the report's study table: one row
    per kind of set (source, varied weights, scale; the first cell of a kind in the compare
    table), keyed by the dataset as `rashomon.report.study.dataset_key` names a run's."""
    import json

    import yaml

    from rashomon.report.study import STUDY_COLUMNS, dataset_key, set_kind

    rows, seen = [], set()
    truth = compare[compare["ground_truth"].astype(bool)].iloc[0]
    for _, r in compare[~compare["ground_truth"].astype(bool)].iterrows():
        run = Path(r["run_dir"])
        config = yaml.safe_load((run / "config.yaml").read_text())
        summary = json.loads((run / "sample" / "summary.json").read_text())
        kind = set_kind(summary)
        # a fork's kind does not say where it spawned: no row a run could be matched to
        if kind in seen or kind[0] == "fork":
            continue
        seen.add(kind)
        train = config.get("train") or {}
        rows.append(
            {
                "dataset": dataset_key(config.get("data") or {}),
                "arch": train.get("arch", ""),
                **dict(zip(("source", "subset", "scale"), kind, strict=True)),
                "flag_recall_ratio": round(float(r["flag_recall_ratio"]), 3),
                "flag_precision_ratio": round(float(r["flag_precision_ratio"]), 3),
                "matched_models": int(r["matched_models"]),
                "flag_recall_full": round(float(r["flag_recall_full"]), 3),
                "flag_precision_full": round(float(r["flag_precision_full"]), 3),
                "retrained": int(truth["models_in_set"]),
                "epochs": train.get("epochs") or "",
                "steps": train.get("steps") or "",
                "dropout": train.get("dropout", ""),
                "class_weights": train.get("class_weights", ""),
                "where": f"{where}, cell {cell_name(r['run_dir'])}",
            }
        )
    return pd.DataFrame(rows, columns=list(STUDY_COLUMNS))


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (numbers to 2 decimals, seconds to 1), without tabulate."""

    def cell(v: object, col: str) -> str:
        if isinstance(v, bool | np.bool_):
            return "yes" if v else "no"
        if isinstance(v, float):
            if np.isnan(v):
                return "—"
            return f"{v:.1f}" if col == "seconds" else f"{v:.2f}"
        return str(v)

    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(cell(v, c) for c, v in r.items()) + " |" for _, r in table.iterrows()]
    return "\n".join([head, rule, *body])


if __name__ == "__main__":
    main()
