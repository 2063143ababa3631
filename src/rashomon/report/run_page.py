"""Build the self-contained HTML report of a run directory.

`build_report(run_dir, out_dir)` reads whatever tables the run holds (see load.py), draws every
figure to `out_dir/<name>.png`, embeds the same PNGs as base64 in `out_dir/report.html`, copies
the tables each section draws from into `out_dir/tables/` and writes the plain-language summary
to `out_dir/summary.txt`. The page has no scripts and loads nothing from the network.
"""

from __future__ import annotations

import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon.errors import one_line
from rashomon.report import plots
from rashomon.report.kit import (
    esc,
    failure_box,
    figure_html,
    kv_table,
    nav_html,
    note,
    page,
    section_html,
    table_html,
    warning_box,
)
from rashomon.report.load import TABLES, RunData, find_column, load_run
from rashomon.report.summary import (
    arbitrariness,
    degenerate_warning,
    kept_models,
    pct,
    skip_notes,
    summary_sentences,
)

DEFAULT_ATTACKS = ("fgsm", "pgd", "pgd-linf", "pgd_linf", "autoattack", "apgd")
TOP_PATIENTS = 10
TOP_LSI = 16


@dataclass
class Section:
    id: str
    title: str
    body: str
    extra_class: str = ""


@dataclass
class ReportBuilder:
    data: RunData
    out: Path
    figures: list[Path] = field(default_factory=list)

    # --- building blocks ------------------------------------------------------------------
    def figure(self, fig, name: str, caption: str, alt: str | None = None) -> str:
        """Save `fig` as OUT/<name>.png and embed the same bytes in the page."""
        path = plots.save_png(fig, self.out / f"{name}.png")
        self.figures.append(path)
        return figure_html(path.read_bytes(), caption, alt)

    def note(self, text: str) -> str:
        return note(text)

    def missing(self, key: str, what: str) -> str:
        return f'<p class="note missing">No {what}: {self.data.missing_note(key)}</p>'


def group_label(group: Any, attributes: dict[str, dict]) -> str:
    """'intensity=0' -> 'intensity = low (derived proxy)' using the attribute's level names."""
    text = str(group)
    for sep in ("=", ":"):
        if sep in text:
            name, code = text.split(sep, 1)
            info = attributes.get(name)
            if info is None:
                return text
            levels = list(info.get("levels") or [])
            level = levels[int(code)] if code.isdigit() and int(code) < len(levels) else code
            return f"{attr_label(name, info)} = {level}"
    return text


def attr_label(name: str, info: dict) -> str:
    return f"{name} (derived proxy)" if info.get("derived") else name


# --- sections --------------------------------------------------------------------------------


def section_summary(b: ReportBuilder) -> Section:
    d = b.data
    sentences = summary_sentences(d)
    a = arbitrariness(d)
    kept, total = kept_models(d)
    t = d.summaries.get("train", {})
    cards = [
        (pct(a.share, 1), "of test patients get a different diagnosis from some equally good model")
    ]
    if kept is not None:
        cards.append(
            (
                f"{kept}" + (f" / {total}" if total else ""),
                f"models in the Rashomon set (ε = {d.epsilon:g})"
                if d.epsilon is not None
                else "models in the Rashomon set",
            )
        )
    if "test_accuracy" in t:
        cards.append((pct(t["test_accuracy"], 1), "test accuracy of the trained (MAP) model"))
    if a.split_share is not None:
        cards.append((pct(a.split_share, 1), "of patients with ≥ 20 % of models dissenting"))
    card_html = "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
        for v, k in cards
    )
    warning = ""
    if degenerate_warning(d):  # the first sentence: shown as a warning above the headline
        warning = warning_box("Degenerate trained model.", esc(sentences[0]))
        sentences = sentences[1:]
    items = "".join(f"<li>{esc(s)}</li>" for s in sentences[1:])
    body = (
        f'{warning}<p class="headline">{esc(sentences[0])}</p><ul>{items}</ul>'
        f'<div class="cards">{card_html}</div>'
    )
    return Section("summary", "Summary", body, "summary")


def _class_counts(y: np.ndarray, n_classes: int) -> list[int]:
    y = np.asarray(y)
    if y.ndim == 2:  # multilabel: positives per label
        return [int(v) for v in y.sum(axis=0)]
    return [int(v) for v in np.bincount(y.astype(int), minlength=n_classes)]


