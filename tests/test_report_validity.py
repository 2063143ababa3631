"""The report of a run with a validate stage: the headline and the validity section read the
size-matched figures (validate/summary.json) and draw the ambiguity growth curves
(validate/growth.csv); checked with hand-chosen figures (tests/fake_run.py) and on one real
`rashomon validate`, and rendered in headless Chromium."""

from __future__ import annotations

import json
import re

from browser import inspect_self_contained
from fake_run import write_fake_run

from rashomon.report import write_report

SECTIONS = ["summary", "task", "map", "set", "multiplicity", "validity", "desiderata"]


def _section(html: str, id: str) -> str:
    body = html[html.index(f'<section id="{id}"') :]
    return body[: body.index("</section>")]


def test_hand_chosen_validity_figures_reach_the_summary_section_and_page(
    tmp_path, task_pneumonia, data_root
):
    """The fake run's validate stage holds hand-chosen figures (VALIDATE_FIGURES): 25 retrained
    networks within ε, h = 12, recall 0.60 ± 0.08 against a ceiling of 0.80 ± 0.06 (ratio
    0.75), precision 0.90 ± 0.05 against 0.83 ± 0.07 (ratio 1.08), 9 retrained networks for the
    set's ambiguity 0.22 (all 25: 0.3494)."""
    run = write_fake_run(
        tmp_path / "run",
        task_pneumonia,
        stages=("train", "sample", "evaluate", "validate"),
        robustness=False,
        data_root=str(data_root),
    )
    kept = json.loads((run / "sample" / "summary.json").read_text())["models_in_set"]
    out = tmp_path / "out"
    report = write_report(run, out, task=task_pneumonia)
    assert report.failures == []
    lines = (out / "summary.txt").read_text().splitlines()
    assert (
        "Against 25 networks retrained on this task (within ε), 12 of this set's models find 60 % "
        "of the patients that 12 retrained networks flag (two retrained halves agree on 80 %: "
        "0.75 of the ceiling), precision 90 % (between two retrained halves 83 %: 1.08 of the "
        "ceiling)."
    ) in lines
    assert (
        f"It takes 9 of the 25 retrained networks to see as much arbitrariness as the whole set "
        f"of {kept} models shows (22.0 % of test patients; all 25 flag 34.9 %): read the share "
        "above as a lower bound."
    ) in lines
    assert not any("validity study" in line for line in lines)  # measured here, not borrowed

    html = report.page.read_text()
    section = _section(html, "validity")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", section)
    rows = [cells[i : i + 3] for i in range(0, 12, 3)]
    assert rows == [
        [
            "this set: 12 models against 12 retrained (mean ± sd over 200 rounds)",
            "0.60 ± 0.08",
            "0.90 ± 0.05",
        ],
        ["ceiling: two disjoint halves of 12 retrained networks", "0.80 ± 0.06", "0.83 ± 0.07"],
        ["ratio: this set / ceiling", "0.75", "1.08"],
        [
            f"full size (not comparable across set sizes): all {kept} models against all 25 "
            "retrained",
            "0.46",
            "0.73",
        ],
    ]
    other = dict(zip(cells[12::2], cells[13::2], strict=True))
    assert other == {
        "retrained networks (within ε)": "30 (25)",
        "patients the retrained networks flag (any of them)": "218",
        "flip rates: Spearman ρ of the set&#x27;s and the retrained set&#x27;s": "0.61",
        "flip rates: average precision of the set&#x27;s for the retrained flags": (
            "0.72 (base rate 0.35)"
        ),
        "ambiguity: the whole set / all retrained networks": "0.220 / 0.349",
        "ambiguity of 25 models drawn from the set (expected)": "0.090",
        "retrained networks that show the whole set&#x27;s ambiguity": "9",
    }
    caption = re.search(r"<figcaption>(.*?)</figcaption>", section).group(1)
    assert caption.startswith(
        "How many retrained networks would you need to see this much arbitrariness? 9: the "
        f"retrained curve reaches the dotted line, the {kept} models of this set&#x27;s "
        "ambiguity (22.0 %), at k = 9 (the dot)."
    )
    # the headline's card: the recall ratio
    summary = _section(html, "summary")
    assert '<div class="v">0.75</div><div class="k">of retraining&#x27;s flag recall' in summary
    # the growth plot is drawn, saved next to the page and embedded in it
    png = out / "validity_growth.png"
    assert png.exists() and png.stat().st_size > 10_000
    page = inspect_self_contained(report.page, height=1600)
    sections = {s["id"]: s for s in page.sections}
    assert list(sections)[: len(SECTIONS)] == SECTIONS
    assert all(s["cls"] != "failed" for s in sections.values())
    assert "full size (not comparable across set sizes)" in sections["validity"]["text"]
    shown = [im for im in page.images if im["alt"].startswith("ambiguity against the number")]
    assert len(shown) == 1 and shown[0]["naturalWidth"] > 300
