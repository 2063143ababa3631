"""Constrained baselines to compare free best-in-set selection with: the same architecture trained
with a fairness intervention.

- ``reweight``: group-balanced reweighting, every (group, label) cell of the training split gets
  equal total mass (``rashomon.models.train.train(..., group_balanced=attribute)``);
- ``penalty``: mean cross-entropy (class-weighted as the MAP model's, `resolve_class_weights`) +
  ``penalty_weight`` x a differentiable fairness gap computed on each mini-batch from the
  predicted probability of the positive class (binary tasks): ``tpr_gap`` = max - min over
  groups of the mean p(positive) among true positives (soft equal opportunity), ``dp_gap`` =
  the same over all samples (soft demographic parity). Groups absent from a batch (or without
  positives) are skipped for that batch.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.external import build_network
from rashomon.models.registry import Classifier
from rashomon.models.train import (
    TrainOptions,
    fit,
    loss_function,
    per_sample_loss,
    plan_budget,
    resolve_class_weights,
    seed_everything,
    train,
)

METHODS = ("reweight", "penalty")
PENALTIES = ("tpr_gap", "dp_gap")


def train_constrained_baseline(
    task: Task,
    arch: str = "cnn-small",
    attribute: str = "random",
    epochs: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    *,
    method: str = "reweight",
    penalty: str = "tpr_gap",
    penalty_weight: float = 1.0,
    **train_kwargs: Any,
) -> Classifier:
    """Train the constrained baseline (module docstring). ``train_kwargs`` are the keyword
    arguments of ``rashomon.models.train.train`` (its `TrainOptions`: optimizer, lr, budget,
    class weights, ...; and progress, history): both methods train as the MAP model did."""
    if attribute not in task.train.groups:
        raise RashomonError(
            f"unknown attribute {attribute!r} for the constrained baseline; choose one of "
            f"{sorted(task.train.groups)}"
        )
    if method == "reweight":
        return train(
            task, arch, epochs, seed, group_balanced=attribute, device=device, **train_kwargs
        )
    if method == "penalty":
        return train_fairness_penalty(
            task,
            arch,
            attribute,
            epochs,
            seed,
            device,
            penalty=penalty,
            penalty_weight=penalty_weight,
            **train_kwargs,
        )
    raise RashomonError(f"unknown constrained method {method!r}; use one of {METHODS}")


def soft_gap(p_pos: torch.Tensor, y: torch.Tensor, g: torch.Tensor, penalty: str) -> torch.Tensor:
    """Differentiable fairness gap of one batch (module docstring); 0 with fewer than 2 groups."""
    keep = y == 1 if penalty == "tpr_gap" else torch.ones_like(y, dtype=torch.bool)
    rates = [p_pos[keep & (g == v)].mean() for v in torch.unique(g) if (keep & (g == v)).any()]
    if len(rates) < 2:
        return p_pos.sum() * 0.0
    r = torch.stack(rates)
    return r.max() - r.min()


def train_fairness_penalty(
    task: Task,
    arch: str = "cnn-small",
    attribute: str = "random",
    epochs: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    *,
    penalty: str = "tpr_gap",
    penalty_weight: float = 1.0,
    progress: bool = False,
    history: list[dict] | None = None,
    **train_options: Any,
) -> Classifier:
    """Mean cross-entropy + penalty_weight * soft fairness gap, trained with `train`'s options
    (`train_options`, a `TrainOptions`: optimizer, budget, schedule, class weights and
    checkpoint selection, by ``rashomon.models.train.fit``); selection uses the validation
    cross-entropy, class-weighted as training is."""
    options = TrainOptions.of(train_options)
    if task.kind != "binary" and task.num_classes != 2:
        raise RashomonError(
            f"the fairness penalty needs a binary task, {task.name} is {task.kind}; "
            "use method='reweight'"
        )
    if penalty not in PENALTIES:
        raise RashomonError(f"unknown fairness penalty {penalty!r}; use one of {PENALTIES}")
    if attribute not in task.train.groups:
        raise RashomonError(
            f"unknown attribute {attribute!r}; choose one of {sorted(task.train.groups)}"
        )
    if options.group_balanced is not None:
        raise RashomonError(
            "group_balanced is the reweight method's training; the penalty method does not "
            "take it: drop it or use method='reweight'"
        )
    budget = plan_budget(len(task.train), options.batch_size, options.steps, epochs)
    seed_everything(seed)
    model = build_network(
        arch,
        task.in_channels,
        task.output_dim,
        task.image_size,
        probe=task.val.x[:2],
        **options.arch_options,
    ).to(device)
    weight = resolve_class_weights(task, options.class_weights)
    loss_fn = loss_function(task.kind, None if weight is None else weight.to(device))
    g = task.train.groups[attribute]

    def batch_loss(net, xb, yb, idx):
        logits = net(xb)
        ce = per_sample_loss(loss_fn, logits, yb, task.kind).mean()
        gap = soft_gap(torch.softmax(logits, 1)[:, 1], yb, g[idx].to(logits.device), penalty)
        return ce + penalty_weight * gap, {"train_loss": ce.detach(), "train_gap": gap.detach()}

    chosen = fit(
        model,
        task,
        batch_loss,
        budget,
        options,
        seed=seed,
        device=device,
        progress=progress,
        history=history,
        desc=f"train {arch} + {penalty}",
        class_weight=weight,
    )
    model.train_config = {
        "arch": arch,
        "epochs": epochs,
        "seed": seed,
        **asdict(options),
        **chosen,
        "class_weight": None if weight is None else [float(v) for v in weight],
        "constrained": {
            "method": "penalty",
            "penalty": penalty,
            "penalty_weight": penalty_weight,
            "attribute": attribute,
        },
    }
    model.task_name = task.name
    return model