def section_task(b: ReportBuilder) -> Section:
    d = b.data
    info = d.task_info
    names = d.class_names
    parts = []
    name = info.get("name") or (d.config.get("data") or {}).get("dataset", "?")
    kind = info.get("kind", "")
    size = info.get("size", (d.config.get("data") or {}).get("size", ""))
    parts.append(
        f"<p><b>{esc(name)}</b> · {esc(kind)} classification · {esc(size)} px images · "
        f"classes: {esc(', '.join(names))}</p>"
    )
    rows = []
    if d.task is not None:
        for split in ("train", "val", "test"):
            s = d.task.split(split)
            counts = _class_counts(s.y.numpy(), len(names))
            rows.append(_balance_row(split, len(s), counts, names))
    else:
        sizes = info.get("sizes") or {}
        ps = d.table("per_sample")
        for split in ("train", "val", "test"):
            if split == "test" and ps is not None and "label" in ps:
                counts = _class_counts(ps["label"].to_numpy(), len(names))
                rows.append(_balance_row(split, len(ps), counts, names))
            elif split in sizes:
                rows.append({"split": split, "patients": sizes[split]})
    if rows:
        parts.append("<h3>Splits and class balance</h3>" + table_html(pd.DataFrame(rows)))
    attrs = d.attributes or (info.get("attributes") or {})
    if attrs:
        ps = d.table("per_sample")
        arows = []
        for a, ai in attrs.items():
            levels = list(ai.get("levels") or [])
            if ps is not None and a in ps:
                counts = ps[a].value_counts().to_dict()
                levels = [f"{lv} ({counts.get(i, 0)})" for i, lv in enumerate(levels)]
            arows.append(
                {
                    "attribute": attr_label(a, ai),
                    "levels (test patients)": ", ".join(levels),
                    "description": ai.get("description", ""),
                }
            )
        parts.append("<h3>Patient attributes</h3>" + table_html(pd.DataFrame(arows)))
        if any(ai.get("derived") for ai in attrs.values()):
            parts.append(
                b.note(
                    "Attributes marked <i>(derived proxy)</i> are computed from the images or "
                    "drawn at random (a null control); they are not demographics. Gaps on the "
                    "random attribute measure noise."
                )
            )
    else:
        parts.append(
            b.note(
                "The task has no patient attributes; add them with "
                "<code>--attributes FILE.csv</code> to see group results."
            )
        )
    return Section("task", "Task and data", "".join(parts))


def _balance_row(split: str, n: int, counts: list[int], names: list[str]) -> dict:
    row: dict[str, Any] = {"split": split, "patients": n}
    for c, k in zip(names, counts, strict=False):
        row[c] = f"{k:,} ({100 * k / max(n, 1):.1f} %)"
    return row


def section_map(b: ReportBuilder) -> Section:
    d = b.data
    t = d.summaries.get("train", {})
    spec = d.checkpoint.get("spec") or {}
    arch = spec.get("arch") or (d.config.get("train") or {}).get("arch", "?")
    opts = {
        k: v
        for k, v in spec.items()
        if k not in ("arch", "in_channels", "num_classes", "size") and v not in (None, {}, [])
    }
    pairs: list[tuple[str, Any]] = [("architecture", arch)]
    if opts:
        pairs.append(("options", ", ".join(f"{k}={v}" for k, v in opts.items())))
    params = t.get("parameters", d.checkpoint.get("parameters"))
    if params is not None:
        pairs.append(("parameters", int(params)))
    if "epochs_run" in t:
        pairs.append(("epochs run", int(t["epochs_run"])))
    for split in ("val", "test"):
        for m in ("accuracy", "auroc"):
            if f"{split}_{m}" in t:
                pairs.append((f"{split} {m.upper() if m == 'auroc' else m}", t[f"{split}_{m}"]))
    body = kv_table(pairs)
    hist = d.table("history")
    if hist is not None and "epoch" in hist and len(hist):
        body = (
            f'<div class="side"><div>{body}</div>'
            + b.figure(
                plots.training_curve(hist),
                "training_curve",
                "Training curve of the MAP model (θ*): the checkpoint kept is the epoch with the "
                "lowest validation loss.",
            )
            + "</div>"
        )
    else:
        body += b.missing("history", "training curve")
    return Section("map", "The trained (MAP) model", body)


