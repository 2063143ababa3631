"""How close is the set to retraining: `rashomon validate`'s figures on this task, or the
validity study's figure for this kind of set and a pointer to the command."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rashomon.report.kit import esc, table_html
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.study import validity_line


def validate_rows(v: dict[str, Any]) -> pd.DataFrame:
    """validate/summary.json as (what, value) rows."""
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
    return pd.DataFrame(rows, columns=["", "value"])


def build(b: Builder) -> str:
    d = b.data
    v = d.summaries.get("validate")
    if not v:
        cfg_d, cfg_t = d.config.get("data") or {}, d.config.get("train") or {}
        line = validity_line(
            str(cfg_d.get("dataset", "")),
            str(cfg_t.get("arch", "")),
            d.sample.summary or {},
            cfg_t,
        )
        text = (line + " " if line else "") + (
            f"Check it on this task: <code>rashomon validate {esc(str(d.run_dir))} --retrain "
            "30</code> retrains networks like the trained one and measures how many of their "
            "arbitrary patients this set finds."
        )
        return f"<p>{text}</p>"
    return (
        "<p>The set against networks retrained like the trained one (seeds differ): recall is "
        "the share of the retrained set's arbitrary patients the set also flags; two halves of "
        "the retrained set against each other give the ceiling a set can be read against.</p>"
        + table_html(validate_rows(v), 4)
    )


VALIDITY = SectionSpec("validity", "How close is the set to retraining?", build)
