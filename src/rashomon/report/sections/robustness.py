"""Robustness: accuracy under corruptions and attacks, the set's band against the trained
model."""

from __future__ import annotations

from rashomon.report import plots
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import robustness_curves


def build(b: Builder) -> str:
    """The robustness section (HTML): the set under corruptions and attacks."""
    rob = b.data.table("robustness")
    if rob is None:
        return (
            '<p class="note missing">No robustness results: robustness.csv is written by '
            "<code>rashomon evaluate</code> when <code>evaluate.metrics</code> includes "
            "<code>robustness</code> (corruptions and/or attacks configured).</p>"
        )
    curves = robustness_curves(rob)
    corr, att, metric = curves.corruptions, curves.attacks, curves.metric
    if not len(corr) and not len(att):  # clean rows only
        return (
            '<p class="note missing">No corruption or attack was run (clean test accuracy '
            "only); set <code>evaluate.corruptions</code> or <code>evaluate.attacks</code>.</p>"
        )
    parts = [
        "<p>The band is the spread across the models of the set; the red line is the "
        "trained model. A wide band means robustness depends on the arbitrary choice of "
        "model.</p>"
    ]
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
    return "".join(parts)


ROBUSTNESS = SectionSpec("robustness", "Robustness", build)
