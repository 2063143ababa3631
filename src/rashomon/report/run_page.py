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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
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
from rashomon.report.load import RunData, load_run
from rashomon.report.summary import (
    arbitrariness,
    degenerate_warning,
    kept_models,
    pct,
    rule_label,
    skip_notes,
    summary_sentences,
    worst_over_labels,
)

TOP_PATIENTS = 10
TOP_LSI = 16
SELECTION_PLOT_ROWS = 30  # multilabel: the plot shows the real gains and losses, at most these


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
    what = "finding on some label" if d.labels else "diagnosis"
    cards = [
        (pct(a.share, 1), f"of test patients get a different {what} from some equally good model")
    ]
    if kept is not None:
        cards.append(
            (
                f"{kept}" + (f" / {total}" if total else ""),
                f"models in the Rashomon set (ε = {d.epsilon:g})",
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
            if split == "test" and ps is not None and S.TRUE_LABEL in ps:
                counts = _class_counts(ps[S.TRUE_LABEL].to_numpy(), len(names))
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


def class_weight_text(train_summary: dict[str, Any], class_names: Sequence[str]) -> str:
    """How the MAP model weighted its classes, in words: the loss the Rashomon filter uses."""
    weight = train_summary.get("class_weight")
    if not weight:
        return "cross-entropy, classes unweighted (the Rashomon filter's loss too)"
    names = list(class_names) or [str(i) for i in range(len(weight))]
    how = (
        "auto: the training split is imbalanced"
        if train_summary.get("class_weights") == ("auto")
        else "as configured"
    )
    each = ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weight, strict=False))
    return (
        f"cross-entropy with inverse-frequency class weights ({each}; {how}); the checkpoint "
        "and the Rashomon filter use the same weighted loss"
    )


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
    pairs.append(("loss", class_weight_text(t, d.class_names)))
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
    s = d.sample.summary or {}
    source = d.sample.source
    kept, total = kept_models(d)
    pairs: list[tuple[str, Any]] = [("source", source)]
    # The options the set was built with, as the sample stage resolved and recorded them.
    for k, v in d.sample.options.items():
        if v is not None:
            pairs.append((f"{source} {k}", v))
    if total is not None:
        pairs.append(("models sampled (M)", total))
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
    if surv is not None and len(surv):
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
    if pm is not None:
        figs.append(
            b.figure(
                plots.set_distance(pm, d.epsilon),
                "set_distance",
                "Each sampled model: its distance from the trained weights θ* and "
                "its validation loss.",
            )
        )
    else:
        parts.append(b.missing("per_model", "per-model table"))
    if figs:
        parts.append(f'<div class="row">{"".join(figs)}</div>')
    return Section("set", "The Rashomon set", "".join(parts))


