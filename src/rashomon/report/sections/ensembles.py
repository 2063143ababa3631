"""What the decide stage does with the set beyond selection: selective ensembles with
abstention, and Laplace Sample Information of the training samples."""

from __future__ import annotations

from rashomon import schema as S
from rashomon.report import plots
from rashomon.report.kit import esc, note, table_html
from rashomon.report.sections.base import Builder, SectionSpec
from rashomon.report.sections.frames import ensemble_percentages
from rashomon.report.summary import worst_over_labels

TOP_LSI = 16
ENSEMBLE_TABLES = (
    (S.COVERAGE, "Coverage"),
    (S.RESIDUAL_AMBIGUITY, "Residual ambiguity"),
    (S.COVERED_ACCURACY, "Accuracy on decided patients"),
)


def build_ensembles(b: Builder) -> str:
    """The ensembles section (HTML): ensemble curves over k and the abstention rules."""
    d = b.data
    ens = d.table("ensembles")
    if ens is None:
        return b.missing("ensembles", "ensemble results")
    parts = [
        "<p>A selective ensemble votes with k models of the set and abstains when fewer than a "
        "threshold agree. Coverage is the share of patients it decides; residual ambiguity is "
        "the share of decided patients whose decision still depends on which k models were "
        "drawn.</p>"
    ]
    worst = ""
    if S.LABEL in ens:
        worst = " Multilabel: per k and rule, the worst label (lowest coverage, highest ambiguity)."
        parts.append(
            note(
                f"Every label is audited as its own binary task; shown is the worst of the "
                f"{ens[S.LABEL].nunique()} labels for each k and rule (ensembles.csv has every "
                "label)."
            )
        )
        ens = worst_over_labels(ens)
    parts.append(
        b.figure(
            plots.ensemble_curves(ens),
            "ensembles",
            f"Coverage and residual ambiguity against the ensemble size.{worst}",
        )
    )
    parts.append(
        "".join(
            f"<div><h3>{title} (%)</h3>{table_html(ensemble_percentages(ens, col), 1)}</div>"
            for col, title in ENSEMBLE_TABLES
        )
    )
    return "".join(parts)


def build_lsi(b: Builder) -> str:
    """The LSI section (HTML): Laplace Sample Information against multiplicity."""
    d = b.data
    lsi = d.table("lsi")
    if lsi is None or S.DISAGREEMENT not in lsi:
        if lsi is not None:
            why = "the sample stage stored no training predictions to measure disagreement on"
        elif "decide" in d.stages:
            why = "enable it with <code>decide.lsi: true</code>"
        else:
            why = d.missing_note("lsi")
        return f'<p class="note missing">No LSI table: {why}</p>'
    parts = [
        "<p>Laplace Sample Information (LSI) measures how much each training sample shaped the "
        "posterior over weights. Samples with high LSI are often atypical or mislabelled.</p>",
        b.figure(
            plots.lsi_scatter(lsi),
            "lsi",
            "Each training sample: its LSI and how much the set disagrees on it.",
        ),
    ]
    top = lsi.sort_values(S.LSI, ascending=False).head(TOP_LSI)
    task = d.task
    if task is not None and task.train.raw is not None:
        y = task.train.y.numpy()
        names = d.class_names
        imgs, titles = [], []
        for _, r in top.iterrows():
            i = int(r[S.SAMPLE])
            imgs.append(task.train.raw[i])
            lab = names[int(y[i])] if y.ndim == 1 and int(y[i]) < len(names) else str(y[i])
            titles.append(f"#{i} · {lab}\nLSI {r[S.LSI]:.2g}")
        parts.append(
            "<h3>Training images with the highest LSI</h3>"
            + b.figure(
                plots.image_grid(imgs, titles),
                "lsi_top_images",
                "The training samples with the highest LSI and their labels.",
            )
        )
    else:
        parts.append(note(f"Images not shown: {esc(d.task_error or 'no task images')}."))
        parts.append(table_html(top, 4))
    return "".join(parts)


ENSEMBLES = SectionSpec("ensembles", "Ensembles and abstention", build_ensembles)
LSI = SectionSpec("lsi", "Laplace Sample Information", build_lsi)
