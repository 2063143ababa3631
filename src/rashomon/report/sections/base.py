"""The section protocol: what a report section declares and what it may ask of the page.

A section is one `SectionSpec`: its anchor id and title, stated once, and a `build` function that
returns the section's body (markup). `build` receives a `Builder`, the page being assembled
(`run_page.ReportBuilder`): the run's tables, and a way to save and embed a figure. Sections
never import the page, so the page can list them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rashomon.report.load import RunData


class Builder(Protocol):
    """What a section may ask of the page being built."""

    data: RunData
    figures: list[Path]  # the PNGs saved so far, in page order

    def figure(self, fig: Any, name: str, caption: str, alt: str | None = None) -> str:
        """Save `fig` as <name>.png next to the page and return its embedded <figure>."""
        ...

    def missing(self, key: str, what: str) -> str:
        """The note of a missing table `key`, naming the stage or option that writes it."""
        ...


@dataclass(frozen=True)
class SectionSpec:
    """One section of the run report, in `sections.SECTIONS` in page order."""

    id: str  # the anchor, and the name a failure is reported under
    title: str
    build: Callable[[Builder], str]  # the body's markup
    css_class: str = ""  # an extra class of the <section> box