def section_multiplicity(b: ReportBuilder) -> Section:
    d = b.data
    parts = []
    ext = d.table("extremes")
    e = d.summaries.get("evaluate") or {}
    if ext is not None and len(ext) and "extremes_ambiguity" in e:
        bound = e.get("extremes_set") or {}
        sampled = arbitrariness(d).share
        parts.append(
            "<p><b>Upper line (exact, last layer).</b> Over every last layer whose validation "
            f"loss is within ε = {bound.get('epsilon', d.epsilon):g} and whose training "
            f"objective is within {bound.get('train_epsilon', d.epsilon):g} of the trained "
            f"model's, {pct(e['extremes_ambiguity'])} of test patients could receive a different "
            f"diagnosis (each patient's lowest and highest probability solved exactly, "
            f"<code>evaluate/extremes.csv</code>, {e.get('extremes_seconds', 0):g} s); the sampled "
            f"set reaches {pct(sampled)}. No last-layer set can exceed this line; retrained "
            "networks, which change every layer, can.</p>"
        )
    mult = d.table("multiplicity")
    if mult is not None:
        overall = mult[mult[S.GROUP].astype(str) == "all"]
        parts.append(
            "<h3>Across all test patients</h3>"
            + table_html(overall[[S.METRIC, S.VALUE]].reset_index(drop=True), 4)
        )
    else:
        parts.append(b.missing("multiplicity", "multiplicity table"))
    ps = d.table("per_sample")
    if ps is not None and S.DISAGREEMENT in ps:
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
    if conv is not None:
        parts.append(
            b.figure(
                plots.convergence(conv),
                "convergence",
                "Convergence: multiplicity measured on the first n models of the set. A curve "
                "still rising at the right means more models would find more arbitrary patients.",
            )
        )
    elif d.kind == "multilabel":
        parts.append(b.note(MULTILABEL_NOTE.format(what="The convergence curve")))
    else:
        parts.append(b.missing("convergence", "convergence curve"))
    attrs = d.attributes
    if ps is not None and attrs and S.AMBIGUOUS in ps:
        parts.append(
            "<h3>Per patient group</h3>"
            + b.figure(
                plots.group_bars(ps, attrs),
                "multiplicity_groups",
                "Share of each group's test patients whose diagnosis changes with the model "
                "(dashed: all patients). Derived proxies are lighter.",
            )
        )
    if mult is not None and mult[S.GROUP].nunique() > 1:
        index = [c for c in mult.columns if c not in (S.METRIC, S.VALUE)]
        pivot = mult.pivot_table(
            index=index, columns=S.METRIC, values=S.VALUE, aggfunc="first", sort=False
        ).reset_index()
        pivot[S.GROUP] = [group_label(g, d.attributes) for g in pivot[S.GROUP]]
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


def section_desiderata(b: ReportBuilder) -> Section:
    d = b.data
    parts = [
        "<p>Each dot is one model of the Rashomon set, evaluated on the test set; the red "
        "diamond is the trained (MAP) model. A wide strip means the choice among equally good "
        "models changes that property.</p>"
    ]
    pm = d.table("per_model_test")
    if pm is not None:
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
    if mt is not None:
        at = mt[np.isclose(mt[S.EPSILON].astype(float), d.epsilon)]
        sub = at if len(at) else mt
        # per-group values stay in the CSV; overall metrics and gaps here
        sub = sub[~sub[S.GROUP].astype(str).str.contains("=")]
        index = [
            c
            for c in (S.METRIC, S.GROUP, S.SOURCE, S.EPSILON)
            if c == S.METRIC or sub[c].nunique() > 1
        ]
        pivot = sub.pivot_table(
            index=index, columns=S.STAT, values=S.VALUE, aggfunc="first", sort=False
        ).reset_index()
        order = [
            c
            for c in ("map", "map_rank", "mean", "std", "min", "q05", "q50", "q95", "max")
            if c in pivot.columns
        ]
        pivot = pivot[index + order + [c for c in pivot.columns if c not in index + order]]
        parts.append(f"<h3>Spread table at ε = {d.epsilon:g}</h3>" + table_html(pivot, 4))
    else:
        parts.append(b.missing("metrics", "spread table"))
    return Section("desiderata", "Desiderata across the set", "".join(parts))


