"""The sections of the run report, one topic a module, each declared once as a `SectionSpec`
(id, title, build) and listed here in page order. `run_page` builds them, each behind a failure
box, and assembles the page. To add a section: write its module over `base.Builder` (the run's
tables, `figure`, `missing`), with its data wrangling in `frames`, and list its spec here."""

from __future__ import annotations

from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.desiderata import DESIDERATA
from rashomon.report.sections.ensembles import ENSEMBLES, LSI
from rashomon.report.sections.headline import SUMMARY
from rashomon.report.sections.multiplicity import MULTIPLICITY, PATIENTS
from rashomon.report.sections.rashomon_set import SET
from rashomon.report.sections.robustness import ROBUSTNESS
from rashomon.report.sections.selection import FAIRNESS, SELECTION
from rashomon.report.sections.setup import MAP, RUN, TASK
from rashomon.report.sections.validity import VALIDITY

SECTIONS: list[SectionSpec] = [
    SUMMARY,
    TASK,
    MAP,
    SET,
    MULTIPLICITY,
    VALIDITY,
    DESIDERATA,
    FAIRNESS,
    SELECTION,
    ENSEMBLES,
    LSI,
    PATIENTS,
    ROBUSTNESS,
    RUN,
]

__all__ = ["SECTIONS", "Builder", "SectionSpec"]
