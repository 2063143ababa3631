"""The sweep page: one self-contained HTML page over a sweep's cells (`rashomon sweep`).

It shows every cell's status, a headline table (one row per cell: scores of the MAP model, the
size of the Rashomon set and the set's multiplicity) and, for every numeric grid axis with more
than one value (a width multiplier, an ε, ...), each headline number against that axis: mean and
standard deviation over the other cells (seeds, datasets, ...). The arithmetic is
`rashomon.sweep.collect`'s; this module only draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from rashomon.report import kit, plots

STATUS_COLUMNS = ("cell", "status", "seconds", "peak_rss_mb", "error")


def render_sweep_page(
    status: pd.DataFrame,
    headline: pd.DataFrame,
    studies: Mapping[str, pd.DataFrame],
    keys: Sequence[str],
    title: str,
) -> str:
    """The HTML page as a string. `status`: one row per cell (its grid values `keys`, status,
    error, seconds, peak_rss_mb); `headline`: `headline_table`; `studies`: grid axis →
    `axis_study` of that axis."""
    keys = [k for k in keys if k in status.columns]
    counts = status["status"].value_counts().to_dict()
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    cells = [f"<p>{kit.esc(summary)} (of {len(status)} cells)</p>"]
    failed = status[status["status"] == "failed"]
    if len(failed):
        items = "".join(
            f"<li><code>{kit.esc(r['cell'])}</code>: {kit.esc(kit.fmt(r.get('error', '')))}</li>"
            for _, r in failed.iterrows()
        )
        cells.append(
            kit.warning_box(
                f"{len(failed)} of {len(status)} cells failed",
                f"(tracebacks in each cell's <code>error.txt</code>):<ul>{items}</ul>",
            )
        )
    shown = ["cell", *keys, *[c for c in STATUS_COLUMNS if c != "cell" and c in status.columns]]
    cells.append(kit.table_html(status[list(dict.fromkeys(shown))], 1, max_rows=None))
    sections = [("cells", "Cells", "".join(cells))]
    if len(headline.columns) > 1 + len(keys):
        sections.append(
            (
                "headline",
                "Headline numbers",
                "<p>MAP model scores (train stage), Rashomon set size and multiplicity of the "
                "set on the test split (evaluate stage), per cell.</p>"
                + kit.table_html(headline, 4, max_rows=None),
            )
        )
        for i, (axis, study) in enumerate(studies.items()):
            png = kit.png_bytes(plots.axis_study(study, axis))
            sections.append(
                (
                    f"axis-{i}",
                    f"Against {axis}",
                    kit.figure_html(
                        png,
                        f"Mean ± standard deviation over the other cells, per value of "
                        f"{kit.esc(axis)}.",
                        alt=f"metrics against {axis}",
                    )
                    + kit.table_html(study, 4, max_rows=None),
                )
            )
    body = "\n".join(kit.section_html(i, t, b) for i, t, b in sections)
    nav = kit.nav_html([(i, t) for i, t, _ in sections])
    subtitle = f"{len(status)} cells" + (f" · grid: {', '.join(keys)}" if keys else "")
    return kit.page(title, body, subtitle=subtitle, nav=nav)