def section_selection(b: ReportBuilder) -> Section:
    d = b.data
    sel = d.table("selection")
    skipped = skip_notes(d, "selection")
    if sel is None:
        body = (
            warning_box("Selection skipped:", esc("; ".join(skipped)) + ".")
            if skipped
            else b.missing("selection", "selection results")
        )
        return Section("selection", "Best-in-set selection", body)
    sel = with_label_names(d, sel)
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
    if skipped:  # multilabel: labels whose trained model is degenerate
        parts.append(warning_box("Selection skipped for some labels:", esc("; ".join(skipped))))
    shown, caption = sel, ""
    if S.LABEL in sel:
        # One row per (label, desideratum): the plot keeps the verdicts that are not noise.
        real = sel[sel[S.VERDICT].astype(str).str.startswith("real")]
        shown = real.head(SELECTION_PLOT_ROWS)
        caption = (
            f" Shown: the {len(shown)} of {len(sel)} (label, desideratum) pairs with a real gain "
            "or loss; the table lists them all."
        )
        sel = pd.concat([real, sel.drop(real.index)])
    if len(shown):
        parts.append(
            b.figure(
                plots.selection_gains(shown, S.DESIDERATUM),
                "selection",
                "Honest test gain of the best-in-set model (green: real gain, "
                f"grey: within selection noise, red: worse).{caption}",
            )
        )
    else:
        parts.append(b.note("No label's best-in-set model gains or loses beyond selection noise."))
    parts.append(table_html(selection_table(sel), 4))
    par = d.table("pareto")
    if par is not None and len(par):
        parts.append(
            "<h3>Validation Pareto fronts</h3>"
            + table_html(with_label_names(d, par), 4, max_rows=25)
        )
    return Section("selection", "Best-in-set selection", "".join(parts))


def section_fairness(b: ReportBuilder) -> Section:
    """Is there a fairer model among the equally good ones? The answer per real attribute first,
    the random attribute's as the noise floor, derived proxies last and smaller."""
    from rashomon.report.fairness import NULL_ATTRIBUTE, answers

    d = b.data
    title = "Is there a fairer model in the set?"
    found = answers(d)
    if not found:
        reason = skip_notes(d, "selection")
        text = (
            f"Selection was skipped: {esc('; '.join(reason))}."
            if reason
            else "No fairness desideratum was selected for (no attribute, a multilabel task, "
            "or <code>decide.select</code> left them out)."
        )
        return Section("fairness", title, b.note(text))
    real = [a for a in found if not a.derived]
    null = [a for a in found if a.attribute == NULL_ATTRIBUTE]
    proxies = [a for a in found if a.derived and a.attribute != NULL_ATTRIBUTE]
    parts = []
    if real:
        parts.append("<h3>Real patient attributes</h3><ul>")
        parts += [f"<li>{esc(a.sentence)}</li>" for a in real]
        parts.append("</ul>")
    else:
        parts.append(
            b.note("This task has no real patient attributes; only derived proxies are shown.")
        )
    if null:
        parts.append(
            "<h3>Noise floor: the random attribute</h3><p>The same selection on a seeded random "
            "split of the patients. A gain on a real attribute that is not larger than this one "
            "is what selection finds by chance.</p><ul>"
        )
        parts += [f"<li>{esc(a.sentence)}</li>" for a in null]
        parts.append("</ul>")
    values, sel = d.table("selection_values"), d.table("selection")
    first = (real or proxies or null)[0]
    if values is not None and sel is not None and "accuracy" in set(values[S.DESIDERATUM]):
        rows = sel.set_index(S.DESIDERATUM)
        if first.desideratum in rows.index and "accuracy" in rows.index:
            map_point = (rows.loc[first.desideratum, S.MAP_VAL], rows.loc["accuracy", S.MAP_VAL])
            parts.append(
                b.figure(
                    plots.fairness_front(
                        values, d.table("postprocess"), first.desideratum, map_point
                    ),
                    "fairness_front",
                    "Validation accuracy against the fairness desideratum for every model of the "
                    "Rashomon set, the trained model, and fairlearn's ThresholdOptimizer fitted "
                    "on validation (on the trained model and on set members): does the free "
                    "choice among equally good models reach what post-processing buys?",
                )  # fmt: skip
            )
    if proxies:
        parts.append("<details><summary>Derived proxies (not patient attributes)</summary><ul>")
        parts += [f"<li>{esc(a.sentence)}</li>" for a in proxies]
        parts.append("</ul></details>")
    return Section("fairness", title, "".join(parts))


