"""The `report` stage: the HTML page, its PNGs and summary.txt, written into the stage folder."""

from __future__ import annotations

from rashomon.context import StageContext


def run_report_stage(ctx: StageContext) -> None:
    """The report stage: report.html from the run directory's tables."""
    from rashomon.report.load import REQUIRED_STAGES
    from rashomon.report.run_page import write_report

    for stage in REQUIRED_STAGES:
        ctx.path(stage)  # a clear error naming the stage to run
    try:
        task = ctx.task()
    except Exception:  # images are optional; the report notes their absence
        task = None
    report = write_report(ctx.run_dir, ctx.out, task=task, load_images=False)
    summary = (ctx.out / "summary.txt").read_text().strip().splitlines()
    ctx.summary["report"] = str(ctx.run_dir / ctx.stage / report.page.name)
    ctx.summary["figures"] = len(list(ctx.out.glob("*.png")))
    ctx.summary["headline"] = summary[0] if summary else ""
    if report.failures:
        ctx.summary["failed_sections"] = [
            {"section": f.title, "error": f.reason} for f in report.failures
        ]
        for f in report.failures:
            ctx.console.print(
                f"[yellow]warning:[/yellow] report section {f.title!r} failed and shows an error "
                f"box: {f.reason} (traceback in {ctx.stage}/errors.txt)",
                highlight=False,
                soft_wrap=True,
            )
