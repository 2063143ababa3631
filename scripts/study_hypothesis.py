"""The fairness hypothesis on one task, read off decided runs: is there, among the equally good
models, one that is fairer on test, chosen on validation, beyond the null control? For each
fairness desideratum of the real patient attributes (and the `random` null control), side by
side for the retrained truth and the cheap sets: the MAP model's test value, the spread of the
desideratum across the set on test (q05–q95), the selected model's test gain over the MAP model
with its bootstrap interval, Holm-adjusted p, the smallest gain the test split could detect and
the verdict; then the MAP model's gaps within acquisition strata.

    .venv/bin/python scripts/study_hypothesis.py \
        runs/study/validity-rsna/cells/seed-0_set-{retrain,ll-kron,ll-disagree} \
        --attributes sex age_group --out runs/study/hypothesis-rsna

Each RUN_DIR is a run with its decide stage (`rashomon decide RUN_DIR`); the first is read as
the truth when its sample source is `retrain`. Writes hypothesis.csv, hypothesis.png and prints
Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

GAPS = ("tpr_gap", "fpr_gap", "dp_gap", "accuracy_gap", "worst_group_accuracy")


def cell_label(run_dir: Path) -> str:
    """A run's short name: a sweep cell's label, or the folder name."""
    source = json.loads((run_dir / "sample" / "summary.json").read_text()).get("source", "")
    name = run_dir.name.split("set-")[-1]
    return f"{name} (truth)" if source == "retrain" else name


def fairness_rows(run_dir: Path, attributes: list[str]) -> pd.DataFrame:
    """decide/selection.csv's rows for the fairness desiderata of `attributes` and `random`."""
    sel = pd.read_csv(run_dir / "decide" / "selection.csv")
    parts = sel["desideratum"].str.split(":", n=1, expand=True)
    keep = parts[0].isin(GAPS) & parts[1].isin([*attributes, "random"])
    rows = sel[keep].copy()
    rows.insert(0, "set", cell_label(run_dir))
    return rows


def hypothesis_figure(table: pd.DataFrame, path: Path) -> None:
    """Two panels, one row per fairness desideratum and one colour per set: the test gain of the
    model chosen on validation over the MAP model with its 95 % interval (a filled marker where
    the verdict is a real gain, Holm-adjusted), and the q05–q95 range of the desideratum across
    the set on test with the MAP model's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    desiderata = list(dict.fromkeys(table["desideratum"]))
    sets = list(dict.fromkeys(table["set"]))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    height = 0.8 / max(len(sets), 1)
    fig, (gain_ax, spread_ax) = plt.subplots(
        1, 2, figsize=(11, 0.45 * len(desiderata) * max(len(sets), 2) / 2 + 1.5), sharey=True
    )
    for j, name in enumerate(sets):
        colour = colours[j % len(colours)]
        rows = table[table["set"] == name].set_index("desideratum")
        for i, d in enumerate(desiderata):
            if d not in rows.index:
                continue
            r = rows.loc[d]
            y = i + (j - (len(sets) - 1) / 2) * height
            real = r["verdict"] == "real gain"
            gain_ax.errorbar(
                r["test_gain"],
                y,
                xerr=[[r["test_gain"] - r["gain_ci_low"]], [r["gain_ci_high"] - r["test_gain"]]],
                fmt="o",
                color=colour,
                mfc=colour if real else "white",
                label=name if i == 0 else None,
                capsize=2,
            )
            spread_ax.plot(
                [r["set_test_q05"], r["set_test_q95"]],
                [y, y],
                color=colour,
                lw=3,
            )
            spread_ax.plot(r["map_test"], y, "|", color="black", ms=9)
    gain_ax.axvline(0, color="grey", lw=0.8)
    gain_ax.set_yticks(range(len(desiderata)), desiderata)
    gain_ax.invert_yaxis()
    gain_ax.set_xlabel("test gain of the chosen model (95 % CI; filled: real)")
    spread_ax.set_xlabel("on test across the set, q05–q95 (|: MAP)")
    gain_ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--attributes", nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([fairness_rows(r, args.attributes) for r in args.runs], ignore_index=True)
    table.to_csv(args.out / "hypothesis.csv", index=False)
    hypothesis_figure(table, args.out / "hypothesis.png")
    print(
        "| desideratum | set | models | MAP test | set on test q05–q95 "
        "| chosen: test gain [95 % CI] | Holm p | detectable gain | verdict |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d, rows in table.groupby("desideratum", sort=False):
        for _, r in rows.iterrows():
            print(
                f"| {d} | {r['set']} | {int(r['models_in_set'])} | {r['map_test']:.3f} | "
                f"{r['set_test_q05']:.3f}–{r['set_test_q95']:.3f} | {r['test_gain']:+.3f} "
                f"[{r['gain_ci_low']:+.3f}, {r['gain_ci_high']:+.3f}] | {r['gain_p_holm']:.2f} | "
                f"{r['min_detectable_gain']:.3f} | {r['verdict']} |"
            )
    strata = args.runs[0] / "evaluate" / "within_stratum.csv"
    if strata.exists():
        w = pd.read_csv(strata)
        w = w[w["attribute"].isin([*args.attributes, "random"]) & (w["metric"] == "tpr_gap")]
        w.to_csv(args.out / "within_stratum.csv", index=False)
        print()
        print("| attribute | within | stratum | patients | positives | MAP TPR gap | set q05–q95 |")
        print("|---|---|---|---|---|---|---|")
        for _, r in w.iterrows():
            print(
                f"| {r['attribute']} | {r['stratum_attribute']} | {r['stratum']} | "
                f"{int(r['patients'])} | {int(r['rate_patients'])} | {r['map_gap']:.3f} | "
                f"{r['set_gap_q05']:.3f}–{r['set_gap_q95']:.3f} |"
            )


if __name__ == "__main__":
    main()
