"""MAP training: Adam or SGD, early stopping on validation loss, deterministic given the seed."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier, build_model
from rashomon.torchio import load_payload, save_atomic

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    arch: str = "cnn-small"
    epochs: int = 20
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    patience: int = 5
    class_weights: bool = False
    group_balanced: str | None = None  # attribute whose groups are reweighted to equal mass
    augment: bool = False
    arch_options: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code draws from the global state
    torch.manual_seed(seed)


def loss_function(kind: str, class_weight: torch.Tensor | None = None) -> nn.Module:
    """Mean cross-entropy (softmax) or BCE-with-logits (multilabel), unreduced for reweighting."""
    if kind == "multilabel":
        return nn.BCEWithLogitsLoss(pos_weight=class_weight, reduction="none")
    return nn.CrossEntropyLoss(weight=class_weight, reduction="none")


def per_sample_loss(loss_fn: nn.Module, logits: torch.Tensor, y: torch.Tensor, kind: str):
    if kind == "multilabel":
        return loss_fn(logits, y.float()).mean(dim=1)
    return loss_fn(logits, y)


def class_weight_vector(task: Task) -> torch.Tensor:
    """Inverse-frequency class weights (multilabel: negative/positive ratio per label)."""
    y = task.train.y
    if task.kind == "multilabel":
        pos = y.float().sum(0).clamp(min=1)
        return (len(y) - pos) / pos
    counts = torch.bincount(y, minlength=task.num_classes).float().clamp(min=1)
    return counts.sum() / (len(counts) * counts)


def sample_weight_vector(task: Task, attribute: str) -> torch.Tensor:
    """Weights giving every (group, label) cell of the training split equal total mass."""
    if attribute not in task.train.groups:
        raise RashomonError(
            f"unknown attribute {attribute!r} for group balancing; choose one of "
            f"{sorted(task.train.groups)}"
        )
    g = task.train.groups[attribute]
    y = task.train.y if task.kind != "multilabel" else task.train.y[:, 0]
    cell = g * (int(y.max()) + 1) + y
    counts = torch.bincount(cell).float()
    w = 1.0 / counts[cell]
    return w * len(w) / w.sum()


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str, device: str, batch: int = 512
) -> tuple[float, float]:
    """Mean loss and accuracy (multilabel: per-label accuracy) on a split."""
    model.eval()
    loss_fn = loss_function(kind)
    total, correct, n = 0.0, 0.0, 0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
        logits = model(xb)
        total += float(per_sample_loss(loss_fn, logits, yb, kind).sum())
        if kind == "multilabel":
            correct += float(((logits > 0).long() == yb).float().mean(1).sum())
        else:
            correct += float((logits.argmax(1) == yb).sum())
        n += len(xb)
    return total / n, correct / n


def _augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 2 px, drawn from the training generator."""
    flip = torch.rand(len(xb), generator=gen) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return torch.roll(xb, shifts=(dy, dx), dims=(-2, -1))


def train(
    task: Task,
    arch: str = "cnn-small",
    epochs: int = 20,
    seed: int = 0,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    patience: int = 5,
    class_weights: bool = False,
    group_balanced: str | None = None,
    augment: bool = False,
    arch_options: dict[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = True,
    history: list[dict] | None = None,
) -> Classifier:
    """Train the MAP model: minimise mean cross-entropy + weight decay, keep the weights with the
    lowest validation loss, stop after `patience` epochs without improvement.

    Returns a `Classifier` whose forward gives logits; `model.train_config` records the call.
    """
    if epochs < 1:
        raise RashomonError(f"epochs must be at least 1, got {epochs}")
    if optimizer not in ("adam", "sgd"):
        raise RashomonError(f"unknown optimizer {optimizer!r}; use adam or sgd")
    cfg = TrainConfig(
        arch,
        epochs,
        seed,
        optimizer,
        lr,
        weight_decay,
        batch_size,
        patience,
        class_weights,
        group_balanced,
        augment,
        dict(arch_options or {}),
    )
    seed_everything(seed)
    model = build_model(
        arch, task.in_channels, task.output_dim, task.image_size, **cfg.arch_options
    )
    model.to(device)
    weight = class_weight_vector(task).to(device) if class_weights else None
    loss_fn = loss_function(task.kind, weight)
    sample_w = sample_weight_vector(task, group_balanced) if group_balanced else None
    params = model.parameters()
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    x, y = task.train.x, task.train.y
    n = len(x)
    best_loss, best_state, stale = math.inf, copy.deepcopy(model.state_dict()), 0
    history = history if history is not None else []
    bar = _progress(epochs, f"train {arch}", progress)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            xb = x[idx]
            if augment:
                xb = _augment(xb, gen)
            xb, yb = xb.to(device), y[idx].to(device)
            losses = per_sample_loss(loss_fn, model(xb), yb, task.kind)
            if sample_w is not None:
                loss = (losses * sample_w[idx].to(device)).mean()
            else:
                loss = losses.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
        val_loss, val_acc = evaluate_loss(model, task.val.x, task.val.y, task.kind, device)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": running / n,
                "val_loss": val_loss,
                "val_acc": val_acc,
            }
        )
        if val_loss < best_loss - 1e-6:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        bar.update(1, val_loss=val_loss, val_acc=val_acc)
        if stale >= patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    model.train_config = asdict(cfg)
    model.task_name = task.name
    return model


class _progress:
    """A tqdm bar that can be switched off (tests, Ray workers)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def update(self, n: int = 1, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()})
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def save_checkpoint(model: Classifier, path: str | Path, task: Task | None = None, **extra) -> None:
    """Weights + architecture spec + task description + training config, loadable alone."""
    from rashomon.models.external import template_of

    payload = {
        "version": CHECKPOINT_VERSION,
        "spec": model.spec,
        "template": template_of(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": getattr(model, "train_config", {}),
        "task": task.describe() if task is not None else {"name": getattr(model, "task_name", "")},
        **extra,
    }
    save_atomic(payload, path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Classifier, dict]:
    """Rebuild the model from a checkpoint; returns it (eval mode) and the checkpoint metadata."""
    from rashomon.models.external import model_from_spec

    payload = load_payload(path, "checkpoint", "run `rashomon train`")
    model = model_from_spec(payload["spec"], payload.get("template"))
    model.load_state_dict(payload["state_dict"])
    model.train_config = payload.get("train_config", {})
    model.task_name = payload.get("task", {}).get("name", "")
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "template")}
    return model, meta
