"""The plain-language summary at the top of the report, computed from the run's tables.

Every number comes from the tables (per_sample.csv first, multiplicity.csv as a fallback); a
sentence whose table is missing is left out rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rashomon.metrics.degenerate import Degeneracy, degeneracy
from rashomon.report.load import RunData, find_column

# disagreement = 4·p̂·(1−p̂) ≥ 0.64  ⇔  at least 20 % of the set predicts the minority label.
SPLIT_DISAGREEMENT = 0.64


@dataclass(frozen=True)
class Arbitrariness:
    share: float  # share of test patients with at least one flip across the Rashomon set
    count: int | None
    total: int | None
    split_share: float | None  # share where ≥ 20 % of the set disagrees with the majority


def pct(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f} %"


def arbitrariness(data: RunData) -> Arbitrariness:
    """Who would get a different diagnosis from an equally good model (the headline number)."""
    ps = data.table("per_sample")
    if ps is not None and len(ps) and "arbitrary" in ps:
        arbitrary = ps["arbitrary"].to_numpy(bool)
        split = None
        if "disagreement" in ps:
            split = float((ps["disagreement"].to_numpy(float) >= SPLIT_DISAGREEMENT - 1e-12).mean())
        return Arbitrariness(float(arbitrary.mean()), int(arbitrary.sum()), len(ps), split)
    mult = data.table("multiplicity")
    if mult is not None:
        row = mult[(mult["metric"] == "ambiguity") & _overall(mult["group"])]
        if len(row):
            return Arbitrariness(float(row["value"].iloc[0]), None, None, None)
    raise ValueError("neither per_sample.csv nor multiplicity.csv gives the ambiguity")


def _overall(groups: pd.Series) -> pd.Series:
    g = groups.fillna("all").astype(str).str.lower()
    return g.isin(["all", "overall", "", "none"])


def kept_models(data: RunData) -> tuple[int | None, int | None]:
    """(models kept at the configured ε, models sampled)."""
    s = data.summaries.get("sample", {})
    kept, total = s.get("models_in_set"), s.get("models")
    surv = data.table("survival")
    if (kept is None or total is None) and surv is not None and data.epsilon is not None:
        row = surv[np.isclose(surv["epsilon"].astype(float), data.epsilon)]
        if len(row):
            kept = kept if kept is not None else int(row["models_in_set"].iloc[0])
            total = total if total is not None else int(row["models"].iloc[0])
    return (int(kept) if kept is not None else None, int(total) if total is not None else None)


def group_extremes(data: RunData) -> list[tuple[str, str, bool, float, int]]:
    """(attribute, level, derived, share arbitrary, n) per group level, most arbitrary first."""
    ps = data.table("per_sample")
    if ps is None:
        return []
    if "arbitrary" not in ps:
        return []
    arbitrary = ps["arbitrary"].to_numpy(bool)
    out = []
    for name, info in data.attributes.items():
        levels = list(info.get("levels") or [])
        codes = ps[name].to_numpy()
        for code in np.unique(codes):
            m = codes == code
            label = levels[int(code)] if 0 <= int(code) < len(levels) else str(code)
            out.append(
                (name, label, bool(info.get("derived")), float(arbitrary[m].mean()), int(m.sum()))
            )
    return sorted(out, key=lambda r: -r[3])


def map_degeneracy(data: RunData) -> Degeneracy | None:
    """The degeneracy checks of the MAP model on the test patients (per_sample.csv's MAP labels
    against the true ones); None when the table lacks them (multilabel tasks, old runs)."""
    ps = data.table("per_sample")
    if ps is None or not len(ps) or not {"label", "map_pred"} <= set(ps.columns):
        return None
    return degeneracy(ps["map_pred"].to_numpy(), ps["label"].to_numpy())


def degenerate_warning(data: RunData) -> str | None:
    """The headline's warning when the MAP model is near-constant or near chance, else None."""
    d = map_degeneracy(data)
    return d.sentence(data.class_names, "test") if d is not None and d.degenerate else None


def summary_sentences(data: RunData) -> list[str]:
    """The summary as plain sentences (no markup); the first is the headline: the warning of a
    degenerate MAP model when it is one, else the share of arbitrary patients."""
    a = arbitrariness(data)
    kept, total = kept_models(data)
    eps = data.epsilon
    cond = []
    if eps is not None:
        what = "loss" if data.on == "loss" else "accuracy"
        cond.append(f"validation {what} within ε = {eps:g} of the trained model's")
    if kept is not None and total is not None:
        cond.append(f"{kept} of {total} sampled models")
    cond_text = f" ({'; '.join(cond)})" if cond else ""
    count = f" ({a.count} of {a.total})" if a.count is not None else ""
    out = [
        f"{pct(a.share)} of test patients{count} would receive a different diagnosis from at "
        f"least one equally good model{cond_text}."
    ]
    if a.split_share is not None:
        out.append(
            f"For {pct(a.split_share)} of test patients at least one in five of these models "
            "disagrees with the majority: their diagnosis depends on an arbitrary choice of model."
        )
    t = data.summaries.get("train", {})
    if "test_accuracy" in t:
        auc = f" (AUROC {t['test_auroc']:.3f})" if "test_auroc" in t else ""
        out.append(f"The trained model's test accuracy is {pct(t['test_accuracy'], 1)}{auc}.")
    groups = group_extremes(data)
    if groups and a.share > 0:
        name, level, derived, share, n = groups[0]
        tag = " (derived proxy)" if derived else ""
        out.append(
            f"Arbitrariness is highest for {name} = {level}{tag}: {pct(share)} of its {n} "
            f"patients, against {pct(a.share)} overall."
        )
    out += _selection_sentence(data)
    out += _ensemble_sentence(data)
    warning = degenerate_warning(data)
    return [warning, *out] if warning else out


