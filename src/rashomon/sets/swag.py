"""SWA-Gaussian (Maddox et al., NeurIPS 2019) around a trained model.

From the MAP weights, SGD continues at a constant learning rate on the training objective the
model was trained on (mean loss + weight decay); after every epoch the weights are recorded.
Their mean θ_SWA, the diagonal of their second moment and the last `rank` deviations D define
N(θ_SWA, ½(Σ_diag + D Dᵀ/(rank − 1))); samples are θ_SWA + Σ_diag^{1/2} z₁/√2 + D z₂/√(2(rank−1)).
`subset="last_layer"` runs SGD on the head over cached penultimate features (cheap);
`subset="all"` continues training the whole network (one training epoch per snapshot).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier
from rashomon.sets.base import ModelSet

SUBSETS = ("last_layer", "all")


def snapshots(
    params: list[nn.Parameter],
    loss_of_batch: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
) -> torch.Tensor:
    """[epochs, P] flat parameter vectors after each epoch of constant-rate SGD on
    `loss_of_batch(indices)` over `n` training samples."""
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            opt.zero_grad(set_to_none=True)
            loss_of_batch(order[i : i + batch_size]).backward()
            opt.step()
        out.append(torch.cat([p.detach().flatten().cpu() for p in params]))
    return torch.stack(out)


def swag(
    model: Classifier,
    task: Any,
    models: int,
    *,
    subset: str = "last_layer",
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    epochs: int = 30,
    rank: int = 20,
    momentum: float = 0.9,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    class_weight: Any = None,
) -> ModelSet:
    """A ModelSet of `models` SWAG samples around `model` (module docstring): `epochs`
    snapshots of SGD at rate `lr` (weight decay `weight_decay`, the MAP training's) on the loss
    the MAP model was trained on (`class_weight`: its class weights), the last `rank` of them for
    the low-rank part."""
    from rashomon.models.predict import model_features
    from rashomon.models.train import loss_function, per_sample_loss
    from rashomon.sets.base import flat_parameters, ordered_names

    if subset not in SUBSETS:
        raise RashomonError(f"unknown swag subset {subset!r}; choose one of: {', '.join(SUBSETS)}")
    start = time.perf_counter()
    net = copy.deepcopy(model).to(device).train()
    torch.manual_seed(seed)
    # the MAP model's own objective: SGD on the unweighted loss of a class-weighted model drifts
    # to another decision boundary, outside the Rashomon set (BreastMNIST: 0 of 200 within ε)
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
    loss_fn = loss_function(task.kind, None if weight is None else weight.to(device))
    y = task.train.y.to(device)
    if subset == "last_layer":
        net.eval()
        feats = model_features(net, task.train.x, device).detach()
        head = net.head
        names = ordered_names(net, [f"head.{n}" for n, _ in head.named_parameters()])
        params = list(head.parameters())

        def loss_of_batch(idx):
            return per_sample_loss(loss_fn, head(feats[idx]), y[idx], task.kind).mean()

    else:
        names = [n for n, _ in net.named_parameters()]
        params = list(net.parameters())
        x = task.train.x

        def loss_of_batch(idx):
            logits = net(x[idx].to(device))
            return per_sample_loss(loss_fn, logits, y[idx], task.kind).mean()

    if rank > epochs:
        raise RashomonError(
            f"swag rank {rank} needs at least as many epochs (snapshots), got {epochs}; raise "
            "-o epochs or lower -o rank"
        )
    snaps = snapshots(
        params,
        loss_of_batch,
        len(y),
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
    ).double()
    mean = snaps.mean(0)
    var = (snaps.pow(2).mean(0) - mean.pow(2)).clamp_min(0)
    dev = (snaps[-rank:] - mean).T  # [P, rank]
    gen = torch.Generator().manual_seed(seed)
    z1 = torch.randn(models, mean.numel(), generator=gen, dtype=torch.float64)
    z2 = torch.randn(models, rank, generator=gen, dtype=torch.float64)
    vectors = mean[None] + var.sqrt()[None] * z1 / 2**0.5 + (z2 @ dev.T) / (2 * (rank - 1)) ** 0.5
    base = copy.deepcopy(model).cpu().eval()
    meta = {
        "subset": subset,
        "lr": lr,
        "weight_decay": weight_decay,
        "epochs": epochs,
        "rank": rank,
        "swa_distance": float((mean.float() - flat_parameters(base, names)).norm()),
        "fit_seconds": round(time.perf_counter() - start, 3),
    }
    return ModelSet.from_vectors(base, vectors.float(), names, source="swag", task=None, meta=meta)