def section_validity(b: ReportBuilder) -> Section:
    """How much of the truth the set finds, on this task: `rashomon validate` retrained K
    networks; without it, the study's figure for this kind of set, or a pointer."""
    d = b.data
    title = "How close is the set to retraining?"
    v = d.summaries.get("validate")
    if not v:
        from rashomon.report.study import validity_line

        cfg_d, cfg_t = d.config.get("data") or {}, d.config.get("train") or {}
        line = validity_line(
            str(cfg_d.get("dataset", "")), str(cfg_t.get("arch", "")), d.sample.summary or {}
        )
        text = (line + " " if line else "") + (
            f"Check it on this task: <code>rashomon validate {esc(str(d.run_dir))} --retrain "
            "30</code> retrains networks like the trained one and measures how many of their "
            "arbitrary patients this set finds."
        )
        return Section("validity", title, f"<p>{text}</p>")
    rows = [
        ("retrained networks (within ε)", f"{v.get('retrained')} ({v.get('retrained_in_set')})"),
        ("patients they flag", v.get("retrained_flags")),
        ("the set's flag recall", v.get("flag_recall")),
        ("the set's flag precision", v.get("flag_precision")),
        ("rank agreement ρ (disagreement)", v.get("spearman_disagreement")),
        (
            "ambiguity: set / retrained",
            f"{v.get('ambiguity_set')} / {v.get('ambiguity_retrained')}",
        ),
    ]
    ceiling = v.get("ceiling") or {}
    if ceiling:
        rows.append(
            (
                "split-half ceiling: recall / precision",
                f"{ceiling.get('flag_recall')} / {ceiling.get('flag_precision')}",
            )
        )
    table = pd.DataFrame(rows, columns=["", "value"])
    return Section(
        "validity",
        title,
        "<p>The set against networks retrained like the trained one (seeds differ): recall is "
        "the share of the retrained set's arbitrary patients the set also flags; two halves of "
        "the retrained set against each other give the ceiling a set can be read against.</p>"
        + table_html(table, 4),
    )


def with_label_names(d: RunData, table: pd.DataFrame) -> pd.DataFrame:
    """A multilabel decide table with its `label` column named by the task's class names and
    its desiderata read `label: desideratum`; other tables unchanged."""
    if S.LABEL not in table or not d.labels:
        return table
    t = table.copy()
    names = [d.labels.get(int(lab), f"label {lab}") for lab in t[S.LABEL]]
    t[S.LABEL] = names
    if S.DESIDERATUM in t:
        t[S.DESIDERATUM] = [f"{n}: {x}" for n, x in zip(names, t[S.DESIDERATUM], strict=True)]
        t = t.drop(columns=S.LABEL)
    return t


