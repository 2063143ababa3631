"""The HTML report of a run directory: `build_report(run_dir, out_dir)`."""

from rashomon.report.html import build_report

__all__ = ["build_report"]
