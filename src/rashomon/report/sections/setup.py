"""What was audited and how it ran: the task and its data, the trained (MAP) model, and the
run's stages."""

from __future__ import annotations

import json
from typing import Any

from rashomon import schema as S
from rashomon.report import plots
from rashomon.report.kit import esc, kv_table, note, table_html
from rashomon.report.load import RunData
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import attribute_table, split_balance, stage_rows
from rashomon.report.words import (
    ACQUISITION,
    NULL,
    PATIENT,
    PROXY,
    attribute_kind,
    class_weight_text,
)


def build_task(b: Builder) -> str:
    """The task section (HTML): dataset, classes, splits and attributes."""
    d = b.data
    info = d.task_info
    names = d.class_names
    parts = []
    name = info.get("name") or (d.config.get("data") or {}).get("dataset", "?")
    kind = info.get("kind", "")
    size = info.get("size", (d.config.get("data") or {}).get("size", ""))
    parts.append(
        f"<p><b>{esc(name)}</b> · {esc(kind)} classification · {esc(size)} px images · "
        f"classes: {esc(', '.join(names))}</p>"
    )
    balance = split_balance(d.task, d.table("per_sample"), info.get("sizes") or {}, names)
    if len(balance):
        parts.append("<h3>Splits and class balance</h3>" + table_html(balance))
    attrs = d.attributes or (info.get("attributes") or {})
    if attrs:
        parts.append(attribute_groups(d, attrs))
    else:
        parts.append(
            note(
                "The task has no patient attributes; add them with "
                "<code>--attributes FILE.csv</code> to see group results."
            )
        )
    return "".join(parts)


ATTRIBUTE_GROUPS = (
    ((PATIENT,), "Patient attributes", ""),
    (
        (ACQUISITION,),
        "Acquisition attributes",
        "How the image was taken, not who the patient is (<code>evaluate.acquisition</code>, "
        "by default the attributes named view, scanner, site, device or intensity). Their "
        "gaps are reported apart from the patient groups', and each patient attribute's gaps "
        "are also read within their strata.",
    ),
    (
        (NULL, PROXY),
        "Derived attributes",
        "Computed from the images or drawn at random (a null control); they are not "
        "demographics. Gaps on the random attribute measure noise.",
    ),
)


def attribute_groups(d: RunData, attrs: dict[str, dict]) -> str:
    """The task's attributes in three tables: patient, acquisition, derived."""
    ps = d.table("per_sample")
    parts = []
    for kinds, heading, text in ATTRIBUTE_GROUPS:
        group = {n: i for n, i in attrs.items() if attribute_kind(n, i) in kinds}
        if group:
            table = attribute_table(group, ps, binary=d.kind == "binary")
            parts.append(f"<h3>{heading}</h3>" + table_html(table) + (note(text) if text else ""))
    return "".join(parts)


def map_facts(d: RunData) -> list[tuple[str, Any]]:
    """(name, value) rows of the trained model: architecture, options, size, scores."""
    t = d.summaries.get("train", {})
    spec = d.checkpoint.get("spec") or {}
    arch = spec.get("arch") or (d.config.get("train") or {}).get("arch", "?")
    opts = {
        k: v
        for k, v in spec.items()
        if k not in ("arch", "in_channels", "num_classes", "size") and v not in (None, {}, [])
    }
    pairs: list[tuple[str, Any]] = [("architecture", arch)]
    if opts:
        pairs.append(("options", ", ".join(f"{k}={v}" for k, v in opts.items())))
    params = t.get("parameters", d.checkpoint.get("parameters"))
    if params is not None:
        pairs.append(("parameters", int(params)))
    if "epochs_run" in t:
        pairs.append(("epochs run", int(t["epochs_run"])))
    pairs.append(("loss", class_weight_text(t, d.class_names)))
    for split in ("val", "test"):
        for m in ("accuracy", "auroc"):
            if f"{split}_{m}" in t:
                pairs.append((f"{split} {m.upper() if m == 'auroc' else m}", t[f"{split}_{m}"]))
    return pairs


def build_map(b: Builder) -> str:
    """The MAP model section (HTML): its facts and training curve."""
    d = b.data
    body = kv_table(map_facts(d))
    hist = d.table("history")
    if hist is not None and "epoch" in hist and len(hist):
        return (
            f'<div class="side"><div>{body}</div>'
            + b.figure(
                plots.training_curve(hist),
                "training_curve",
                "Training curve of the MAP model (θ*): the checkpoint kept (dotted line) is the "
                "epoch with the lowest validation loss averaged over neighbouring epochs (the "
                "training loss, class-weighted when training was).",
            )
            + "</div>"
        )
    return body + b.missing("history", "training curve")


def build_run(b: Builder) -> str:
    """The run section (HTML): the stages' records and the report's figure files."""
    rec_path = b.data.run_dir / S.RECORDS
    rows = None
    if rec_path.exists():
        try:
            rows = stage_rows(json.loads(rec_path.read_text()))
        except ValueError:
            rows = None
    parts = []
    if rows is not None and len(rows):
        parts.append(table_html(rows, 1))
    files = ", ".join(f"<code>{esc(p.name)}</code>" for p in b.figures)
    parts.append(
        f"<p>Figures saved next to this page: {files}. Tables it draws from are in "
        "<code>tables/</code>.</p>"
    )
    return "".join(parts)


TASK = SectionSpec("task", "Task and data", build_task)
MAP = SectionSpec("map", "The trained (MAP) model", build_map)
RUN = SectionSpec("run", "Run", build_run)
