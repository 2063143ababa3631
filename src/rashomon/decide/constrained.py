"""Constrained baselines to compare free best-in-set selection with: the same architecture trained
with a fairness intervention.

- ``reweight``: group-balanced reweighting, every (group, label) cell of the training split gets
  equal total mass (``rashomon.models.train.train(..., group_balanced=attribute)``);
- ``penalty``: mean cross-entropy + ``penalty_weight`` x a differentiable fairness gap computed on
  each mini-batch from the predicted probability of the positive class (binary tasks):
  ``tpr_gap`` = max - min over groups of the mean p(positive) among true positives (soft
  equal opportunity), ``dp_gap`` = the same over all samples (soft demographic parity). Groups
  absent from a batch (or without positives) are skipped for that batch.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier, build_model
from rashomon.models.train import (
    evaluate_loss,
    loss_function,
    per_sample_loss,
    seed_everything,
    train,
)

METHODS = ("reweight", "penalty")
PENALTIES = ("tpr_gap", "dp_gap")


def train_constrained_baseline(
    task: Task,
    arch: str = "cnn-small",
    attribute: str = "random",
    epochs: int = 20,
    seed: int = 0,
    device: str = "cpu",
    *,
    method: str = "reweight",
    penalty: str = "tpr_gap",
    penalty_weight: float = 1.0,
    **train_kwargs: Any,
) -> Classifier:
    """Train the constrained baseline (module docstring). ``train_kwargs`` go to
    ``rashomon.models.train.train`` (optimizer, lr, weight_decay, batch_size, patience,
    arch_options, progress, ...)."""
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
    epochs: int = 20,
    seed: int = 0,
    device: str = "cpu",
    *,
    penalty: str = "tpr_gap",
    penalty_weight: float = 1.0,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    patience: int = 5,
    arch_options: dict[str, Any] | None = None,
    progress: bool = False,
    history: list[dict] | None = None,
) -> Classifier:
    """Adam on mean cross-entropy + penalty_weight * soft fairness gap; keeps the weights with
    the lowest validation cross-entropy (early stopping as in ``train``)."""
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
    if epochs < 1:
        raise RashomonError(f"epochs must be at least 1, got {epochs}")
    seed_everything(seed)
    opts = dict(arch_options or {})
    model = build_model(arch, task.in_channels, task.output_dim, task.image_size, **opts).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = loss_function(task.kind)
    gen = torch.Generator().manual_seed(seed)
    x, y, g = task.train.x, task.train.y, task.train.groups[attribute]
    best, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    history = history if history is not None else []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total_ce, total_gap = 0.0, 0.0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb, yb, gb = x[idx].to(device), y[idx].to(device), g[idx].to(device)
            logits = model(xb)
            ce = per_sample_loss(loss_fn, logits, yb, task.kind).mean()
            gap = soft_gap(torch.softmax(logits, 1)[:, 1], yb, gb, penalty)
            loss = ce + penalty_weight * gap
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_ce += float(ce.detach()) * len(idx)
            total_gap += float(gap.detach()) * len(idx)
        val_loss, val_acc = evaluate_loss(model, task.val.x, task.val.y, task.kind, device)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total_ce / len(x),
                "train_gap": total_gap / len(x),
                "val_loss": val_loss,
                "val_acc": val_acc,
            }
        )
        if progress:
            print(f"epoch {epoch + 1}: val_loss {val_loss:.4f} val_acc {val_acc:.4f}")
        if val_loss < best - 1e-6:
            best, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    model.train_config = {
        "arch": arch,
        "epochs": epochs,
        "seed": seed,
        "optimizer": "adam",
        "lr": lr,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "patience": patience,
        "arch_options": opts,
        "constrained": {
            "method": "penalty",
            "penalty": penalty,
            "penalty_weight": penalty_weight,
            "attribute": attribute,
        },
    }
    model.task_name = task.name
    return model
