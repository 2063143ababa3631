"""Desiderata across the set: the spread of every metric over the equally good models."""

from __future__ import annotations

from rashomon.report import plots
from rashomon.report.kit import table_html
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import desiderata_metrics, spread_pivot


def build(b: Builder) -> str:
    """The desiderata section (HTML): each model's test values beside the MAP model's."""
    d = b.data
    parts = [
        "<p>Each dot is one model of the Rashomon set, evaluated on the test set; the red "
        "diamond is the trained (MAP) model. A wide strip means the choice among equally good "
        "models changes that property.</p>"
    ]
    pm = d.table("per_model_test")
    if pm is not None:
        metrics = desiderata_metrics(pm)
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
        parts.append(
            f"<h3>Spread table at ε = {d.epsilon:g}</h3>"
            + table_html(spread_pivot(mt, d.epsilon), 4)
        )
    else:
        parts.append(b.missing("metrics", "spread table"))
    return "".join(parts)


DESIDERATA = SectionSpec("desiderata", "Desiderata across the set", build)
