"""The compare page (`rashomon compare`): every model set against the retrained set (the ground
truth) on the same test patients at one ε. The arithmetic is `rashomon.compare`'s; this module
only draws its tables and figures."""

from __future__ import annotations

import pandas as pd

from rashomon.report import kit, plots


def render_compare_page(
    table: pd.DataFrame,
    patients: pd.DataFrame,
    truth: str,
    growth: pd.DataFrame | None = None,
    frontier: pd.DataFrame | None = None,
) -> str:
    """A self-contained page: the compare table (one row per set, then the ground truth's),
    per-sample disagreement of each set against the ground truth's and, given the growth table,
    ambiguity against the number of models."""
    eps = table["epsilon"].iloc[0]
    gt = table[table["ground_truth"].astype(bool)]
    h = int(gt["matched_models"].iloc[0]) if "matched_models" in table and len(gt) else None
    matched = (
        f"The headline figures are size-matched: {h} models of a set (drawn at random, "
        f"<code>matched_rounds</code> times) against a random half ({h}) of the ground truth; "
        "the ceiling is one half of the ground truth against the other, and "
        "<code>flag_recall_ratio</code>, <code>flag_precision_ratio</code> are the set's figure "
        "over the ceiling's. "
        if h is not None
        else ""
    )
    intro = (
        f"<p>Ground truth: <b>{kit.esc(truth)}</b>. ε = {eps:g}; {len(patients)} test samples. "
        "Every set keeps its models within ε on its own validation data. A patient is flagged "
        "(arbitrary) when some model of a set flips the MAP model's label, so a larger set flags "
        f"more whatever its quality. {matched}<code>flag_recall_full</code> and "
        "<code>flag_precision_full</code> compare whole sets of different sizes and are not "
        "validity figures. <code>flip_rate_spearman</code> is the rank correlation of "
        "per-patient flip rates, <code>flip_rate_ap</code> the average precision of the set's "
        "flip rate for the ground truth's flags (chance: <code>flip_rate_ap_base_rate</code>), "
        "<code>ambiguity_matched</code> the set's expected ambiguity at the ground truth's size, "
        "<code>retrained_models_for_ambiguity</code> how many retrained models show the set's "
        "full-size ambiguity, <code>spread_ratio:</code> the set's spread of a desideratum over "
        "the ground truth's.</p>"
    )
    shown = table.drop(columns=[c for c in ("run_dir",) if c in table.columns])
    sections = [("sets", "Sets against the ground truth", intro + kit.table_html(shown, 4, None))]
    others = [s for s in table["set"] if s != truth]
    if frontier is not None and frontier["flag_recall_ratio"].notna().any():
        png = kit.png_bytes(plots.cost_validity_frontier(frontier))
        sections.append(
            (
                "frontier",
                "Cost against validity",
                kit.figure_html(
                    png,
                    "Each set's cost (seconds to build it, training of forks and retrained "
                    "networks included; log scale) against its size-matched flag recall over the "
                    "ceiling, coloured by its precision over the ceiling. Ringed sets are on the "
                    "frontier: no other set is cheaper and at least as good on both. The dashed "
                    "line is the retrained set's cost, when known.",
                    alt="cost against size-matched validity",
                ),
            )
        )
    if growth is not None and others and (growth["set"] == truth).any():
        png = kit.png_bytes(plots.ambiguity_growth(growth, truth, others))
        sections.append(
            (
                "growth",
                "Ambiguity against the number of models",
                kit.figure_html(
                    png,
                    "The expected share of test patients flagged by k models drawn at random from "
                    "a set (line) and its 5–95 % band over draws: grey the retrained set, blue "
                    "the set named above the panel. The dot marks how many retrained models "
                    "reach the set's full-size ambiguity (dotted line); read a set at the "
                    "retrained set's size, not at its own.",
                    alt="ambiguity against the number of models",
                ),
            )
        )
    truth_col = f"disagreement:{truth}"
    cols = [c for c in patients.columns if c.startswith("disagreement:") and c != truth_col]
    if cols and truth_col in patients:
        png = kit.png_bytes(plots.disagreement_vs_truth(patients, truth_col, cols))
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
