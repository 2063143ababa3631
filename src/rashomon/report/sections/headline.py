"""The summary at the top of the page: the headline, its sentences and the key figures as cards.
The sentences are report/summary.py's (the same as summary.txt, which the CLI prints)."""

from __future__ import annotations

from rashomon.report.kit import esc, warning_box
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.summary import (
    arbitrariness,
    degenerate_warning,
    figure,
    kept_models,
    matched_figures,
    pct,
    summary_sentences,
)


def cards(b: Builder) -> list[tuple[str, str]]:
    """(value, what it is) of each figure card."""
    d = b.data
    a = arbitrariness(d)
    kept, total = kept_models(d)
    t = d.summaries.get("train", {})
    what = "finding on some label" if d.labels else "diagnosis"
    out = [
        (pct(a.share, 1), f"of test patients get a different {what} from some equally good model")
    ]
    if kept is not None:
        out.append(
            (
                f"{kept}" + (f" / {total}" if total else ""),
                f"models in the Rashomon set (ε = {d.epsilon:g})",
            )
        )
    if "test_accuracy" in t:
        out.append((pct(t["test_accuracy"], 1), "test accuracy of the trained (MAP) model"))
    if a.split_share is not None:
        out.append((pct(a.split_share, 1), "of patients with ≥ 20 % of models dissenting"))
    # a validate stage of another set shows no card (the validity section says it is stale)
    v = {} if "validate" in d.stale else d.summaries.get("validate") or {}
    ratio = figure(v, "flag_recall_ratio") if matched_figures(v) else None
    if ratio is not None:
        h = int(v["matched_models"])
        out.append(
            (f"{ratio:.2f}", f"of retraining's flag recall, at {h} models each (validity ratio)")
        )
    return out


def build(b: Builder) -> str:
    """The headline section (HTML): the run's main findings in sentences and cards."""
    d = b.data
    sentences = summary_sentences(d)
    card_html = "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
        for v, k in cards(b)
    )
    warning = ""
    if degenerate_warning(d):  # the first sentence: shown as a warning above the headline
        warning = warning_box("Degenerate trained model.", esc(sentences[0]))
        sentences = sentences[1:]
    items = "".join(f"<li>{esc(s)}</li>" for s in sentences[1:])
    return (
        f'{warning}<p class="headline">{esc(sentences[0])}</p><ul>{items}</ul>'
        f'<div class="cards">{card_html}</div>'
    )


SUMMARY = SectionSpec("summary", "Summary", build, css_class="summary")
