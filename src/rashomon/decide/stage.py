"""The `decide` stage: best-in-set selection (validation → test), the constrained baseline,
ensembles with abstention and Laplace Sample Information, as tables for the report."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.context import StageContext
from rashomon.decide import CorruptedInputs, decide_all
from rashomon.decide.constrained import train_constrained_baseline
from rashomon.decide.desiderata import Desideratum, default_desiderata, single_model_values
from rashomon.decide.postprocess import threshold_frame
from rashomon.decide.selection import CORRUPTION_DESIDERATUM
from rashomon.errors import RashomonError
from rashomon.models.predict import model_probs


def baseline_attribute(task, requested: str | None) -> str:
    """The attribute the constrained baseline balances: the configured one, else the first real
    (non-derived) attribute, else the derived intensity proxy."""
    if requested is not None:
        if requested not in task.attributes:
            raise RashomonError(
                f"unknown constrained_attribute {requested!r}; this task has "
                f"{sorted(task.attributes)}"
            )
        return requested
    real = [a for a, info in task.attributes.items() if not info.derived]
    return real[0] if real else "intensity"


def chosen_desiderata(task, select: list[str] | None) -> list[Desideratum] | None:
    """The task's desiderata, or the ones `decide.select` names (an error lists the valid names);
    None: every one (decide_all's default)."""
    attrs = sorted(task.attributes)
    num_classes = 2 if task.kind == "multilabel" else task.num_classes
    every = default_desiderata(attrs, num_classes)
    if not select:
        return None
    names = [x.name for x in every] + [CORRUPTION_DESIDERATUM]
    unknown = [n for n in select if n not in names]
    if unknown:
        raise RashomonError(
            f"decide.select names {unknown}, which this task has not; choose from "
            f"{', '.join(names)}"
        )
    return [x for x in every if x.name in select]


def corrupted_inputs(ctx: StageContext) -> CorruptedInputs:
    """Per-patient correctness on corrupted validation and test images, when evaluate kept it."""
    ev = ctx.path("evaluate")
    files = [ev / S.corrupted_correct_file(s) for s in ("val", "test")]
    if not all(f.exists() for f in files) or not (ev / S.CORRUPTED_MODELS).exists():
        return {}
    return {
        "corrupted_val": np.load(files[0]),
        "corrupted_test": np.load(files[1]),
        "corrupted_models": np.load(ev / S.CORRUPTED_MODELS),
    }


def threshold_tables(ctx, task, attribute: str, load, keep, d) -> pd.DataFrame | None:
    """fairlearn's ThresholdOptimizer on the MAP model and the first `threshold_models` members
    of the set (see rashomon.decide.postprocess.threshold_frame)."""
    gv = task.val.groups[attribute].numpy()
    if len(np.unique(gv)) < 2:
        ctx.summary["threshold_baseline"] = f"skipped: validation has one group of {attribute}"
        return None
    ids = np.flatnonzero(keep)[: d.threshold_models]
    pv, pt = load(S.probs_file("val")), load(S.probs_file("test"))
    return threshold_frame(
        load(S.map_probs_file("val")),
        load(S.map_probs_file("test")),
        pv[ids],
        pt[ids],
        ids,
        task.val.y.numpy(),
        task.test.y.numpy(),
        gv,
        task.test.groups[attribute].numpy(),
        attribute,
        d.threshold_constraint,
        ctx.cfg.seed,
    )


def run_decide_stage(ctx: StageContext) -> None:
    """The decide stage: selection, ensembles, baselines and LSI from sample's and evaluate's
    outputs, written as decide's tables."""
    from rashomon.lsi import model_lsi
    from rashomon.models.train import load_checkpoint

    cfg, d = ctx.cfg, ctx.cfg.decide
    task = ctx.task()
    s = ctx.path("sample")
    ctx.path("evaluate")
    load = lambda name: np.load(s / name)  # noqa: E731
    keep = load(S.IN_SET)
    groups = {
        split: {a: g.numpy() for a, g in task.split(split).groups.items()}
        for split in ("val", "test")
    }
    model, _ = load_checkpoint(ctx.path("train", S.CHECKPOINT), device=ctx.device)
    t = cfg.train

    baseline_test = None
    if d.constrained_baseline and task.kind != "multilabel":
        attribute = baseline_attribute(task, d.constrained_attribute)
        baseline = train_constrained_baseline(
            task,
            t.arch,
            attribute,
            t.epochs,
            cfg.seed,
            ctx.device,
            method=d.constrained_method,
            **t.fit_options(),
            progress=ctx.progress,
        )
        probs = model_probs(baseline, task.test.x, task.kind == "multilabel", ctx.device).numpy()
        baseline_des = default_desiderata(sorted(groups["test"]), probs.shape[1])
        baseline_test = single_model_values(
            probs, task.test.y.numpy(), groups["test"], baseline_des
        )
        ctx.summary["constrained_baseline"] = f"{d.constrained_method} on {attribute}"

    lsi = train_preds = map_train_preds = None
    if d.lsi and (s / S.probs_file("train")).exists():
        prior = len(task.train) * t.weight_decay  # mean loss + weight decay wd ⇔ prior N·wd
        parts = cast(  # return_parts=True: the table
            pd.DataFrame,
            model_lsi(
                model,
                task.train.x,
                task.train.y,
                kind=task.kind,
                prior_precision=prior,
                device=ctx.device,
                return_parts=True,
            ),
        )
        lsi = parts["lsi"].to_numpy()
        # The closed form holds at the head's optimum; record how far the trained head was.
        ctx.summary["lsi_head"] = {k: round(v, 6) for k, v in parts.attrs.items()}
        p_train = np.load(s / S.probs_file("train"), mmap_mode="r")
        map_p_train = model_probs(
            model, task.train.x, task.kind == "multilabel", ctx.device
        ).numpy()
        if task.kind == "multilabel":
            train_preds, map_train_preds = p_train > 0.5, map_p_train > 0.5
        else:
            train_preds, map_train_preds = p_train.argmax(-1), map_p_train.argmax(-1)
    elif d.lsi:
        ctx.summary["lsi"] = "skipped: the sample stage stored no training predictions"

    des = chosen_desiderata(task, d.select)
    corrupted = corrupted_inputs(ctx)
    if corrupted and d.select and CORRUPTION_DESIDERATUM not in d.select:
        corrupted = {}
    ctx.summary["robustness_selection"] = (
        "on corrupted validation, confirmed on corrupted test"
        if corrupted
        else "not selected on (no corrupted validation split: evaluate.robustness_selection)"
    )
    threshold_test = None
    if d.threshold_optimizer and task.kind == "binary":
        attribute = baseline_attribute(task, d.constrained_attribute)
        try:
            post = threshold_tables(ctx, task, attribute, load, keep, d)
        except RashomonError as exc:  # a baseline that cannot be fitted is a note, not a failure
            post = None
            ctx.summary["threshold_baseline"] = f"skipped on {attribute}: {exc}"
        if post is not None:
            post.to_csv(ctx.out / S.TABLES["postprocess"].file, index=False)
            map_rows = post[(post[S.MODEL] == -1) & (post[S.SPLIT] == "test")]
            threshold_test = dict(zip(map_rows[S.DESIDERATUM], map_rows[S.VALUE], strict=True))
            ctx.summary["threshold_baseline"] = f"{d.threshold_constraint} on {attribute}"

    out = decide_all(
        val_probs=load(S.probs_file("val")),
        val_y=task.val.y,
        test_probs=load(S.probs_file("test")),
        test_y=task.test.y,
        map_val_probs=load(S.map_probs_file("val")),
        map_test_probs=load(S.map_probs_file("test")),
        val_groups=groups["val"],
        test_groups=groups["test"],
        rashomon_mask=keep,
        kind=task.kind,
        ensemble_sizes=d.ensemble_sizes,
        taus=d.agreement,
        alphas=[d.alpha],
        pareto_epsilon=d.pareto_epsilon,
        n_boot=cfg.evaluate.bootstrap,
        baseline_test=baseline_test,
        lsi=lsi,
        train_preds=train_preds,
        map_train_preds=map_train_preds,
        seed=cfg.seed,
        class_names=task.class_names,
        desiderata=des,
        threshold_test=threshold_test,
        **corrupted,
    )
    for key, frame in out.items():  # each table once, under the schema's file name
        frame.to_csv(ctx.out / S.TABLES[key].file, index=False)
    sel = out.get("selection")
    if sel is not None and len(sel):
        ctx.summary["selection"] = {
            r[S.DESIDERATUM]: r.get(S.VERDICT, "") for _, r in sel.iterrows()
        }
    mk = out.get("ensemble_min_k")
    if mk is not None and len(mk):
        ctx.summary["ensemble_min_k"] = mk.iloc[0].to_dict()
    notes = out.get("notes")
    if notes is not None and len(notes):
        ctx.summary["notes"] = notes.to_dict("records")
