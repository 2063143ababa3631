"""The `evaluate` stage: multiplicity and per-model desiderata across the Rashomon set.

Reads the sample stage's predictions, keeps the Rashomon set (`in_set.npy`, chosen on validation
only), and writes the tables listed in docs/run-directory.md. Everything here is bookkeeping:
the arithmetic lives in `rashomon.metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rashomon import metrics as rm
from rashomon import schema as S
from rashomon.context import StageContext
from rashomon.data.groups import measurable_attributes
from rashomon.errors import RashomonError
from rashomon.metrics.acquisition import within_stratum_table
from rashomon.sets.rashomon import MIN_SET_MODELS

if TYPE_CHECKING:  # for annotations only: the Task's module loads torch
    from rashomon.data.task import Task

KNOWN_METRICS = ("multiplicity", "performance", "calibration", "fairness", "robustness")


def rashomon_indices(keep: np.ndarray, epsilon: float) -> np.ndarray:
    """Indices of the set's models; fewer than MIN_SET_MODELS cannot show multiplicity."""
    idx = np.flatnonzero(keep)
    if len(idx) < MIN_SET_MODELS:
        raise RashomonError(
            f"ε={epsilon:g} leaves {len(idx)} of {len(keep)} models in the Rashomon set; use a "
            "larger --epsilon or more --models"
        )
    return idx


def chosen_attributes(task: Task, requested: list[str] | None) -> list[str]:
    """The attributes to evaluate: `requested`, or every attribute of the task; unknown names are an
    error."""
    names = list(task.attributes) if requested is None else list(requested)
    unknown = [a for a in names if a not in task.attributes]
    if unknown:
        raise RashomonError(
            f"unknown attribute(s) {unknown}; this task has {sorted(task.attributes)}"
        )
    return names


