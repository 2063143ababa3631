"""Predictive multiplicity: how much the equally good models disagree, over all test patients,
per patient group, and on the most arbitrary patients one by one."""

from __future__ import annotations

from rashomon import schema as S
from rashomon.report import plots
from rashomon.report.kit import esc, note, table_html
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import (
    most_arbitrary,
    multiplicity_by_group,
    overall_multiplicity,
    patient_table,
    range_columns,
)
from rashomon.report.summary import arbitrariness, extremes_vacuous, pct
from rashomon.report.words import group_label

TOP_PATIENTS = 10

# Multilabel runs audit each label as its own binary task; per-patient tables have one block of
# columns per label, which the single-label panels do not draw.
MULTILABEL_NOTE = (
    "{what} covers single-label tasks; for a multilabel task each label's per-patient values "
    "are the <code>label&lt;j&gt;.*</code> columns of <code>evaluate/per_sample.csv</code>."
)


def extremes_paragraph(b: Builder) -> str:
    """The exact last-layer upper line, when evaluate computed it; else ''."""
    d = b.data
    ext = d.table("extremes")
    e = d.summaries.get("evaluate") or {}
    if ext is None or not len(ext) or "extremes_ambiguity" not in e:
        return ""
    bound = e.get("extremes_set") or {}
    sampled = arbitrariness(d).share
    why = extremes_vacuous(e)
    if why is not None:
        return (
            "<p><b>Exact last-layer bound: vacuous for this model.</b> Over every last layer "
            f"whose validation loss is within ε = {bound.get('epsilon', d.epsilon):g} and whose "
            f"training objective is within {bound.get('train_epsilon', d.epsilon):g} of the "
            f"trained model's, {esc(why)}. It is no upper line here (the sampled set reaches "
            f"{pct(sampled)}); each patient's extremes are in <code>evaluate/extremes.csv</code> "
            f"({e.get('extremes_seconds', 0):g} s).</p>"
        )
    return (
        "<p><b>Upper line (exact, last layer).</b> Over every last layer whose validation "
        f"loss is within ε = {bound.get('epsilon', d.epsilon):g} and whose training "
        f"objective is within {bound.get('train_epsilon', d.epsilon):g} of the trained "
        f"model's, {pct(e['extremes_ambiguity'])} of test patients could receive a different "
        f"diagnosis (each patient's lowest and highest probability solved exactly, "
        f"<code>evaluate/extremes.csv</code>, {e.get('extremes_seconds', 0):g} s); the sampled "
        f"set reaches {pct(sampled)}. No last-layer set can exceed this line; retrained "
        "networks, which change every layer, can.</p>"
    )


def build_multiplicity(b: Builder) -> str:
    """The multiplicity section (HTML): disagreement across the set and its upper line."""
    d = b.data
    parts = []
    upper = extremes_paragraph(b)
    if upper:
        parts.append(upper)
    mult = d.table("multiplicity")
    if mult is not None:
        parts.append(
            "<h3>Across all test patients</h3>" + table_html(overall_multiplicity(mult), 4)
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
        parts.append(note(MULTILABEL_NOTE.format(what="The convergence curve")))
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
    groups = multiplicity_by_group(mult) if mult is not None else None
    if groups is not None:
        groups[S.GROUP] = [group_label(g, d.attributes) for g in groups[S.GROUP]]
        parts.append(table_html(groups, 4))
    return "".join(parts)


def build_patients(b: Builder) -> str:
    """The patients section (HTML): the test patients whose prediction the set leaves arbitrary."""
    d = b.data
    ps = d.table("per_sample")
    if ps is None:
        return b.missing("per_sample", "per-patient table")
    if d.kind == "multilabel":
        return note(
            "Multilabel runs hold a viable prediction range per label "
            "(<code>label&lt;l&gt;.vpr_low</code>, <code>label&lt;l&gt;.vpr_high</code> in "
            "<code>evaluate/per_sample.csv</code>); this section draws one range per "
            "patient and is left out."
        )
    names = d.class_names
    low, high = range_columns(ps)
    top = most_arbitrary(ps, low, high, TOP_PATIENTS)
    if not len(top):
        return "<p>No test patient gets a different diagnosis from any model of the set.</p>"
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
        parts.append(note(f"Images not shown: {esc(d.task_error or 'no task images')}."))
    parts.append(table_html(patient_table(top, names, low, high, d.table("patients")), 3))
    return "".join(parts)


MULTIPLICITY = SectionSpec("multiplicity", "Predictive multiplicity", build_multiplicity)
PATIENTS = SectionSpec("patients", "The most arbitrary patients", build_patients)
