"""Choosing within the set: is there a fairer model (per patient attribute, against the random
attribute's noise floor, each gap read within the acquisition strata), and the best-in-set
selection of every desideratum."""

from __future__ import annotations

import pandas as pd

from rashomon import schema as S
from rashomon.report import plots
from rashomon.report.fairness import FairnessAnswer, answers
from rashomon.report.kit import esc, note, table_html, warning_box
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import (
    real_verdicts,
    selection_table,
    with_label_names,
    within_stratum_table,
)
from rashomon.report.strata import (
    DESIDERATUM_METRIC,
    EXPLAINED_SHARE,
    strata_to_read,
    stratum_gaps,
    stratum_sentence,
)
from rashomon.report.summary import acquisition_sentences, skip_notes
from rashomon.report.words import ACQUISITION, NULL, PATIENT, PROXY, attr_label

SELECTION_PLOT_ROWS = 30  # multilabel: the plot shows the real gains and losses, at most these

GROUP_HEADINGS = {
    PATIENT: ("Real patient attributes", ""),
    ACQUISITION: (
        "Acquisition attributes",
        "How the image was taken, not who the patient is: a gap here is a property of the "
        "images (and of which patients get which kind of image), not of a patient group.",
    ),
    NULL: (
        "Noise floor: the random attribute",
        "The same selection on a seeded random split of the patients. A gain on a real "
        "attribute that is not larger than this one is what selection finds by chance.",
    ),
}


def _within_lines(b: Builder, a: FairnessAnswer, strata: list[str]) -> list[str]:
    """The within-stratum sentences of one gap line (`strata.stratum_sentence`)."""
    table, metric = b.data.table("within_stratum"), DESIDERATUM_METRIC.get(a.desideratum_prefix)
    if table is None or metric is None:
        return []
    out = []
    for s in strata:
        g = stratum_gaps(table, a.attribute, s, metric)
        if g is not None:
            label = attr_label(s, b.data.attributes.get(s, {}))
            out.append(stratum_sentence(g, label))
    return out


def _answer_items(b: Builder, found: list[FairnessAnswer], strata: list[str]) -> str:
    items = []
    for a in found:
        within = _within_lines(b, a, strata) if a.kind == PATIENT else []
        extra = "".join(f'<span class="within">{esc(t)}</span>' for t in within)
        items.append(f"<li>{esc(a.sentence)}{extra}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _within_details(b: Builder) -> str:
    table = b.data.table("within_stratum")
    if table is None or not len(table):
        return ""
    shown = within_stratum_table(table, b.data.attributes)
    return (
        "<details><summary>Every gap within every acquisition stratum "
        "(evaluate/within_stratum.csv)</summary>"
        + note(
            "The trained model's gaps on test: over all patients, among the patients of each "
            "stratum (in brackets, the patients each rate counts: positives for a TPR gap, "
            "negatives for an FPR gap, everyone otherwise), and pooled, weighted by those "
            "counts; the last column is the pooled gap's 5–95 % range across the set."
        )
        + table_html(shown, 3, max_rows=None)
        + "</details>"
    )


def build_fairness(b: Builder) -> str:
    """Is there a fairer model among the equally good ones? The answer per real patient
    attribute first, each gap line read within the acquisition strata; then the acquisition
    attributes, the random attribute's answers as the noise floor, derived proxies last."""
    d = b.data
    found = answers(d)
    if not found:
        reason = skip_notes(d, "selection")
        text = (
            f"Selection was skipped: {esc('; '.join(reason))}."
            if reason
            else "No fairness desideratum was selected for (no attribute, a multilabel task, "
            "or <code>decide.select</code> left them out)."
        )
        return note(text)
    table = d.table("within_stratum")
    strata = strata_to_read(table, d.attributes) if table is not None and len(table) else []
    by_kind = {k: [a for a in found if a.kind == k] for k in (PATIENT, ACQUISITION, NULL, PROXY)}
    parts = []
    if not by_kind[PATIENT]:
        parts.append(
            note("This task has no real patient attributes; only the other kinds are shown.")
        )
    for kind in (PATIENT, ACQUISITION, NULL):
        if not by_kind[kind]:
            continue
        heading, intro = GROUP_HEADINGS[kind]
        parts.append(f"<h3>{heading}</h3>" + (f"<p>{intro}</p>" if intro else ""))
        if kind == ACQUISITION:
            parts += [f"<p>{esc(t)}</p>" for t in acquisition_sentences(d)]
        if kind == PATIENT and strata:
            names = ", ".join(attr_label(s, d.attributes.get(s, {})) for s in strata)
            parts.append(
                note(
                    f"Each gap is also read within {esc(names)}: the trained model's gap among "
                    "the patients of one stratum at a time, and pooled over the strata. The "
                    f"stratum explains the gap when the pooled gap is below {EXPLAINED_SHARE:g} "
                    "of the gap over all patients and no larger than the random split's pooled "
                    "gap within the same strata."
                )
            )
        parts.append(_answer_items(b, by_kind[kind], strata))
    values, sel = d.table("selection_values"), d.table("selection")
    first = (by_kind[PATIENT] or by_kind[ACQUISITION] or by_kind[PROXY] or by_kind[NULL])[0]
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
    parts.append(_within_details(b))
    if by_kind[PROXY]:
        parts.append("<details><summary>Derived proxies (not patient attributes)</summary><ul>")
        parts += [f"<li>{esc(a.sentence)}</li>" for a in by_kind[PROXY]]
        parts.append("</ul></details>")
    return "".join(parts)


def build_selection(b: Builder) -> str:
    """The selection section (HTML): best-in-set models per desideratum, confirmed on test."""
    d = b.data
    sel = d.table("selection")
    skipped = skip_notes(d, "selection")
    if sel is None:
        if skipped:
            return warning_box("Selection skipped:", esc("; ".join(skipped)) + ".")
        return b.missing("selection", "selection results")
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
        real = real_verdicts(sel)
        shown = real.head(SELECTION_PLOT_ROWS)
        caption = (
            f" Shown: the {len(shown)} of {len(sel)} (label, desideratum) pairs with a real gain "
            "or loss; the table lists them all."
        )
        sel = pd.concat([real, sel.drop(real.index)])
    # named after the split above: naming the labels drops the label column it reads
    sel, shown = with_label_names(sel, d.labels), with_label_names(shown, d.labels)
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
        parts.append(note("No label's best-in-set model gains or loses beyond selection noise."))
    parts.append(
        note(
            "<i>Detectable gain (80 % power)</i>: the true gain this test split detects four "
            "times in five, (z<sub>0.975</sub> + z<sub>0.8</sub>) × the bootstrap standard "
            "error of the gain, at the unadjusted α; Holm's correction over the desiderata "
            "raises the bar, so read it as a lower bound. Where no gain is real and this bar "
            "exceeds the observed gain, a true gain below it would most likely have been missed."
        )
    )
    parts.append(table_html(selection_table(sel), 3))
    par = d.table("pareto")
    if par is not None and len(par):
        parts.append(
            "<h3>Validation Pareto fronts</h3>"
            + table_html(with_label_names(par, d.labels), 4, max_rows=25)
        )
    return "".join(parts)


FAIRNESS = SectionSpec("fairness", "Is there a fairer model in the set?", build_fairness)
SELECTION = SectionSpec("selection", "Best-in-set selection", build_selection)
