"""MC-dropout model sets with one fixed, seeded dropout mask per model.

The registry's models apply dropout to the penultimate features, right before the head. A fixed
mask z ∈ {0, 1/(1−p)}^D gives head(z ⊙ φ(x)) = (W · diag(z)) φ(x) + b, so model m is exactly a
last-layer model with head weight W·diag(z_m): the set is stored as such, the body runs once per
input and the M masked heads are one batched matmul.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier
from rashomon.sets.base import ModelSet, ordered_names, task_description


def dropout_rate(model: nn.Module) -> float:
    """The dropout rate before the model's head (0 without dropout)."""
    drop = getattr(model, "dropout", None)
    return float(drop.p) if isinstance(drop, nn.Dropout) else 0.0


def dropout(model: Classifier, models: int, seed: int = 0, task: Task | None = None) -> ModelSet:
    """A ModelSet of `models` MC-dropout models of `model`, mask m drawn from `seed`."""
    if not isinstance(models, int) or models <= 0:
        raise RashomonError(f"the number of models must be a positive integer, got {models!r}")
    n = models
    p = dropout_rate(model)
    if p <= 0:
        raise RashomonError(
            "the model has no dropout before its head; train it with the architecture option "
            "dropout (e.g. --dropout 0.2, config train.dropout) or use another --source"
        )
    if p >= 1:
        raise RashomonError(f"dropout rate {p} drops every feature; use a rate below 1")
    base = copy.deepcopy(model).cpu().eval()
    head = base.head
    weight = head.weight.detach()  # [C, D]
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.rand(n, weight.shape[1], generator=gen) >= p
    masks = keep.float() / (1.0 - p)
    weights = weight[None] * masks[:, None, :]  # [n, C, D]
    parts = [weights.reshape(n, -1)]
    names = ["head.weight"]
    if head.bias is not None:
        parts.append(head.bias.detach()[None].expand(n, -1))
        names.append("head.bias")
    names_ordered = ordered_names(base, names)
    vectors = torch.cat(parts if names_ordered == names else parts[::-1], dim=1)
    meta = {"dropout": p, "seed": int(seed), "kept_share": float(keep.float().mean())}
    return ModelSet.from_vectors(
        base,
        vectors,
        names_ordered,
        kind="nn",
        source="dropout",
        task=task_description(task) if task is not None else None,
        meta=meta,
    )