def section_set(b: ReportBuilder) -> Section:
    d = b.data
    s = d.summaries.get("sample", {})
    cfg = d.config.get("sample") or {}
    source = s.get("source", cfg.get("source", "?"))
    kept, total = kept_models(d)
    pairs: list[tuple[str, Any]] = [("source", source)]
    for k in ("subset", "hessian", "prior", "kind"):
        if k in cfg and source in ("laplace", "riemannian"):
            pairs.append((f"Laplace {k}", cfg[k]))
    if total is not None:
        pairs.append(("models sampled (M)", total))
    if d.epsilon is not None:
        pairs.append(("audit ε", f"{d.epsilon:g} (relative validation {d.on})"))
    if kept is not None:
        pairs.append(("models kept at that ε", kept))
    for k, v in s.items():
        if k.endswith("seconds") and isinstance(v, int | float):
            pairs.append((k.replace("_", " "), f"{v:.1f}"))
    parts = [
        "<p>The Rashomon set is every sampled model whose validation "
        f"{esc(d.on)} is within ε of the trained model's. Filtering uses validation data only; "
        "every number below the set is measured on test data.</p>",
    ]
    surv, pm = d.table("survival"), d.table("per_model")
    figs = []
    if surv is not None and {"epsilon", "models_in_set"} <= set(surv.columns) and len(surv):
        figs.append(
            b.figure(
                plots.set_survival(surv, d.epsilon),
                "set_survival",
                "How many sampled models survive each ε.",
            )
        )
        parts.append(
            f'<div class="side"><div>{kv_table(pairs)}</div><div><h3 style="margin-top:'
            f'0">Survival per ε</h3>{table_html(surv)}</div></div>'
        )
    else:
        parts.append(kv_table(pairs))
        parts.append(b.missing("survival", "survival table"))
    if pm is not None and "val_loss" in pm and ({"distance_rel", "distance_l2"} & set(pm.columns)):
        figs.append(
            b.figure(
                plots.set_distance(pm, d.epsilon),
                "set_distance",
                "Each sampled model: its distance from the trained weights θ* and "
                "its validation loss.",
            )
        )
    elif pm is None:
        parts.append(b.missing("per_model", "per-model table"))
    if figs:
        parts.append(f'<div class="row">{"".join(figs)}</div>')
    return Section("set", "The Rashomon set", "".join(parts))


def section_multiplicity(b: ReportBuilder) -> Section:
    d = b.data
    parts = []
    mult = d.table("multiplicity")
    if mult is not None and {"metric", "value"} <= set(mult.columns):
        g = mult["group"].fillna("all").astype(str) if "group" in mult else "all"
        overall = mult[pd.Series(g).str.lower().isin(["all", "overall", ""]).to_numpy()]
        parts.append(
            "<h3>Across all test patients</h3>"
            + table_html(overall[["metric", "value"]].reset_index(drop=True), 4)
        )
    else:
        parts.append(b.missing("multiplicity", "multiplicity table"))
    ps = d.table("per_sample")
    if ps is not None and "disagreement" in ps:
        parts.append(
            b.figure(
                plots.multiplicity_hist(ps),
                "multiplicity_hist",
                "Disagreement is 0 when every model of the set agrees and 1 when they split 50/50; "
                "Rashomon capacity (2^capacity) ranges from 1 (one answer) to the number of "
                "classes. Log-scaled counts: most patients are not arbitrary.",
            )
        )
    conv = d.table("convergence")
    if conv is not None and {"models", "ambiguity"} <= set(conv.columns):
        parts.append(
            b.figure(
                plots.convergence(conv),
                "convergence",
                "Convergence: multiplicity measured on the first n models of the set. A curve "
                "still rising at the right means more models would find more arbitrary patients.",
            )
        )
    elif d.task_info.get("kind") == "multilabel":
        parts.append(b.note(MULTILABEL_NOTE.format(what="The convergence curve")))
    else:
        parts.append(b.missing("convergence", "convergence curve"))
    attrs = d.attributes
    if ps is not None and attrs and "arbitrary" in ps:
        parts.append(
            "<h3>Per patient group</h3>"
            + b.figure(
                plots.group_bars(ps, attrs),
                "multiplicity_groups",
                "Share of each group's test patients whose diagnosis changes with the model "
                "(dashed: all patients). Derived proxies are lighter.",
            )
        )
    if mult is not None and "group" in mult and mult["group"].nunique() > 1:
        index = [c for c in mult.columns if c not in ("metric", "value")]
        pivot = mult.pivot_table(
            index=index, columns="metric", values="value", aggfunc="first", sort=False
        ).reset_index()
        pivot["group"] = [group_label(g, d.attributes) for g in pivot["group"]]
        pivot = pivot.dropna(axis=1, how="all")
        parts.append(table_html(pivot, 4))
    return Section("multiplicity", "Predictive multiplicity", "".join(parts))


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


