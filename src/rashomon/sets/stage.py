"""The `sample` stage: build the model set, predict val/test (and train for last-layer sets), and
record per-model validation scores, distances from θ* and Rashomon-set survival per ε.

Outputs in the stage folder:
- set.pt                       the ModelSet (loadable alone with ModelSet.load)
- probs_val.npy, probs_test.npy   [M, N, C] float32 (multilabel: [M, N, L] sigmoid)
- map_probs_val.npy, map_probs_test.npy   the MAP model's [N, C]
- probs_train.npy              only for last-layer sets (cheap; per-training-sample analyses)
- per_model.csv                model, val_loss, val_accuracy, test_loss, test_accuracy,
                               distance_l2, distance_rel, in_set@ε per ε of the grid
- survival.csv                 epsilon, on, models_in_set, models, threshold
- in_set.npy                   bool [M] at the configured ε
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.models.predict import model_probs
from rashomon.schema import in_set_column
from rashomon.sets.base import ModelSet
from rashomon.sets.rashomon import MIN_SET_MODELS, model_scores, rashomon_mask, survival_table
from rashomon.sets.registry import BuildContext, build_model_set

TRAIN_PROBS_LIMIT = 256 * 2**20  # bytes: store train predictions only when this cheap


def build_context(ctx: Any, class_weight: Any = None) -> BuildContext:
    """What the chosen source's builder gets from the run: seed, M, device, budget, training,
    the resolved options, the audit's ε and criterion, and the MAP model's training class
    weights (the filter's loss). The stage's filter and record read ε from it too."""
    cfg = ctx.cfg
    s, t = cfg.sample, cfg.train
    return BuildContext(
        seed=cfg.seed,
        models=s.models,
        device=ctx.device,
        max_memory=s.max_memory,
        progress=ctx.progress,
        epsilon=float(s.epsilon),
        on=s.on,
        class_weight=None if class_weight is None else tuple(map(float, class_weight)),
        train={"arch": t.arch, "epochs": t.epochs, "fit_options": t.fit_options()},
        run_dir=ctx.run_dir,
        options=s.resolved_options,
    )


def build_set(ctx: Any, model: torch.nn.Module, task: Any, context: BuildContext) -> ModelSet:
    """The ModelSet of the configured source (any registered one, see rashomon.sets.registry)."""
    return build_model_set(ctx.cfg.sample.source, model, task, context.options, context)


# Files of the stage that do not depend on ε: reused when only the Rashomon filter changes.
SET_FILES = (
    S.SET,
    S.probs_file("val"),
    S.probs_file("test"),
    S.map_probs_file("val"),
    S.map_probs_file("test"),
)
OPTIONAL_SET_FILES = (S.probs_file("train"),)


def build_key(ctx: Any) -> str:
    """Identity of the set and its predictions: everything the stage reads except ε."""
    import hashlib
    import json

    payload = {
        "train": ctx.cfg.section_hash("train", attributes=ctx.attributes),
        "data": ctx.data,
        "sample": ctx.cfg.sample.set_identity(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def _reuse_previous_set(ctx: Any, key: str):
    """The previous run's set and predictions when they were built from the same inputs (the
    command changed only ε): copied into the new stage folder instead of rebuilt. Never under
    --force, nor from a run whose files are not the ones it wrote: the run directory gives no
    previous record then (`StageContext.previous`)."""
    import json
    import shutil

    old = ctx.run_dir / "sample"
    try:
        summary = json.loads((old / S.SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if summary.get("build_key") != key or not all((old / f).exists() for f in SET_FILES):
        return None
    train = ctx.previous.get("inputs", {}).get("train") if ctx.previous else None
    if train is None or train != _current_train_id(ctx):
        return None
    for f in (*SET_FILES, *OPTIONAL_SET_FILES):
        if (old / f).exists():
            shutil.copy2(old / f, ctx.out / f)
    mset = ModelSet.load(ctx.out / S.SET)
    probs = {}
    for split in ("val", "test"):
        probs[split] = np.load(ctx.out / S.probs_file(split))
        probs[f"map_{split}"] = np.load(ctx.out / S.map_probs_file(split))
    timings = {k: summary[k] for k in ("build_seconds", "predict_seconds") if k in summary}
    return mset, probs, {**timings, "reused_from_previous_run": True}


def _current_train_id(ctx: Any) -> str | None:
    return S.stage_records(ctx.run_dir).get("train", {}).get("id")


def _build_and_predict(ctx: Any, model: torch.nn.Module, task: Any, context: BuildContext):
    s = ctx.cfg.sample
    start = time.perf_counter()
    mset = build_set(ctx, model, task, context)
    build_seconds = time.perf_counter() - start
    mset.validate(task=task, model=model)
    mset.save(ctx.out / S.SET)

    start = time.perf_counter()
    probs = {}
    for split in ("val", "test"):
        probs[split] = mset.predict(
            task.split(split).x, device=ctx.device, max_memory=s.max_memory
        ).numpy()
        np.save(ctx.out / S.probs_file(split), probs[split].astype(np.float32))
        map_p = model_probs(model, task.split(split).x, mset.multilabel, ctx.device).numpy()
        np.save(ctx.out / S.map_probs_file(split), map_p.astype(np.float32))
        probs[f"map_{split}"] = map_p
    n_train = len(task.train)
    if mset.head_only and len(mset) * n_train * probs["val"].shape[2] * 4 <= TRAIN_PROBS_LIMIT:
        p_train = mset.predict(task.train.x, device=ctx.device, max_memory=s.max_memory)
        np.save(ctx.out / S.probs_file("train"), p_train.numpy().astype(np.float32))
    predict_seconds = time.perf_counter() - start
    timings = {
        "build_seconds": round(build_seconds, 2),
        "predict_seconds": round(predict_seconds, 2),
    }
    return mset, probs, timings


def run_sample_stage(ctx: Any) -> None:
    """The sample stage: the set built around the MAP model, its predictions and the Rashomon
    filter."""
    from rashomon.models.train import load_checkpoint

    s = ctx.cfg.sample
    task = ctx.task()
    model, meta = load_checkpoint(ctx.path("train", S.CHECKPOINT), device=ctx.device)
    trained_on = meta.get("task", {}).get("name")
    if trained_on and trained_on != task.name:
        raise RashomonError(
            f"the MAP model was trained on {trained_on!r}, not {task.name!r}; re-run `train`"
        )
    context = build_context(ctx, meta.get("train_config", {}).get("class_weight"))
    assert context.options is not None  # build_context sets the config's resolved options
    epsilon, on, class_weight = context.epsilon, context.on, context.class_weight
    key = build_key(ctx)
    reused = _reuse_previous_set(ctx, key)
    if reused is not None:
        mset, probs, timings = reused
        ctx.console.print(
            "[dim]  set and predictions reused: only the Rashomon filter changed[/dim]"
        )
    else:
        mset, probs, timings = _build_and_predict(ctx, model, task, context)
    ctx.summary["build_key"] = key
    y_val, y_test = task.val.y.numpy(), task.test.y.numpy()
    val = model_scores(probs["val"], y_val, class_weight)
    test = model_scores(probs["test"], y_test, class_weight)
    dist = mset.distances()
    table = pd.DataFrame(
        {
            "model": np.arange(len(mset)),
            "mode": mset.modes.numpy(),
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "distance_l2": dist["l2"],
            "distance_rel": dist["relative"],
        }
    )
    epsilons = sorted(set(map(float, s.epsilons)) | {epsilon})
    for eps in epsilons:
        table[in_set_column(eps)] = rashomon_mask(
            probs["val"],
            y_val,
            eps,
            on=on,
            ref=probs["map_val"],
            min_models=0,
            class_weight=class_weight,
        )
    table.to_csv(ctx.out / S.TABLES["per_model"].file, index=False)
    rows = survival_table(
        probs["val"], y_val, probs["map_val"], epsilons, on=on, class_weight=class_weight
    )
    pd.DataFrame(rows).to_csv(ctx.out / S.TABLES["survival"].file, index=False)
    keep = table[in_set_column(epsilon)].to_numpy()
    if keep.sum() < MIN_SET_MODELS:
        counts = ", ".join(f"{eps:g}: {int(table[in_set_column(eps)].sum())}" for eps in epsilons)
        raise RashomonError(
            f"epsilon {epsilon:g} on {on} keeps {int(keep.sum())} of {len(mset)} models, "
            f"fewer than the {MIN_SET_MODELS} a Rashomon set needs (kept per epsilon: "
            f"{counts}); use a larger sample.epsilon, more models, or "
            f"{context.options.narrower_set_advice()}"
        )
    np.save(ctx.out / S.IN_SET, keep)

    map_val = model_scores(probs["map_val"][None], y_val, class_weight)
    ctx.summary.update(
        source=mset.source,
        options=context.options.model_dump(mode="json"),
        kind=mset.kind,
        models=len(mset),
        modes=mset.num_modes,
        head_only=bool(mset.head_only),
        varied_parameters=mset.num_varied,
        epsilon=epsilon,
        on=on,
        class_weight=None if class_weight is None else list(class_weight),
        models_in_set=int(keep.sum()),
        survival={f"{r['epsilon']:g}": r["models_in_set"] for r in rows},
        map_val_loss=round(float(map_val["loss"][0]), 5),
        map_val_accuracy=round(float(map_val["accuracy"][0]), 5),
        set_val_loss_median=round(float(np.median(val["loss"])), 5),
        **timings,
        **context.options.summary(mset.meta),
    )
