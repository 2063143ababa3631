"""Build the self-contained HTML report of a run directory.

`build_report(run_dir, out_dir)` reads whatever tables the run holds (see load.py), builds every
section of `sections.SECTIONS` (each behind a failure box), draws every figure to
`out_dir/<name>.png`, embeds the same PNGs as base64 in `out_dir/report.html`, copies the tables
each section draws from into `out_dir/tables/` and writes the plain-language summary to
`out_dir/summary.txt`. The page has no scripts and loads nothing from the network.
"""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rashomon import schema as S
from rashomon.errors import one_line
from rashomon.report import plots
from rashomon.report.kit import esc, failure_box, figure_html, nav_html, page, section_html
from rashomon.report.load import RunData, load_run
from rashomon.report.sections import SECTIONS, SectionSpec


@dataclass
class Section:
    """One built section, as the page draws it."""

    id: str
    title: str
    body: str
    extra_class: str = ""


@dataclass
class ReportBuilder:
    """The page being built: what a section's `build` receives (`sections.Builder`)."""

    data: RunData
    out: Path
    figures: list[Path] = field(default_factory=list)

    def figure(self, fig, name: str, caption: str, alt: str | None = None) -> str:
        """Save `fig` as OUT/<name>.png and embed the same bytes in the page."""
        path = plots.save_png(fig, self.out / f"{name}.png")
        self.figures.append(path)
        return figure_html(path.read_bytes(), caption, alt)

    def missing(self, key: str, what: str) -> str:
        """A note (HTML) that the section has no `what` and why (table `key` is missing)."""
        return f'<p class="note missing">No {what}: {self.data.missing_note(key)}</p>'


ERRORS_FILE = "errors.txt"  # tracebacks of the parts of the report that failed


@dataclass(frozen=True)
class SectionFailure:
    """A part of the report that raised while it was built or drawn."""

    id: str
    title: str
    reason: str  # one line
    traceback: str


@dataclass
class Report:
    """What `write_report` wrote: the page and the parts that failed (empty when none did)."""

    page: Path
    failures: list[SectionFailure] = field(default_factory=list)


def build_section(b: ReportBuilder, spec: SectionSpec) -> tuple[Section, SectionFailure | None]:
    """One section, fail-safe: a section that raises shows a failure box with its name and the
    one-line reason instead, and the figures it had saved are removed with it (every PNG next to
    the page stays one the page embeds)."""
    id, title = spec.id, spec.title
    before = len(b.figures)
    try:
        return Section(id, title, spec.build(b), spec.css_class), None
    except Exception as exc:
        for path in b.figures[before:]:
            path.unlink(missing_ok=True)
        del b.figures[before:]
        failure = SectionFailure(id, title, one_line(exc), traceback.format_exc())
        body = failure_box(
            f"The section “{title}”",
            failure.reason,
            f"The rest of the report is unaffected; the traceback is in "
            f"<code>{ERRORS_FILE}</code> next to this page.",
        )
        return Section(id, title, body, "failed"), failure


def render_page(data: RunData, sections: list[Section]) -> str:
    """The report page (HTML): its header and `sections`."""
    info = data.task_info
    name = info.get("name") or (data.config.get("data") or {}).get("dataset", "run")
    arch = (data.checkpoint.get("spec") or {}).get("arch") or (data.config.get("train") or {}).get(
        "arch", ""
    )
    source = data.sample.source
    subtitle = " · ".join(
        x
        for x in (arch, f"{source} set" if source else "", f"seed {data.config.get('seed', 0)}")
        if x
    )
    meta = (
        f"run <code>{esc(data.run_dir.name)}</code><br>generated {time.strftime('%Y-%m-%d %H:%M')}"
    )
    failed = [s.id for s in sections if s.extra_class == "failed"]
    nav = nav_html([(s.id, s.title) for s in sections], failed)
    body = "\n".join(section_html(s.id, s.title, s.body, s.extra_class) for s in sections)
    return page(f"Rashomon audit: {name}", body, subtitle=subtitle, meta=meta, nav=nav)


def write_report(
    run_dir: Path, out_dir: Path, task: Any = None, load_images: bool = True
) -> Report:
    """Write report.html, one PNG per figure, summary.txt and tables/ into `out_dir`.

    `task` (optional) supplies patient images; by default it is loaded from config.yaml's data
    section, and the image panels say why when that fails. A section that fails shows a failure
    box and the others are still written (tracebacks in errors.txt); a run directory without the
    required stages is a RashomonError. Returns the page and the failed parts.
    """
    from rashomon.report.summary import summary_text

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    data = load_run(run_dir, task=task, load_images=load_images)
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = ReportBuilder(data, out_dir)
    sections, failures = [], []
    for spec in SECTIONS:
        section, failure = build_section(builder, spec)
        sections.append(section)
        if failure is not None:
            failures.append(failure)
    try:
        text = summary_text(data)
    except Exception as exc:
        failures.append(
            SectionFailure("summary.txt", "summary.txt", one_line(exc), traceback.format_exc())
        )
        text = f"The summary could not be computed ({one_line(exc)}); see the report.\n"
    (out_dir / "summary.txt").write_text(text)
    tables = out_dir / "tables"
    tables.mkdir(exist_ok=True)
    for key in data.tables:
        t = S.TABLES[key]
        shutil.copyfile(t.path(run_dir), tables / f"{t.stage}_{t.file}")
    errors = out_dir / ERRORS_FILE
    if failures:
        errors.write_text("\n".join(f"--- {f.title}\n{f.traceback}" for f in failures))
    else:
        errors.unlink(missing_ok=True)
    path = out_dir / "report.html"
    path.write_text(render_page(data, sections), encoding="utf-8")
    return Report(path, failures)


def build_report(run_dir: Path, out_dir: Path, task: Any = None, load_images: bool = True) -> Path:
    """`write_report`, returning the path of report.html."""
    return write_report(run_dir, out_dir, task=task, load_images=load_images).page
