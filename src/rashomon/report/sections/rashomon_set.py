"""The Rashomon set: how it was built, how many models survive each ε, and where they lie."""

from __future__ import annotations

from typing import Any

from rashomon.report import plots
from rashomon.report.kit import esc, kv_table, table_html
from rashomon.report.load import RunData
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.summary import kept_models


def set_facts(d: RunData) -> list[tuple[str, Any]]:
    """(name, value) rows of the set: its source and the options the sample stage resolved and
    recorded, its size, the audit ε and the stage's timings."""
    s = d.sample.summary or {}
    source = d.sample.source
    kept, total = kept_models(d)
    pairs: list[tuple[str, Any]] = [("source", source)]
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
    return pairs


def build(b: Builder) -> str:
    """The Rashomon set section (HTML): the filter on validation, the models kept as ε grows, their
    distances."""
    d = b.data
    pairs = set_facts(d)
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
    return "".join(parts)


SET = SectionSpec("set", "The Rashomon set", build)