def _desiderata_metrics(pm: pd.DataFrame) -> list[str]:
    """The metrics drawn as strips: overall ones, then fairness gaps per attribute; per-group
    values (`metric[attr=level]`) and per-label columns stay in the CSV."""
    cols = [
        c
        for c in pm.columns
        if c not in ("model", "is_map")
        and pd.api.types.is_numeric_dtype(pm[c])
        and pm[c].notna().any()
        and "=" not in c
        and not c.startswith("label")
    ]

    def rank(c: str) -> tuple[int, int, str]:
        base = re.split(r"[\[:]", c)[0]
        if base in OVERALL_ORDER:
            return (0, OVERALL_ORDER.index(base), c)
        if base in GAP_ORDER:
            return (1, GAP_ORDER.index(base), c)
        return (2, 0, c)

    return sorted(cols, key=rank)[:MAX_STRIPS]


def section_desiderata(b: ReportBuilder) -> Section:
    d = b.data
    parts = [
        "<p>Each dot is one model of the Rashomon set, evaluated on the test set; the red "
        "diamond is the trained (MAP) model. A wide strip means the choice among equally good "
        "models changes that property.</p>"
    ]
    pm = d.table("per_model_test")
    if pm is not None and "model" in pm:
        metrics = _desiderata_metrics(pm)
        if metrics:
            parts.append(
                b.figure(
                    plots.desiderata_strips(pm, metrics),
                    "desiderata",
                    "Spread of each metric across the set (test data).",
                )
            )
    else:
        parts.append(b.missing("per_model_test", "per-model metrics"))
    mt = d.table("metrics")
    if mt is not None and {"metric", "stat", "value"} <= set(mt.columns):
        sub = mt
        if "epsilon" in mt and d.epsilon is not None:
            at = mt[np.isclose(mt["epsilon"].astype(float), d.epsilon)]
            sub = at if len(at) else mt
        if "group" in sub:  # per-group values stay in the CSV; overall metrics and gaps here
            sub = sub[~sub["group"].astype(str).str.contains("=")]
        index = [
            c
            for c in ("metric", "group", "source", "epsilon")
            if c in sub and (c == "metric" or sub[c].nunique() > 1)
        ]
        pivot = sub.pivot_table(
            index=index, columns="stat", values="value", aggfunc="first", sort=False
        ).reset_index()
        order = [
            c
            for c in ("map", "map_rank", "mean", "std", "min", "q05", "q50", "q95", "max")
            if c in pivot.columns
        ]
        pivot = pivot[index + order + [c for c in pivot.columns if c not in index + order]]
        eps = f" at ε = {d.epsilon:g}" if d.epsilon is not None else ""
        parts.append(f"<h3>Spread table{eps}</h3>" + table_html(pivot, 4))
    else:
        parts.append(b.missing("metrics", "spread table"))
    return Section("desiderata", "Desiderata across the set", "".join(parts))


def section_selection(b: ReportBuilder) -> Section:
    d = b.data
    sel = d.table("selection")
    if sel is None:
        skipped = skip_notes(d, "selection")
        body = (
            warning_box("Selection skipped:", esc("; ".join(skipped)) + ".")
            if skipped
            else b.missing("selection", "selection results")
        )
        return Section("selection", "Best-in-set selection", body)
    name_col = find_column(sel, "desideratum", "metric") or sel.columns[0]
    parts = [
        "<p>For each desideratum the model of the set that is best on <i>validation</i> data is "
        "picked, and its gain over the MAP model is measured on <i>test</i> data. A gain whose "
        "interval includes 0 is selection noise: the set's models look different on validation "
        "by chance.</p>",
        note(
            "The gain is the difference on the full test set; its 95 % interval is the gain ± "
            "the 95th percentile of how far the gain moves when test patients are resampled "
            "(paired bootstrap)."
        ),
    ]
    if "gain" in sel:
        parts.append(
            b.figure(
                plots.selection_gains(sel, name_col),
                "selection",
                "Honest test gain of the best-in-set model (green: real gain, "
                "grey: within selection noise, red: worse).",
            )
        )
    parts.append(table_html(selection_table(sel, name_col), 4))
    par = d.table("pareto")
    if par is not None and len(par):
        parts.append("<h3>Validation Pareto fronts</h3>" + table_html(par, 4, max_rows=25))
    return Section("selection", "Best-in-set selection", "".join(parts))