def multiplicity_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Flatten `multiplicity_summary`'s dict into rows: metric, group, attribute, derived, value."""
    rows = [
        {S.METRIC: k, S.GROUP: "all", S.ATTRIBUTE: "", S.DERIVED: None, S.VALUE: v}
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    for attribute, frame in summary.get("groups", {}).items():
        frame = pd.DataFrame(frame)
        for _, r in frame.iterrows():
            for col in frame.columns:
                if col in ("attribute", "group", "derived", "level") or not np.isscalar(r[col]):
                    continue
                rows.append(
                    {
                        S.METRIC: col,
                        S.GROUP: f"{attribute}={r.get('group', r.get('level'))}",
                        S.ATTRIBUTE: attribute,
                        S.DERIVED: bool(r.get("derived", False)),
                        S.VALUE: float(r[col]),
                    }
                )
    return pd.DataFrame(rows, columns=S.TABLES["multiplicity"].columns)


def multiplicity_tables(
    probs: np.ndarray,
    map_probs: np.ndarray,
    y: np.ndarray,
    groups: dict[str, np.ndarray],
    derived: dict[str, bool],
    levels: dict[str, list[str]],
    *,
    kind: str,
    threshold: float,
    extra_thresholds: dict[str, float] | None = None,
    seed: int = 0,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The multiplicity tables of the test split, keyed as `rashomon.schema.TABLES`:
    per_sample (with the true label, except multilabel), multiplicity and (not multilabel)
    convergence; and `multiplicity_summary`'s summary."""
    per_sample, summary = rm.multiplicity_summary(
        probs,
        map_probs,
        groups,
        derived,
        threshold=threshold,
        extra_thresholds=extra_thresholds,
        kind=kind,
        level_names=levels,
    )
    tables = {"per_sample": per_sample, "multiplicity": multiplicity_table(summary)}
    if kind != "multilabel":
        per_sample.insert(1, S.TRUE_LABEL, y)
        ref = rm.predict_labels(map_probs[None], threshold)[0]
        tables["convergence"] = rm.convergence_curve(probs, ref, seed=seed, threshold=threshold)
    return tables, summary


def per_model_frames(
    probs: np.ndarray, map_probs: np.ndarray, model_ids: np.ndarray, **kwargs: Any
) -> pd.DataFrame:
    """Per-model metric table of the set with the MAP model as row `model = -1`."""
    table = rm.per_model_table(probs, **kwargs)
    map_row = rm.per_model_table(map_probs[None], **kwargs)
    table.insert(0, S.MODEL, model_ids)
    map_row.insert(0, S.MODEL, -1)
    out = pd.concat([map_row, table], ignore_index=True)
    out.attrs = table.attrs
    return out


def null_control_notes(
    per_model_test: pd.DataFrame, attributes: list[str], task: Task
) -> list[str]:
    """Compare every real attribute's fairness gaps with the `random` null control's; with no
    real attribute, compare the derived `intensity` proxy instead."""
    if "random" not in attributes:
        return []
    real = [a for a in attributes if not task.attributes[a].derived]
    targets = real or [a for a in attributes if a != "random"]
    notes = []
    set_rows = per_model_test[per_model_test[S.MODEL] >= 0]
    for a in targets:
        for gap in ("tpr_gap", "accuracy_gap"):
            if f"{gap}[{a}]" not in set_rows.columns:
                continue
            warning = rm.null_control_warning(set_rows, a, gap=gap)
            if warning:
                notes.append(warning)
    return notes


def run_evaluate_stage(ctx: StageContext) -> None:
    """The evaluate stage: multiplicity, desiderata, calibration, fairness and robustness of the
    set, written as evaluate's tables."""
    cfg, e = ctx.cfg, ctx.cfg.evaluate
    unknown = [m for m in e.metrics if m not in KNOWN_METRICS]
    if unknown:
        raise RashomonError(f"unknown metric group(s) {unknown}; choose from {KNOWN_METRICS}")
    task = ctx.task()
    sample_dir = ctx.path("sample")
    sampled = S.sample_record(ctx.run_dir)  # ε and source as the sample stage recorded them
    epsilon, source = sampled.epsilon, sampled.source
    keep = np.load(ctx.path("sample", S.IN_SET))
    idx = rashomon_indices(keep, epsilon)
    probs = {s: np.load(sample_dir / S.probs_file(s), mmap_mode="r")[idx] for s in ("val", "test")}
    map_probs = {s: np.load(sample_dir / S.map_probs_file(s)) for s in ("val", "test")}
    attributes = measurable_attributes(task, chosen_attributes(task, e.groups))
    derived = {a: task.attributes[a].derived for a in attributes}
    levels = {a: list(task.attributes[a].levels) for a in attributes}
    groups = {s: {a: task.split(s).groups[a].numpy() for a in attributes} for s in ("val", "test")}
    y = {s: task.split(s).y.numpy() for s in ("val", "test")}
    kind = task.kind
    ctx.summary.update(
        {
            "source": source,
            "epsilon": epsilon,
            "models_in_set": len(idx),
            "models": int(len(keep)),
        }
    )

    extra_thresholds: dict[str, float] = {}
    if kind == "binary":
        t_sens = rm.threshold_for_sensitivity(
            map_probs["val"][:, 1], y["val"], e.target_sensitivity
        )
        name = f"sens{round(100 * e.target_sensitivity)}"
        extra_thresholds[name] = float(t_sens)
        ctx.summary[f"threshold@{name}"] = round(float(t_sens), 4)

    if "multiplicity" in e.metrics:
        tables, summary = multiplicity_tables(
            probs["test"],
            map_probs["test"],
            y["test"],
            groups["test"],
            derived,
            levels,
            kind=kind,
            threshold=e.threshold,
            extra_thresholds=extra_thresholds,
            seed=cfg.seed,
        )
        for key, table in tables.items():
            write(ctx, key, table)
        for key in ("ambiguity", "discrepancy", "mean_disagreement", "mean_capacity", "flip_share"):
            if key in summary:
                ctx.summary[key] = round(float(summary[key]), 4)

    if "multiplicity" in e.metrics and wants_extremes(e.extremes, sampled, task):
        write(ctx, "extremes", extremes_table(ctx, task, epsilon))

    table_args = dict(
        attributes_derived=derived, threshold=e.threshold, kind=kind, level_names=levels
    )
    per_model = {}
    for s in ("val", "test"):
        per_model[s] = per_model_frames(
            probs[s], map_probs[s], idx, y=y[s], groups=groups[s], **table_args
        )

    if "robustness" in e.metrics:
        rob = robustness_table(ctx, idx)
        write(ctx, "robustness", rob)
        per_model["test"] = per_model["test"].merge(robustness_columns(rob), on=S.MODEL, how="left")

    for s in ("val", "test"):
        write(ctx, f"per_model_{s}", per_model[s])
    test_args = (probs["test"], map_probs["test"], y["test"], groups["test"], derived, levels)
    write(ctx, "within_stratum", within_stratum_table(*test_args, e.acquisition, e.threshold, kind))
    test_rows = per_model["test"]
    set_rows = test_rows[test_rows[S.MODEL] >= 0].drop(columns=S.MODEL)
    set_rows.attrs = {"attributes_derived": derived}
    map_row = test_rows[test_rows[S.MODEL] == -1].drop(columns=S.MODEL).iloc[0]
    tidy = rm.spread_table(
        set_rows,
        map_row,
        source=source,
        epsilon=epsilon,
        attributes_derived=derived,
        n_boot=e.bootstrap,
        seed=cfg.seed,
    )
    rm.write_table(tidy, ctx.out / S.TABLES["metrics"].file)
    notes = null_control_notes(per_model["test"], attributes, task)
    ctx.summary["null_control"] = notes or ["null-control gaps stay below the real attributes'"]
    headline = [c for c in ("accuracy", "auroc", "ece", "nll") if c in set_rows.columns]
    ctx.console.print(rm.summarise(tidy, headline))
    for note in notes:
        ctx.console.print(f"[yellow]{note}[/yellow]")


def write(ctx: StageContext, key: str, table: pd.DataFrame) -> None:
    """Write one table of this stage under the schema's file name."""
    table.to_csv(ctx.out / S.TABLES[key].file, index=False)


# "auto" computes the extremes for small problems only. Measured on a quiet 2-core CPU: BreastMNIST
# (546 train x 156 test, a 130-weight cnn-small head) 4.4 s; a torchvision ResNet-18 head (1,026
# weights) on the same images ran past 35 minutes under load, and PneumoniaMNIST (2.9 M pairs)
# would add minutes to a 2.5-minute default run; RSNA opacity (1,050 x 299) took 55 minutes
# under load with a class-weighted head far from its objective's optimum. "on" computes them
# whatever the size.
EXTREMES_AUTO_WORK = 100_000  # N_train · N_test
EXTREMES_AUTO_HEAD = 300  # head weights


def wants_extremes(setting: str, sampled: S.SampleRecord, task: Task) -> bool:
    """Whether to compute the exact last-layer extremes: for head-only sets of binary tasks,
    always ("on"), never ("off"), or when the problem is small enough ("auto")."""
    if setting == "off" or task.kind != "binary" or not sampled.head_only:
        if setting == "on":
            shape = "head-only" if sampled.head_only else "not head-only"
            raise RashomonError(
                "evaluate.extremes 'on' needs a head-only set of a binary task (last-layer "
                f"extremes); this run's set is {shape} on a {task.kind} task; use 'auto' or 'off'"
            )
        return False
    if setting == "on":
        return True
    head = (sampled.summary or {}).get("varied_parameters", EXTREMES_AUTO_HEAD + 1)
    small = len(task.train) * len(task.test) <= EXTREMES_AUTO_WORK
    return small and int(head) <= EXTREMES_AUTO_HEAD


def extremes_table(ctx: StageContext, task: Task, epsilon: float) -> pd.DataFrame:
    """The exact last-layer extremes of every test patient at the run's ε; the set's bounds
    and the seconds go into the stage summary."""
    import time

    from rashomon.models.train import load_checkpoint
    from rashomon.sets.extremes import last_layer_extremes

    model, _ = load_checkpoint(ctx.path("train", S.CHECKPOINT), device=ctx.device)
    start = time.perf_counter()
    table = last_layer_extremes(model, task, epsilon, "test", device=ctx.device)
    ctx.summary["extremes_ambiguity"] = round(float(table[S.FLIP_POSSIBLE].mean()), 4)
    ctx.summary["extremes_seconds"] = round(time.perf_counter() - start, 2)
    ctx.summary["extremes_set"] = table.attrs["definition"]
    return table


def corruption_options(ctx: StageContext) -> dict[str, Any]:
    """The run's seeded corruptions as `robustness_tables` takes them (no attacks): the same
    images, severities and cache for the set's audit on test and validation and for the
    retrained truth's (rashomon.validate)."""
    e = ctx.cfg.evaluate
    return dict(
        corruptions=e.corruptions,
        severities=e.severities,
        attacks=[],
        seed=ctx.cfg.seed,
        cache_dir=ctx.run_dir / "cache" / "corruptions",
        device=ctx.device,
        max_images=e.robustness_images,
        max_memory=ctx.cfg.sample.max_memory,
        progress=ctx.progress,
    )


def robustness_table(ctx: StageContext, idx: np.ndarray) -> pd.DataFrame:
    """Corruptions and attacks for the MAP model and the set's models (cached corrupted images
    live in the run directory, outside the stage folder, so --force does not redraw them)."""
    from rashomon.evaluate.robustness import robustness_tables
    from rashomon.models.train import load_checkpoint
    from rashomon.sets.base import ModelSet

    e = ctx.cfg.evaluate
    mset = ModelSet.load(ctx.path("sample", S.SET))
    if not mset.head_only and len(idx) > e.robustness_models:
        # A full forward per model and per corrupted split: audit a seeded subset of the set.
        rng = np.random.default_rng(ctx.cfg.seed)
        idx = np.sort(rng.choice(idx, e.robustness_models, replace=False))
        ctx.summary["robustness_models"] = f"{len(idx)} of the set (seeded subset)"
    mset = mset.subset(idx)
    model, _ = load_checkpoint(ctx.path("train", S.CHECKPOINT), device=ctx.device)
    table = robustness_tables(
        mset,
        model,
        ctx.task(),
        **{**corruption_options(ctx), "attacks": e.attacks},
        attack_epsilons=e.attack_epsilons,
        whitebox_models=e.whitebox_models,
        attack_max_images=e.attack_images,
    )
    ctx.summary["robustness_timings"] = {
        k: round(float(v), 2) for k, v in table.attrs.get("timings", {}).items()
    }
    # NumPy arrays in attrs break pandas' concat of frames derived from the table: take them out
    correct = {"test": table.attrs.pop("patient_correct", None)}
    table.attrs.pop("patient_index", None)
    if e.robustness_selection and correct["test"] is not None:
        # The same seeded corruptions of the validation split, so that decide can choose the
        # most robust model without looking at test: per-patient correctness, MAP first.
        val = robustness_tables(mset, model, ctx.task(), **corruption_options(ctx), split="val")
        correct["val"] = val.attrs["patient_correct"]
        for split, matrix in correct.items():
            np.save(ctx.out / S.corrupted_correct_file(split), matrix)
        np.save(ctx.out / S.CORRUPTED_MODELS, idx)
        ctx.summary["robustness_timings"]["val_corruption_s"] = round(
            float(val.attrs["timings"].get("corruption_predict_s", 0.0))
            + float(val.attrs["timings"].get("corruption_generate_s", 0.0)),
            2,
        )
    # robustness_tables numbers the set's models 0..M'-1; map back to the sample stage's ids.
    set_rows = table[S.MODEL] >= 0
    table.loc[set_rows, S.MODEL] = idx[table.loc[set_rows, S.MODEL].to_numpy()]
    return table


def robustness_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Per-model summary columns for selection and spread: mean accuracy over corruptions and
    severities, and adversarial accuracy per attack and ε (transfer from the MAP model)."""
    out = []
    accuracy = table[S.METRIC] == "accuracy"
    corr = table[(table[S.FAMILY] == "corruption") & accuracy]
    if len(corr):
        out.append(corr.groupby(S.MODEL)[S.VALUE].mean().rename(S.CORRUPTION_ACCURACY))
    att = table[(table[S.FAMILY] == "attack") & accuracy]
    for (name, eps), frame in att.groupby([S.CORRUPTION, S.EPSILON]):
        if eps == 0:
            continue
        transfer = frame[S.MODE] == "transfer"
        mode = frame[transfer] if transfer.any() else frame
        col = f"adv_accuracy_{name}_{eps * 255:.0f}of255"
        out.append(mode.groupby(S.MODEL)[S.VALUE].mean().rename(col))
    if not out:
        return pd.DataFrame({S.MODEL: []})
    return pd.concat(out, axis=1).reset_index()
