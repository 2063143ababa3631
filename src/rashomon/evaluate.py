"""The `evaluate` stage: multiplicity and per-model desiderata across the Rashomon set.

Reads the sample stage's predictions, keeps the Rashomon set (`in_set.npy`, chosen on validation
only), and writes the tables listed in docs/run-directory.md. Everything here is bookkeeping:
the arithmetic lives in `rashomon.metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rashomon import metrics as rm
from rashomon.context import StageContext
from rashomon.errors import RashomonError
from rashomon.sets.rashomon import MIN_SET_MODELS

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


def chosen_attributes(task, requested: list[str] | None) -> list[str]:
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
        {"metric": k, "group": "all", "attribute": "", "derived": None, "value": v}
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
                        "metric": col,
                        "group": f"{attribute}={r.get('group', r.get('level'))}",
                        "attribute": attribute,
                        "derived": bool(r.get("derived", False)),
                        "value": float(r[col]),
                    }
                )
    return pd.DataFrame(rows)


def per_model_frames(
    probs: np.ndarray, map_probs: np.ndarray, model_ids: np.ndarray, **kwargs: Any
) -> pd.DataFrame:
    """Per-model metric table of the set with the MAP model as row `model = -1`."""
    table = rm.per_model_table(probs, **kwargs)
    map_row = rm.per_model_table(map_probs[None], **kwargs)
    table.insert(0, "model", model_ids)
    map_row.insert(0, "model", -1)
    out = pd.concat([map_row, table], ignore_index=True)
    out.attrs = table.attrs
    return out


def null_control_notes(per_model_test: pd.DataFrame, attributes: list[str], task) -> list[str]:
    """Compare every real attribute's fairness gaps with the `random` null control's; with no
    real attribute, compare the derived `intensity` proxy instead."""
    if "random" not in attributes:
        return []
    real = [a for a in attributes if not task.attributes[a].derived]
    targets = real or [a for a in attributes if a != "random"]
    notes = []
    set_rows = per_model_test[per_model_test["model"] >= 0]
    for a in targets:
        for gap in ("tpr_gap", "accuracy_gap"):
            if f"{gap}[{a}]" not in set_rows.columns:
                continue
            warning = rm.null_control_warning(set_rows, a, gap=gap)
            if warning:
                notes.append(warning)
    return notes


def run_evaluate_stage(ctx: StageContext) -> None:
    cfg, e = ctx.cfg, ctx.cfg.evaluate
    unknown = [m for m in e.metrics if m not in KNOWN_METRICS]
    if unknown:
        raise RashomonError(f"unknown metric group(s) {unknown}; choose from {KNOWN_METRICS}")
    task = ctx.task()
    sample_dir = ctx.path("sample")
    sampled = ctx.upstream("sample")  # ε and source as the sample stage recorded them
    epsilon, source = float(sampled["epsilon"]), str(sampled["source"])
    keep = np.load(ctx.path("sample", "in_set.npy"))
    idx = rashomon_indices(keep, epsilon)
    probs = {s: np.load(sample_dir / f"probs_{s}.npy", mmap_mode="r")[idx] for s in ("val", "test")}
    map_probs = {s: np.load(sample_dir / f"map_probs_{s}.npy") for s in ("val", "test")}
    attributes = chosen_attributes(task, e.groups)
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
        per_sample, summary = rm.multiplicity_summary(
            probs["test"],
            map_probs["test"],
            groups["test"],
            derived,
            threshold=e.threshold,
            extra_thresholds=extra_thresholds,
            kind=kind,
            level_names=levels,
        )
        if kind != "multilabel":
            per_sample.insert(1, "true_label", y["test"])
        per_sample.to_csv(ctx.out / "per_sample.csv", index=False)
        multiplicity_table(summary).to_csv(ctx.out / "multiplicity.csv", index=False)
        if kind != "multilabel":
            ref = rm.predict_labels(map_probs["test"][None], e.threshold)[0]
            curve = rm.convergence_curve(probs["test"], ref, seed=cfg.seed, threshold=e.threshold)
            curve.to_csv(ctx.out / "convergence.csv", index=False)
        for key in ("ambiguity", "discrepancy", "mean_disagreement", "mean_capacity", "flip_share"):
            if key in summary:
                ctx.summary[key] = round(float(summary[key]), 4)

    if "multiplicity" in e.metrics and wants_extremes(e.extremes, sampled, task):
        extremes_table(ctx, task, epsilon).to_csv(ctx.out / "extremes.csv", index=False)

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
        rob.to_csv(ctx.out / "robustness.csv", index=False)
        per_model["test"] = per_model["test"].merge(robustness_columns(rob), on="model", how="left")

    for s in ("val", "test"):
        per_model[s].to_csv(ctx.out / f"per_model_{s}.csv", index=False)
    set_rows = per_model["test"][per_model["test"]["model"] >= 0].drop(columns="model")
    set_rows.attrs = {"attributes_derived": derived}
    map_row = per_model["test"][per_model["test"]["model"] == -1].drop(columns="model").iloc[0]
    tidy = rm.spread_table(
        set_rows,
        map_row,
        source=source,
        epsilon=epsilon,
        attributes_derived=derived,
        n_boot=e.bootstrap,
        seed=cfg.seed,
    )
    rm.write_table(tidy, ctx.out / "metrics.csv")
    notes = null_control_notes(per_model["test"], attributes, task)
    ctx.summary["null_control"] = notes or ["null-control gaps stay below the real attributes'"]
    headline = [c for c in ("accuracy", "auroc", "ece", "nll") if c in set_rows.columns]
    ctx.console.print(rm.summarise(tidy, headline))
    for note in notes:
        ctx.console.print(f"[yellow]{note}[/yellow]")


EXTREMES_AUTO_WORK = 5_000_000  # N_train · N_test up to which "auto" computes the extremes


def wants_extremes(setting: str, sampled: dict[str, Any], task: Any) -> bool:
    """Whether to compute the exact last-layer extremes: for head-only sets of binary tasks,
    always ("on"), never ("off"), or when the problem is small enough ("auto")."""
    if setting == "off" or task.kind != "binary" or not sampled.get("head_only"):
        if setting == "on":
            shape = "head-only" if sampled.get("head_only") else "not head-only"
            raise RashomonError(
                "evaluate.extremes 'on' needs a head-only set of a binary task (last-layer "
                f"extremes); this run's set is {shape} on a {task.kind} task; use 'auto' or 'off'"
            )
        return False
    return setting == "on" or len(task.train) * len(task.test) <= EXTREMES_AUTO_WORK


def extremes_table(ctx: StageContext, task: Any, epsilon: float) -> pd.DataFrame:
    """The exact last-layer extremes of every test patient at the run's ε; the set's bounds
    and the seconds go into the stage summary."""
    import time

    from rashomon.models.train import load_checkpoint
    from rashomon.sets.extremes import last_layer_extremes

    model, _ = load_checkpoint(ctx.path("train", "model.pt"), device=ctx.device)
    start = time.perf_counter()
    table = last_layer_extremes(model, task, epsilon, "test", device=ctx.device)
    ctx.summary["extremes_ambiguity"] = round(float(table["flip_possible"].mean()), 4)
    ctx.summary["extremes_seconds"] = round(time.perf_counter() - start, 2)
    ctx.summary["extremes_set"] = table.attrs["definition"]
    return table


def robustness_table(ctx: StageContext, idx: np.ndarray) -> pd.DataFrame:
    """Corruptions and attacks for the MAP model and the set's models (cached corrupted images
    live in the run directory, outside the stage folder, so --force does not redraw them)."""
    from rashomon.metrics.robustness import robustness_tables
    from rashomon.models.train import load_checkpoint
    from rashomon.sets.base import ModelSet

    e = ctx.cfg.evaluate
    mset = ModelSet.load(ctx.path("sample", "set.pt"))
    if not mset.head_only and len(idx) > e.robustness_models:
        # A full forward per model and per corrupted split: audit a seeded subset of the set.
        rng = np.random.default_rng(ctx.cfg.seed)
        idx = np.sort(rng.choice(idx, e.robustness_models, replace=False))
        ctx.summary["robustness_models"] = f"{len(idx)} of the set (seeded subset)"
    mset = mset.subset(idx)
    model, _ = load_checkpoint(ctx.path("train", "model.pt"), device=ctx.device)
    table = robustness_tables(
        mset,
        model,
        ctx.task(),
        corruptions=e.corruptions,
        severities=e.severities,
        attacks=e.attacks,
        attack_epsilons=e.attack_epsilons,
        seed=ctx.cfg.seed,
        cache_dir=ctx.run_dir / "cache" / "corruptions",
        device=ctx.device,
        max_images=e.robustness_images,
        max_memory=ctx.cfg.sample.max_memory,
        progress=ctx.progress,
        whitebox_models=e.whitebox_models,
        attack_max_images=e.attack_images,
    )
    ctx.summary["robustness_timings"] = {
        k: round(float(v), 2) for k, v in table.attrs.get("timings", {}).items()
    }
    # robustness_tables numbers the set's models 0..M'-1; map back to the sample stage's ids.
    set_rows = table["model"] >= 0
    table.loc[set_rows, "model"] = idx[table.loc[set_rows, "model"].to_numpy()]
    return table


def robustness_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Per-model summary columns for selection and spread: mean accuracy over corruptions and
    severities, and adversarial accuracy per attack and ε (transfer from the MAP model)."""
    out = []
    corr = table[(table["family"] == "corruption") & (table["metric"] == "accuracy")]
    if len(corr):
        out.append(corr.groupby("model")["value"].mean().rename("corruption_accuracy"))
    att = table[(table["family"] == "attack") & (table["metric"] == "accuracy")]
    for (name, eps), frame in att.groupby(["corruption", "epsilon"]):
        if eps == 0:
            continue
        mode = frame[frame["mode"] == "transfer"] if (frame["mode"] == "transfer").any() else frame
        col = f"adv_accuracy_{name}_{eps * 255:.0f}of255"
        out.append(mode.groupby("model")["value"].mean().rename(col))
    if not out:
        return pd.DataFrame({"model": []})
    return pd.concat(out, axis=1).reset_index()