def selection_table(sel: pd.DataFrame) -> pd.DataFrame:
    """The selection table with the interval in one column and the direction as an arrow."""
    t = sel.copy()
    t["95 % interval"] = [
        f"[{lo:+.4f}, {hi:+.4f}]"
        for lo, hi in zip(t[S.GAIN_CI_LOW], t[S.GAIN_CI_HIGH], strict=True)
    ]
    t = t.drop(columns=[S.GAIN_CI_LOW, S.GAIN_CI_HIGH])
    t[S.DESIDERATUM] = [
        f"{n}{' ↑' if bool(hib) else ' ↓'}"
        for n, hib in zip(t[S.DESIDERATUM], t[S.HIGHER_IS_BETTER], strict=True)
    ]
    t = t.drop(columns=S.HIGHER_IS_BETTER)
    first = [
        S.DESIDERATUM,
        S.MAP_TEST,
        S.CHOSEN,
        S.CHOSEN_VAL,
        S.CHOSEN_TEST,
        S.TEST_GAIN,
        "95 % interval",
        S.SPEARMAN_RHO,
        S.VERDICT,
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
    worst = ""
    if S.LABEL in ens:
        worst = " Multilabel: per k and rule, the worst label (lowest coverage, highest ambiguity)."
        parts.append(
            b.note(
                f"Every label is audited as its own binary task; shown is the worst of the "
                f"{ens[S.LABEL].nunique()} labels for each k and rule (ensembles.csv has every "
                "label)."
            )
        )
        ens = worst_over_labels(ens)
    parts.append(
        b.figure(
            plots.ensemble_curves(ens),
            "ensembles",
            f"Coverage and residual ambiguity against the ensemble size.{worst}",
        )
    )
    t = ens.copy()
    t["rule "] = [rule_label(r, th) for r, th in zip(t[S.RULE], t[S.THRESHOLD], strict=True)]
    index = [S.COMBINE] if t[S.COMBINE].nunique() > 1 else []
    index.append(S.K)
    tabs = []
    for col, title in (
        (S.COVERAGE, "Coverage"),
        (S.RESIDUAL_AMBIGUITY, "Residual ambiguity"),
        (S.COVERED_ACCURACY, "Accuracy on decided patients"),
    ):
        piv = t.pivot_table(index=index, columns="rule ", values=col, aggfunc="mean", sort=False)
        piv = (100 * piv).round(1).reset_index()
        piv[S.K] = piv[S.K].astype(int)
        piv.columns.name = None
        tabs.append(f"<div><h3>{title} (%)</h3>{table_html(piv, 1)}</div>")
    parts.append("".join(tabs))
    return Section("ensembles", "Ensembles and abstention", "".join(parts))


def section_lsi(b: ReportBuilder) -> Section:
    d = b.data
    lsi = d.table("lsi")
    if lsi is None or S.DISAGREEMENT not in lsi:
        if lsi is not None:
            note = "the sample stage stored no training predictions to measure disagreement on"
        elif "decide" in d.stages:
            note = "enable it with <code>decide.lsi: true</code>"
        else:
            note = d.missing_note("lsi")
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
    top = lsi.sort_values(S.LSI, ascending=False).head(TOP_LSI)
    task = d.task
    if task is not None and task.train.raw is not None:
        y = task.train.y.numpy()
        names = d.class_names
        imgs, titles = [], []
        for _, r in top.iterrows():
            i = int(r[S.SAMPLE])
            imgs.append(task.train.raw[i])
            lab = names[int(y[i])] if y.ndim == 1 and int(y[i]) < len(names) else str(y[i])
            titles.append(f"#{i} · {lab}\nLSI {r[S.LSI]:.2g}")
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
    title = "The most arbitrary patients"
    ps = d.table("per_sample")
    if ps is None:
        return Section("patients", title, b.missing("per_sample", "per-patient table"))
    if d.kind == "multilabel":
        return Section(
            "patients",
            title,
            b.note(
                "Multilabel runs hold a viable prediction range per label "
                "(<code>label&lt;l&gt;.vpr_low</code>, <code>label&lt;l&gt;.vpr_high</code> in "
                "<code>evaluate/per_sample.csv</code>); this section draws one range per "
                "patient and is left out."
            ),
        )
    names = d.class_names
    # Binary: the positive class's range; multiclass: class 1's, drawn the same way.
    low, high = S.VPR_LOW, S.VPR_HIGH
    if low not in ps:
        low, high = S.class_column(S.VPR_LOW, 1), S.class_column(S.VPR_HIGH, 1)
    order = ps.assign(_w=ps[high] - ps[low]).sort_values(
        [S.DISAGREEMENT, "_w"], ascending=False, kind="stable"
    )
    top = order[ps[S.AMBIGUOUS].loc[order.index].to_numpy(bool)].head(TOP_PATIENTS)
    if not len(top):
        return Section(
            "patients",
            title,
            "<p>No test patient gets a different diagnosis from any model of the set.</p>",
        )
    positive = names[1] if len(names) > 1 else "positive"
    captions = []
    for _, r in top.iterrows():
        lab = int(r[S.TRUE_LABEL])
        cap = f"#{int(r[S.SAMPLE])} · true: {names[lab] if lab < len(names) else '?'}"
        cap += f"\nflips: {pct(float(r[S.FLIP_RATE]))} of models"
        captions.append(cap)
    top = top.assign(caption=captions)
    images = None
    if d.task is not None and d.task.test.raw is not None:
        images = [d.task.test.raw[i] for i in top[S.SAMPLE].astype(int).to_numpy()]
    parts = [
        "<p>The test patients on whom the equally good models disagree most. Each bar is the "
        f"viable prediction range: the lowest and highest probability of {esc(positive)} that a "
        "model of the Rashomon set gives this patient; where it crosses the threshold, the "
        "diagnosis depends on the model.</p>",
        b.figure(
            plots.patient_ranges(top, images, positive, low=low, high=high),
            "patients",
            "Bar: lowest to highest probability over the models of the set; ◆ the trained "
            "(MAP) model; dashed line: the decision threshold.",
        ),
    ]
    if images is None:
        parts.append(b.note(f"Images not shown: {esc(d.task_error or 'no task images')}."))
    cols = [
        S.SAMPLE,
        S.TRUE_LABEL,
        S.MAP_LABEL,
        S.MAP_PROB,
        S.DISAGREEMENT,
        S.CAPACITY,
        low,
        high,
        S.FLIP_RATE,
    ]
    tab = top[[c for c in cols if c in top]].copy()
    for c in (S.TRUE_LABEL, S.MAP_LABEL):
        tab[c] = [names[int(v)] if 0 <= int(v) < len(names) else str(v) for v in tab[c]]
    pat = d.table("patients")
    if pat is not None:
        # What the decide stage's ensembles do with these patients.
        extra = [c for c in pat.columns if c not in tab.columns or c == S.SAMPLE]
        extra = [c for c in extra if c not in (S.AMBIGUOUS, S.MAP_CORRECT)]
        tab = tab.merge(pat[extra], how="left", on=S.SAMPLE)
    parts.append(table_html(tab.reset_index(drop=True), 3))
    return Section("patients", title, "".join(parts))


def section_robustness(b: ReportBuilder) -> Section:
    d = b.data
    rob = d.table("robustness")
    if rob is None:
        return Section(
            "robustness",
            "Robustness",
            (
                '<p class="note missing">No robustness results: robustness.csv is written by '
                "<code>rashomon evaluate</code> when <code>evaluate.metrics</code> includes "
                "<code>robustness</code> (corruptions and/or attacks configured).</p>"
            ),
        )
    metric = "accuracy" if (rob[S.METRIC] == "accuracy").any() else str(rob[S.METRIC].iloc[0])
    rob = rob[rob[S.METRIC] == metric]
    fam = rob[S.FAMILY].astype(str)
    clean = rob[fam == "clean"]
    rob = rob[fam.isin(["corruption", "attack"])].copy()
    att_rows = rob[S.FAMILY] == "attack"
    rob.loc[att_rows, S.SEVERITY] = rob.loc[att_rows, S.EPSILON]  # attacks: the budget is x
    # The set's band: transfer attacks from the MAP model when present.
    transfer = att_rows & (rob[S.MODE] == "transfer")
    if transfer.any():
        rob = rob[~(att_rows & (rob[S.MODEL] != -1) & ~transfer)]
    corr_names = rob.loc[rob[S.FAMILY] == "corruption", S.CORRUPTION].unique()
    if len(clean) and len(corr_names):  # severity 0 = clean images on every curve
        zero = [
            clean.assign(**{S.CORRUPTION: c, S.SEVERITY: 0, S.FAMILY: "corruption"})
            for c in corr_names
        ]
        rob = pd.concat([rob, *zero], ignore_index=True)
    is_attack = rob[S.FAMILY] == "attack"
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

    rec_path = d.run_dir / S.RECORDS
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
    ("validity", "How close is the set to retraining?", section_validity),
    ("desiderata", "Desiderata across the set", section_desiderata),
    ("fairness", "Is there a fairer model in the set?", section_fairness),
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
    source = data.sample.source
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
    for key in data.tables:
        t = S.TABLES[key]
        shutil.copyfile(t.path(run_dir), tables / f"{t.stage}_{t.file}")
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
