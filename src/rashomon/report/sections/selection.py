"""Choosing within the set: is there a fairer model (per patient attribute, against the random
attribute's noise floor), and the best-in-set selection of every desideratum."""

from __future__ import annotations

import pandas as pd

from rashomon import schema as S
from rashomon.report import plots
from rashomon.report.fairness import NULL_ATTRIBUTE, answers
from rashomon.report.kit import esc, note, table_html, warning_box
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import real_verdicts, selection_table, with_label_names
from rashomon.report.summary import skip_notes

SELECTION_PLOT_ROWS = 30  # multilabel: the plot shows the real gains and losses, at most these


def build_fairness(b: Builder) -> str:
    """Is there a fairer model among the equally good ones? The answer per real attribute first,
    the random attribute's as the noise floor, derived proxies last and smaller."""
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
            note("This task has no real patient attributes; only derived proxies are shown.")
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
    return "".join(parts)


def build_selection(b: Builder) -> str:
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
    parts.append(table_html(selection_table(sel), 4))
    par = d.table("pareto")
    if par is not None and len(par):
        parts.append(
            "<h3>Validation Pareto fronts</h3>"
            + table_html(with_label_names(par, d.labels), 4, max_rows=25)
        )
    return "".join(parts)


FAIRNESS = SectionSpec("fairness", "Is there a fairer model in the set?", build_fairness)
SELECTION = SectionSpec("selection", "Best-in-set selection", build_selection)
