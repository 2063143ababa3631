"""The `train` stage: the MAP model's checkpoint, its training history and its val/test scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rashomon import metrics as rm
from rashomon import schema as S
from rashomon.context import StageContext
from rashomon.data.task import Task
from rashomon.models.external import build_network
from rashomon.models.predict import model_probs
from rashomon.models.registry import count_parameters
from rashomon.models.train import resolve_class_weights, save_checkpoint, train


def map_scores(probs: np.ndarray, y: np.ndarray, kind: str) -> dict[str, float]:
    """Accuracy and AUROC of one model's [N, C] probabilities (macro one-vs-rest for multiclass,
    mean over labels for multilabel)."""
    p = probs[None]
    if kind == "multilabel":
        acc = float(((probs > 0.5) == (y > 0.5)).mean())
        return {"accuracy": acc, "auroc": float(rm.multilabel_auroc(p, y)[0])}
    return {"accuracy": float(rm.accuracy(p, y)[0]), "auroc": float(rm.auroc(p, y)[0])}


def given_model(task: Task, train_section: Any) -> Any:
    """The user's trained network (--model with --weights, or a saved whole network), split at
    its final nn.Linear and checked against the task: the model the run audits."""
    t = train_section
    model = build_network(
        t.arch,
        task.in_channels,
        task.output_dim,
        task.image_size,
        probe=task.val.x[:2],
        weights=t.weights,
        **t.arch_options(),
    )
    # The objective a given network was trained on is the user's: unweighted unless they say
    # `train.class_weights: true` (then the filter's loss is the class-weighted NLL).
    weight = resolve_class_weights(task, True) if t.class_weights is True else None
    model.train_config = {
        "arch": t.arch,
        "weights": t.weights,
        "given": True,
        "class_weight": None if weight is None else [float(v) for v in weight],
    }
    model.task_name = task.name
    return model


# Training states above this size are not kept (a ResNet-18's four states with their Adam
# moments and candidate checkpoints run to gigabytes); cnn-small's are about 10 MB.
STATES_BYTES_LIMIT = 512 * 2**20


def keep_states(ctx: StageContext, states: list) -> None:
    """Write the training states forks resume from (`rashomon.models.fork`), when affordable."""
    from rashomon.models.fork import as_state_payloads
    from rashomon.torchio import save_atomic

    if not states:
        return
    payloads = as_state_payloads(states)
    size = sum(
        v.numel() * v.element_size()
        for p in payloads
        for part in (p["model"], *p["candidates"].values())
        for v in part.values()
    )
    if size > STATES_BYTES_LIMIT:
        ctx.summary["training_states"] = f"not kept: {size / 2**20:.0f} MB"
        ctx.console.print(
            f"[dim]  training states not kept for forks ({size / 2**20:.0f} MB); "
            "--source fork will fine-tune from the trained weights[/dim]"
        )
        return
    save_atomic({"states": payloads}, ctx.out / S.TRAINING_STATES)
    # the share of the budget each state was reached at (the first epoch end at or past the
    # share asked for in train.snapshots)
    ctx.summary["training_states"] = [round(s.fraction, 4) for s in states]


def run_train_stage(ctx: StageContext) -> None:
    """The train stage: the MAP model trained (or the user's network taken as given), saved with its
    history."""
    task = ctx.task()
    t = ctx.cfg.train
    history: list[dict] = []
    if t.audits_given_model:
        model = given_model(task, t)
        ctx.summary["trained"] = "no: the given network is audited as it is"
    else:
        states: list = []
        model = train(
            task,
            t.arch,
            t.epochs,
            ctx.cfg.seed,
            **t.fit_options(),
            device=ctx.device,
            progress=ctx.progress,
            history=history,
            snapshots=t.snapshots,
            saved_states=states,
        )
        keep_states(ctx, states)
    save_checkpoint(model, ctx.out / S.CHECKPOINT, task)
    if history:  # a given network has no training history
        pd.DataFrame(history).to_csv(ctx.out / S.TABLES["history"].file, index=False)
    ctx.summary["parameters"] = count_parameters(model)
    # The loss the model minimised and the Rashomon filter uses: None = unweighted
    ctx.summary["class_weights"] = t.class_weights
    ctx.summary["class_weight"] = model.train_config.get("class_weight")
    ctx.summary["epochs_run"] = len(history)
    for split in ("val", "test"):
        s = task.split(split)
        probs = model_probs(model, s.x, task.kind == "multilabel", ctx.device).numpy()
        for k, v in map_scores(probs, s.y.numpy(), task.kind).items():
            ctx.summary[f"{split}_{k}"] = round(v, 4)