def selection_table(sel: pd.DataFrame, name_col: str) -> pd.DataFrame:
    """The selection table with the interval in one column."""
    t = sel.copy()
    if {"gain_low", "gain_high"} <= set(t.columns):
        t["95 % interval"] = [
            f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(t["gain_low"], t["gain_high"], strict=True)
        ]
        t = t.drop(columns=["gain_low", "gain_high"])
    if "direction" in t:
        arrows = {"max": " ↑", "min": " ↓"}
        t[name_col] = [
            f"{n}{arrows.get(str(d), '')}" for n, d in zip(t[name_col], t["direction"], strict=True)
        ]
        t = t.drop(columns="direction")
    first = [
        c
        for c in (
            name_col,
            "map_test",
            "selected_model",
            "selected_val",
            "selected_test",
            "gain",
            "95 % interval",
            "spearman",
            "verdict",
        )
        if c in t.columns
    ]
    return t[first + [c for c in t.columns if c not in first]]


def section_ensembles(b: ReportBuilder) -> Section:
    d = b.data
    ens = d.table("ensembles")
    if ens is None:
        return Section(
            "ensembles", "Ensembles and abstention", b.missing("ensembles", "ensemble results")
        )
    parts = [
        "<p>A selective ensemble votes with k models of the set and abstains when fewer than a "
        "threshold agree. Coverage is the share of patients it decides; residual ambiguity is "
        "the share of decided patients whose decision still depends on which k models were "
        "drawn.</p>"
    ]
    if {"k", "coverage", "residual_ambiguity"} <= set(ens.columns):
        parts.append(
            b.figure(
                plots.ensemble_curves(ens),
                "ensembles",
                "Coverage and residual ambiguity against the ensemble size.",
            )
        )
    if {"k", "threshold", "coverage", "residual_ambiguity"} <= set(ens.columns):
        from rashomon.report.summary import rule_label

        t = ens.copy()
        rules = t["rule"] if "rule" in t else ["share"] * len(t)
        t["rule "] = [rule_label(r, th) for r, th in zip(rules, t["threshold"], strict=True)]
        index = [c for c in ("combine",) if c in t and t[c].nunique() > 1] + ["k"]
        tabs = []
        for col, title in (
            ("coverage", "Coverage"),
            ("residual_ambiguity", "Residual ambiguity"),
            ("accuracy_covered", "Accuracy on decided patients"),
        ):
            if col not in t:
                continue
            piv = t.pivot_table(
                index=index, columns="rule ", values=col, aggfunc="mean", sort=False
            )
            piv = (100 * piv).round(1).reset_index()
            piv["k"] = piv["k"].astype(int)
            piv.columns.name = None
            tabs.append(f"<div><h3>{title} (%)</h3>{table_html(piv, 1)}</div>")
        parts.append("".join(tabs))
    else:
        parts.append(table_html(ens, 4, max_rows=40))
    return Section("ensembles", "Ensembles and abstention", "".join(parts))


def section_lsi(b: ReportBuilder) -> Section:
    d = b.data
    lsi = d.table("lsi")
    if lsi is None or not {"lsi", "disagreement"} <= set(lsi.columns):
        note = (
            "enable it with <code>decide.lsi: true</code>"
            if "decide" in d.stages
            else d.missing_note("lsi")
        )
        return Section(
            "lsi", "Laplace Sample Information", f'<p class="note missing">No LSI table: {note}</p>'
        )
    parts = [
        "<p>Laplace Sample Information (LSI) measures how much each training sample shaped the "
        "posterior over weights. Samples with high LSI are often atypical or mislabelled.</p>",
        b.figure(
            plots.lsi_scatter(lsi),
            "lsi",
            "Each training sample: its LSI and how much the set disagrees on it.",
        ),
    ]
    top = lsi.sort_values("lsi", ascending=False).head(TOP_LSI)
    task = d.task
    idx_col = find_column(top, "index", "sample")
    if task is not None and task.train.raw is not None and idx_col is not None:
        y = task.train.y.numpy()
        names = d.class_names
        imgs, titles = [], []
        for _, r in top.iterrows():
            i = int(r[idx_col])
            imgs.append(task.train.raw[i])
            lab = names[int(y[i])] if y.ndim == 1 and int(y[i]) < len(names) else str(y[i])
            titles.append(f"#{i} · {lab}\nLSI {r['lsi']:.2g}")
        parts.append(
            "<h3>Training images with the highest LSI</h3>"
            + b.figure(
                plots.image_grid(imgs, titles),
                "lsi_top_images",
                "The training samples with the highest LSI and their labels.",
            )
        )
    else:
        parts.append(b.note(f"Images not shown: {esc(d.task_error or 'no task images')}."))
        parts.append(table_html(top, 4))
    return Section("lsi", "Laplace Sample Information", "".join(parts))


