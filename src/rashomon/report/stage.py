"""The `report` stage: the HTML page, its PNGs and summary.txt, written into the stage folder."""

from __future__ import annotations

from rashomon.context import StageContext


def run_report_stage(ctx: StageContext) -> None:
    from rashomon.report.html import build_report
    from rashomon.report.load import REQUIRED_STAGES

    for stage in REQUIRED_STAGES:
        ctx.path(stage)  # a clear error naming the stage to run
    try:
        task = ctx.task()
    except Exception:  # images are optional; build_report notes their absence
        task = None
    page = build_report(ctx.run_dir, ctx.out, task=task, load_images=False)
    summary = (ctx.out / "summary.txt").read_text().strip().splitlines()
    ctx.summary["report"] = str(ctx.run_dir / ctx.stage / page.name)
    ctx.summary["figures"] = len(list(ctx.out.glob("*.png")))
    ctx.summary["headline"] = summary[0] if summary else ""