def skip_notes(data: RunData, part: str) -> list[str]:
    """Why the decide stage skipped `part` (decide/notes.csv), without the 'skipped: ' prefix."""
    notes = data.table("notes")
    if notes is None or not {"part", "note"} <= set(notes.columns):
        return []
    rows = notes[notes["part"].astype(str) == part]["note"].astype(str)
    return list(dict.fromkeys(n.removeprefix("skipped: ") for n in rows))


def _selection_sentence(data: RunData) -> list[str]:
    sel = data.table("selection")
    if sel is None:
        skipped = skip_notes(data, "selection")
        return [f"Best-in-set selection was skipped: {skipped[0]}."] if skipped else []
    if "verdict" not in sel or not len(sel):
        return []
    name_col = find_column(sel, "desideratum", "metric")
    verdicts = sel["verdict"].astype(str).str.lower()
    real = sel[verdicts.str.contains("real") | verdicts.str.contains("significant")]
    if not len(real):
        return [
            "Picking the best model of the set on validation data gives no test gain beyond "
            f"selection noise for any of the {len(sel)} desiderata checked."
        ]
    if name_col and "label" in real and sel["label"].nunique() > 1:
        # multilabel: one row per desideratum and label; a bare name would repeat
        classes = data.class_names
        names = ", ".join(
            f"{d} ({classes[int(lb)] if 0 <= int(lb) < len(classes) else f'label {lb}'})"
            for d, lb in zip(real[name_col], real["label"], strict=True)
        )
    elif name_col:
        names = ", ".join(str(v) for v in real[name_col])
    else:
        names = f"{len(real)} desiderata"
    return [
        f"Picking the best model of the set on validation data gives a real test gain for: "
        f"{names} (see the selection section for the size and its interval)."
    ]


def rule_label(rule: object, threshold: object) -> str:
    """How an ensemble's abstention rule reads in a legend: 'agree ≥ 80 %', 'no abstention'."""
    r = str(rule).lower() if rule is not None else "share"
    t = float(threshold) if threshold is not None and pd.notna(threshold) else None
    if r in ("none", "nan") or t is None:
        return "no abstention"
    if r in ("share", "majority", "agreement"):
        return f"agree ≥ {100 * t:.0f} %"
    if r == "binomial":
        return f"binomial test, α = {t:g}"
    return f"{r} {t:g}"


def _ensemble_sentence(data: RunData) -> list[str]:
    ens = data.table("ensembles")
    need = {"k", "coverage", "residual_ambiguity"}
    if ens is None or not need <= set(ens.columns) or not len(ens):
        return []
    ens = ens[ens["coverage"].fillna(0) > 0]
    if "rule" in ens:
        ens = ens[ens["rule"].astype(str).str.lower() != "none"]
    ok = ens[(ens["residual_ambiguity"] <= 0.01) & (ens["k"] > 1)]
    if not len(ens):
        return []
    if not len(ok):
        best = ens.loc[ens["residual_ambiguity"].idxmin()]
        return [
            f"No ensemble tried removes the arbitrariness: the lowest residual ambiguity is "
            f"{pct(best['residual_ambiguity'], 1)} (k = {int(best['k'])})."
        ]
    row = ok.sort_values(["k", "coverage"], ascending=[True, False]).iloc[0]
    rule = str(row.get("rule", "share")).lower()
    thr = float(row["threshold"]) if pd.notna(row.get("threshold")) else None
    if rule in ("share", "majority", "agreement") and thr is not None:
        how = f" that abstains unless at least {pct(thr)} of its models agree"
    elif rule == "binomial" and thr is not None:
        how = f" that abstains unless a binomial test of its votes passes at α = {thr:g}"
    else:
        how = f" (abstention rule {rule_label(rule, thr)})"
    return [
        f"An ensemble of k = {int(row['k'])} models{how} leaves "
        f"{pct(row['residual_ambiguity'], 1)} residual ambiguity and still decides for "
        f"{pct(row['coverage'])} of patients."
    ]


def summary_text(data: RunData) -> str:
    """The summary as it is saved to summary.txt: one sentence a line."""
    return "\n".join(summary_sentences(data)) + "\n"
