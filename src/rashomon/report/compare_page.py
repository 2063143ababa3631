"""The compare page (`rashomon compare`): every model set against the retrained set (the ground
truth) on the same test patients at one ε. The arithmetic is `rashomon.compare`'s; this module
only draws its two tables."""

from __future__ import annotations

import pandas as pd

from rashomon.report import kit, plots


def render_compare_page(table: pd.DataFrame, patients: pd.DataFrame, truth: str) -> str:
    """A self-contained page: the compare table (one row per set, then the ground truth's) and
    per-sample disagreement of each set against the ground truth's."""
    eps = table["epsilon"].iloc[0]
    intro = (
        f"<p>Ground truth: <b>{kit.esc(truth)}</b>. ε = {eps:g}; {len(patients)} test samples. "
        "Every set keeps its models within ε on its own validation data; flag precision and "
        "recall compare its arbitrary patients (some model of the set flips the MAP model's "
        "label) with the ground truth's, rho is the rank correlation of per-patient "
        "disagreement, <code>spread_ratio:</code> the set's spread of a desideratum over the "
        "ground truth's.</p>"
    )
    shown = table.drop(columns=[c for c in ("run_dir",) if c in table.columns])
    sections = [("sets", "Sets against the ground truth", intro + kit.table_html(shown, 4, None))]
    truth_col = f"disagreement:{truth}"
    others = [c for c in patients.columns if c.startswith("disagreement:") and c != truth_col]
    if others and truth_col in patients:
        png = kit.png_bytes(plots.disagreement_vs_truth(patients, truth_col, others))
        sections.append(
            (
                "patients",
                "Per-patient disagreement",
                kit.figure_html(
                    png,
                    "Each dot is a test patient: the disagreement of the retrained set (x) and of "
                    "the set named above the panel (y); on the diagonal the set finds the ground "
                    "truth's multiplicity.",
                    alt="disagreement against the ground truth",
                ),
            )
        )
    body = "\n".join(kit.section_html(i, t, b) for i, t, b in sections)
    nav = kit.nav_html([(i, t) for i, t, _ in sections])
    subtitle = f"{len(table) - 1} set(s) vs {truth}"
    return kit.page("rashomon compare", body, subtitle=subtitle, nav=nav)