# Multilabel runs audit each label as its own binary task; per-patient tables have one block of
# columns per label, which the single-label panels do not draw.
MULTILABEL_NOTE = (
    "{what} covers single-label tasks; for a multilabel task each label's per-patient values "
    "are the <code>label&lt;j&gt;.*</code> columns of <code>evaluate/per_sample.csv</code>."
)


def section_patients(b: ReportBuilder) -> Section:
    d = b.data
    ps = d.table("per_sample")
    need = {"disagreement", "vpr_min", "vpr_max"}
    if d.task_info.get("kind") == "multilabel":
        note = MULTILABEL_NOTE.format(what="This panel")
        return Section("patients", "The most arbitrary patients", b.note(note))
    if ps is None or not need <= set(ps.columns):
        return Section(
            "patients",
            "The most arbitrary patients",
            b.note(
                "per_sample.csv has no viable prediction range (vpr_min, vpr_max); re-run "
                "<code>rashomon evaluate RUN_DIR --force</code> with a version that writes it."
            ),
        )
    idx_col = find_column(ps, "index") or None
    order = ps.assign(_w=ps["vpr_max"] - ps["vpr_min"]).sort_values(
        ["disagreement", "_w"], ascending=False, kind="stable"
    )
    arbitrary = ps["arbitrary"] if "arbitrary" in ps else ps["disagreement"] > 0
    top = order[arbitrary.loc[order.index].to_numpy(bool)].head(TOP_PATIENTS)
    if not len(top):
        return Section(
            "patients",
            "The most arbitrary patients",
            "<p>No test patient gets a different diagnosis from any model of the set.</p>",
        )
    names = d.class_names
    positive = names[1] if len(names) > 1 else "positive"
    flips_col = find_column(ps, "flips", "flip_rate")
    kept, _ = kept_models(d)
    captions = []
    for _, r in top.iterrows():
        lab = names[int(r["label"])] if "label" in r and int(r["label"]) < len(names) else "?"
        cap = f"#{int(r[idx_col]) if idx_col else r.name} · true: {lab}"
        if flips_col == "flips":
            cap += f"\nflips: {int(r[flips_col])}" + (f" of {kept} models" if kept else "")
        elif flips_col:
            cap += f"\nflips: {pct(float(r[flips_col]))} of models"
        captions.append(cap)
    top = top.assign(caption=captions)
    images = None
    if d.task is not None and d.task.test.raw is not None:
        ids = top[idx_col].astype(int).to_numpy() if idx_col else top.index.to_numpy()
        images = [d.task.test.raw[i] for i in ids]
    parts = [
        "<p>The test patients on whom the equally good models disagree most. Each bar is the "
        f"viable prediction range: the lowest and highest probability of {esc(positive)} that a "
        "model of the Rashomon set gives this patient; where it crosses the threshold, the "
        "diagnosis depends on the model.</p>",
        b.figure(
            plots.patient_ranges(top, images, positive),
            "patients",
            "Bar: lowest to highest probability over the models of the set; ◆ the trained "
            "(MAP) model; dashed line: the decision threshold.",
        ),
    ]
    if images is None:
        parts.append(b.note(f"Images not shown: {esc(d.task_error or 'no task images')}."))
    cols = [
        c
        for c in (
            idx_col,
            "label",
            "map_pred",
            "map_prob",
            "disagreement",
            "capacity",
            "vpr_min",
            "vpr_max",
            flips_col,
        )
        if c and c in top
    ]
    tab = top[cols].copy()
    for c in ("label", "map_pred"):
        if c in tab:
            tab[c] = [names[int(v)] if 0 <= int(v) < len(names) else str(v) for v in tab[c]]
    pat = d.table("patients")
    if pat is not None and idx_col and "index" in pat:
        extra = [c for c in pat.columns if c not in tab.columns or c == "index"]
        extra = [c for c in extra if c not in ("arbitrary", "map_correct")]
        tab = tab.merge(pat[extra], how="left", on="index")
    parts.append(table_html(tab.reset_index(drop=True), 3))
    return Section("patients", "The most arbitrary patients", "".join(parts))


