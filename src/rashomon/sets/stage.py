"""The `sample` stage: build the model set, predict val/test (and train for last-layer sets), and
record per-model validation scores, distances from θ* and Rashomon-set survival per ε.

Outputs in the stage folder:
- set.pt                       the ModelSet (loadable alone with ModelSet.load)
- probs_val.npy, probs_test.npy   [M, N, C] float32 (multilabel: [M, N, L] sigmoid)
- map_probs_val.npy, map_probs_test.npy   the MAP model's [N, C]
- probs_train.npy              only for last-layer sets (cheap; per-training-sample analyses)
- per_model.csv                model, val_loss, val_accuracy, test_loss, test_accuracy,
                               distance_l2, distance_rel, in_set@ε per ε of the grid
- survival.csv                 epsilon, on, kept, total, threshold
- in_set.npy                   bool [M] at the configured ε
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from rashomon.errors import RashomonError
from rashomon.predict import model_probs
from rashomon.sets.base import ModelSet
from rashomon.sets.rashomon import model_scores, rashomon_mask, survival_table
from rashomon.sets.registry import BuildContext, build_model_set

TRAIN_PROBS_LIMIT = 256 * 2**20  # bytes: store train predictions only when this cheap


def build_context(ctx: Any) -> BuildContext:
    """What the chosen source's builder gets from the run: seed, M, device, budget, training."""
    cfg = ctx.cfg
    t = cfg.train
    return BuildContext(
        seed=cfg.seed,
        models=cfg.sample.models,
        device=ctx.device,
        max_memory=cfg.sample.max_memory,
        progress=ctx.progress,
        train={"arch": t.arch, "epochs": t.epochs, "fit_options": t.fit_options()},
        run_dir=ctx.run_dir,
    )


def build_set(ctx: Any, model: torch.nn.Module, task: Any) -> ModelSet:
    """The ModelSet of the configured source (any registered one, see rashomon.sets.registry)."""
    s = ctx.cfg.sample
    return build_model_set(s.source, model, task, s.source_options(), build_context(ctx))


def run_sample_stage(ctx: Any) -> None:
    from rashomon.models.train import load_checkpoint

    s = ctx.cfg.sample
    task = ctx.task()
    model, meta = load_checkpoint(ctx.path("train", "model.pt"), device=ctx.device)
    trained_on = meta.get("task", {}).get("name")
    if trained_on and trained_on != task.name:
        raise RashomonError(
            f"the MAP model was trained on {trained_on!r}, not {task.name!r}; re-run `train`"
        )
    start = time.perf_counter()
    mset = build_set(ctx, model, task)
    build_seconds = time.perf_counter() - start
    mset.validate(task=task, model=model)
    mset.save(ctx.out / "set.pt")

    start = time.perf_counter()
    probs = {}
    for split in ("val", "test"):
        probs[split] = mset.predict(
            task.split(split).x, device=ctx.device, max_memory=s.max_memory
        ).numpy()
        np.save(ctx.out / f"probs_{split}.npy", probs[split].astype(np.float32))
        map_p = model_probs(model, task.split(split).x, mset.multilabel, ctx.device).numpy()
        np.save(ctx.out / f"map_probs_{split}.npy", map_p.astype(np.float32))
        probs[f"map_{split}"] = map_p
    n_train = len(task.train)
    if mset.head_only and len(mset) * n_train * probs["val"].shape[2] * 4 <= TRAIN_PROBS_LIMIT:
        p_train = mset.predict(task.train.x, device=ctx.device, max_memory=s.max_memory)
        np.save(ctx.out / "probs_train.npy", p_train.numpy().astype(np.float32))
    predict_seconds = time.perf_counter() - start

    y_val, y_test = task.val.y.numpy(), task.test.y.numpy()
    val = model_scores(probs["val"], y_val)
    test = model_scores(probs["test"], y_test)
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
    epsilons = sorted(set(map(float, s.epsilons)) | {float(s.epsilon)})
    for eps in epsilons:
        table[f"in_set@{eps:g}"] = rashomon_mask(
            probs["val"], y_val, eps, on=s.on, ref=probs["map_val"], min_models=0
        )
    table.to_csv(ctx.out / "per_model.csv", index=False)
    rows = survival_table(probs["val"], y_val, probs["map_val"], epsilons, on=s.on)
    pd.DataFrame(rows).to_csv(ctx.out / "survival.csv", index=False)
    keep = table[f"in_set@{float(s.epsilon):g}"].to_numpy()
    if not keep.any():
        counts = ", ".join(f"{eps:g}: {int(table[f'in_set@{eps:g}'].sum())}" for eps in epsilons)
        raise RashomonError(
            f"epsilon {s.epsilon:g} on {s.on} keeps 0 of {len(mset)} models (kept per epsilon: "
            f"{counts}); use a larger sample.epsilon, more models, or a narrower posterior "
            "(sample.prior grid or a larger fixed prior precision)"
        )
    np.save(ctx.out / "in_set.npy", keep)

    map_val = model_scores(probs["map_val"][None], y_val)
    ctx.summary.update(
        source=mset.source,
        options=s.source_options().model_dump(mode="json"),
        kind=mset.kind,
        models=len(mset),
        modes=mset.num_modes,
        varied_parameters=mset.num_varied,
        epsilon=float(s.epsilon),
        on=s.on,
        kept=int(keep.sum()),
        survival={f"{r['epsilon']:g}": r["kept"] for r in rows},
        map_val_loss=round(float(map_val["loss"][0]), 5),
        map_val_accuracy=round(float(map_val["accuracy"][0]), 5),
        set_val_loss_median=round(float(np.median(val["loss"])), 5),
        build_seconds=round(build_seconds, 2),
        predict_seconds=round(predict_seconds, 2),
        **{
            k: v
            for k, v in mset.meta.items()
            if k
            in (
                "subset",
                "hessian",
                "prior",
                "prior_precision",
                "temperature",
                "fit_seconds",
                "prior_seconds",
                "sample_seconds",
                "dropout",
                "seeds",
            )
        },
    )
