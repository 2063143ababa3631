"""The pages rashomon writes, all from one HTML kit (`kit`): the run report
(`build_report(run_dir, out_dir)`, run_page.py), the sweep page (sweep_page.py) and the compare
page (compare_page.py)."""

from rashomon.report.run_page import Report, SectionFailure, build_report, write_report

__all__ = ["Report", "SectionFailure", "build_report", "write_report"]