def section_robustness(b: ReportBuilder) -> Section:
    d = b.data
    rob = d.table("robustness")
    if rob is None or not {"corruption", "severity", "value", "model"} <= set(rob.columns):
        return Section(
            "robustness",
            "Robustness",
            (
                '<p class="note missing">No robustness results: robustness.csv is written by '
                "<code>rashomon evaluate</code> when <code>evaluate.metrics</code> includes "
                "<code>robustness</code> (corruptions and/or attacks configured).</p>"
            ),
        )
    metric = "accuracy"
    if "metric" in rob:
        metric = "accuracy" if (rob["metric"] == "accuracy").any() else str(rob["metric"].iloc[0])
        rob = rob[rob["metric"] == metric]
    ev = d.config.get("evaluate") or {}
    attacks = {a.lower() for a in (ev.get("attacks") or [])} | set(DEFAULT_ATTACKS)
    if "family" in rob:  # rashomon.metrics.robustness: clean | corruption | summary | attack
        fam = rob["family"].astype(str).str.lower()
        clean = rob[fam == "clean"]
        rob = rob[fam.isin(["corruption", "attack"])].copy()
        att_rows = rob["family"] == "attack"
        if "epsilon" in rob:  # attacks: the budget is the x axis
            rob.loc[att_rows, "severity"] = rob.loc[att_rows, "epsilon"]
        if "mode" in rob:  # the set's band: transfer attacks from the MAP model when present
            transfer = att_rows & (rob["mode"] == "transfer")
            if transfer.any():
                rob = rob[~(att_rows & (rob["model"] != -1) & ~transfer)]
        corr_names = rob.loc[rob["family"] == "corruption", "corruption"].unique()
        if len(clean) and len(corr_names):  # severity 0 = clean images on every curve
            zero = [clean.assign(corruption=c, severity=0, family="corruption") for c in corr_names]
            rob = pd.concat([rob, *zero], ignore_index=True)
        is_attack = rob["family"] == "attack"
    elif "kind" in rob:
        is_attack = rob["kind"].astype(str).str.lower().str.contains("attack")
    else:
        is_attack = rob["corruption"].astype(str).str.lower().isin(attacks)
    if not len(rob[~is_attack]) and not len(rob[is_attack]):  # clean rows only
        return Section(
            "robustness",
            "Robustness",
            '<p class="note missing">No corruption or attack was run (clean test accuracy '
            "only); set <code>evaluate.corruptions</code> or <code>evaluate.attacks</code>.</p>",
        )
    parts = [
        "<p>The band is the spread across the models of the set; the red line is the "
        "trained model. A wide band means robustness depends on the arbitrary choice of "
        "model.</p>"
    ]
    corr, att = rob[~is_attack], rob[is_attack]
    if len(corr):
        parts.append(
            "<h3>Corruptions</h3>"
            + b.figure(
                plots.robustness_corruptions(corr, metric),
                "robustness_corruptions",
                f"Test {metric} against corruption severity (MedMNIST-C).",
            )
        )
    if len(att):
        parts.append(
            "<h3>Adversarial attacks</h3>"
            + b.figure(
                plots.robustness_attacks(att, metric),
                "robustness_attacks",
                f"Test {metric} under attack against the attack budget ε.",
            )
        )
    return Section("robustness", "Robustness", "".join(parts))


def section_run(b: ReportBuilder) -> Section:
    d = b.data
    import json

    rec_path = d.run_dir / "stages.json"
    rows = []
    if rec_path.exists():
        try:
            recs = json.loads(rec_path.read_text())
            rows = [
                {"stage": k, "finished": v.get("finished", ""), "seconds": v.get("seconds")}
                for k, v in recs.items()
            ]
        except ValueError:
            rows = []
    parts = []
    if rows:
        parts.append(table_html(pd.DataFrame(rows), 1))
    files = ", ".join(f"<code>{esc(p.name)}</code>" for p in b.figures)
    parts.append(
        f"<p>Figures saved next to this page: {files}. Tables it draws from are in "
        "<code>tables/</code>.</p>"
    )
    return Section("run", "Run", "".join(parts))


# (id, title, builder) of every section, in page order; the id and title name a section whose
# builder fails.
SECTIONS: list[tuple[str, str, Callable[[ReportBuilder], Section]]] = [
    ("summary", "Summary", section_summary),
    ("task", "Task and data", section_task),
    ("map", "The trained (MAP) model", section_map),
    ("set", "The Rashomon set", section_set),
    ("multiplicity", "Predictive multiplicity", section_multiplicity),
    ("desiderata", "Desiderata across the set", section_desiderata),
    ("selection", "Best-in-set selection", section_selection),
    ("ensembles", "Ensembles and abstention", section_ensembles),
    ("lsi", "Laplace Sample Information", section_lsi),
    ("patients", "The most arbitrary patients", section_patients),
    ("robustness", "Robustness", section_robustness),
    ("run", "Run", section_run),
]
ERRORS_FILE = "errors.txt"  # tracebacks of the parts of the report that failed


@dataclass(frozen=True)
class SectionFailure:
    """A part of the report that raised while it was built or drawn."""

    id: str
    title: str
    reason: str  # one line
    traceback: str


@dataclass
class Report:
    """What `write_report` wrote: the page and the parts that failed (empty when none did)."""

    page: Path
    failures: list[SectionFailure] = field(default_factory=list)


def build_section(
    b: ReportBuilder, id: str, title: str, make: Callable[[ReportBuilder], Section]
) -> tuple[Section, SectionFailure | None]:
    """One section, fail-safe: a section that raises shows a failure box with its name and the
    one-line reason instead, and the figures it had saved are removed with it (every PNG next to
    the page stays one the page embeds)."""
    before = len(b.figures)
    try:
        return make(b), None
    except Exception as exc:
        for path in b.figures[before:]:
            path.unlink(missing_ok=True)
        del b.figures[before:]
        failure = SectionFailure(id, title, one_line(exc), traceback.format_exc())
        body = failure_box(
            f"The section “{title}”",
            failure.reason,
            f"The rest of the report is unaffected; the traceback is in "
            f"<code>{ERRORS_FILE}</code> next to this page.",
        )
        return Section(id, title, body, "failed"), failure


def render_page(data: RunData, sections: list[Section]) -> str:
    info = data.task_info
    name = info.get("name") or (data.config.get("data") or {}).get("dataset", "run")
    arch = (data.checkpoint.get("spec") or {}).get("arch") or (data.config.get("train") or {}).get(
        "arch", ""
    )
    source = data.summaries.get("sample", {}).get("source") or (
        data.config.get("sample") or {}
    ).get("source", "")
    subtitle = " · ".join(
        x
        for x in (arch, f"{source} set" if source else "", f"seed {data.config.get('seed', 0)}")
        if x
    )
    meta = (
        f"run <code>{esc(data.run_dir.name)}</code><br>generated {time.strftime('%Y-%m-%d %H:%M')}"
    )
    failed = [s.id for s in sections if s.extra_class == "failed"]
    nav = nav_html([(s.id, s.title) for s in sections], failed)
    body = "\n".join(section_html(s.id, s.title, s.body, s.extra_class) for s in sections)
    return page(f"Rashomon audit: {name}", body, subtitle=subtitle, meta=meta, nav=nav)


def write_report(
    run_dir: Path, out_dir: Path, task: Any = None, load_images: bool = True
) -> Report:
    """Write report.html, one PNG per figure, summary.txt and tables/ into `out_dir`.

    `task` (optional) supplies patient images; by default it is loaded from config.yaml's data
    section, and the image panels say why when that fails. A section that fails shows a failure
    box and the others are still written (tracebacks in errors.txt); a run directory without the
    required stages is a RashomonError. Returns the page and the failed parts.
    """
    from rashomon.report.summary import summary_text

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    data = load_run(run_dir, task=task, load_images=load_images)
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = ReportBuilder(data, out_dir)
    sections, failures = [], []
    for id, title, make in SECTIONS:
        section, failure = build_section(builder, id, title, make)
        sections.append(section)
        if failure is not None:
            failures.append(failure)
    try:
        text = summary_text(data)
    except Exception as exc:
        failures.append(
            SectionFailure("summary.txt", "summary.txt", one_line(exc), traceback.format_exc())
        )
        text = f"The summary could not be computed ({one_line(exc)}); see the report.\n"
    (out_dir / "summary.txt").write_text(text)
    tables = out_dir / "tables"
    tables.mkdir(exist_ok=True)
    for key, (stage, name) in TABLES.items():
        if key in data.tables:
            shutil.copyfile(run_dir / stage / name, tables / f"{stage}_{name}")
    errors = out_dir / ERRORS_FILE
    if failures:
        errors.write_text("\n".join(f"--- {f.title}\n{f.traceback}" for f in failures))
    else:
        errors.unlink(missing_ok=True)
    path = out_dir / "report.html"
    path.write_text(render_page(data, sections), encoding="utf-8")
    return Report(path, failures)


def build_report(run_dir: Path, out_dir: Path, task: Any = None, load_images: bool = True) -> Path:
    """`write_report`, returning the path of report.html."""
    return write_report(run_dir, out_dir, task=task, load_images=load_images).page
