"""`swag`: SWA-Gaussian (Maddox et al., NeurIPS 2019) around the trained model.

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
from typing import Any, Literal

import torch
from pydantic import Field

from rashomon.errors import RashomonError
from rashomon.sets.registry import BuildContext, SourceOptions, register_source


class SwagOptions(SourceOptions):
    subset: Literal["last_layer", "all"] = "last_layer"
    lr: float | None = Field(None, gt=0)  # default: the MAP model's learning rate
    epochs: int = Field(30, ge=2)  # SGD epochs after the MAP, one snapshot each
    rank: int = Field(20, ge=2)  # deviations kept for the low-rank part
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(64, gt=0)


def _snapshots(
    params: list[torch.nn.Parameter],
    loss_of_batch,
    n: int,
    options: SwagOptions,
    lr: float,
    weight_decay: float,
    seed: int,
) -> torch.Tensor:
    """[epochs, P] flat parameter vectors after each epoch of constant-rate SGD."""
    opt = torch.optim.SGD(params, lr=lr, momentum=options.momentum, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(options.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, options.batch_size):
            opt.zero_grad(set_to_none=True)
            loss_of_batch(order[i : i + options.batch_size]).backward()
            opt.step()
        out.append(torch.cat([p.detach().flatten().cpu() for p in params]))
    return torch.stack(out)


def build(model: Any, task: Any, options: SwagOptions, context: BuildContext) -> Any:
    """SWA-Gaussian: mean, diagonal and low-rank covariance of constant-rate SGD iterates
    started at the MAP weights."""
    from rashomon.models.predict import model_features
    from rashomon.models.train import loss_function, per_sample_loss
    from rashomon.sets.base import ModelSet, flat_parameters, ordered_names

    start = time.perf_counter()
    fit = dict(context.train.get("fit_options", {}))
    lr = options.lr or float(fit.get("lr", 1e-3))
    wd = float(fit.get("weight_decay", 1e-4))
    net = copy.deepcopy(model).to(context.device).train()
    torch.manual_seed(context.seed)
    loss_fn = loss_function(task.kind)
    y = task.train.y.to(context.device)
    if options.subset == "last_layer":
        net.eval()
        feats = model_features(net, task.train.x, context.device).detach()
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
            logits = net(x[idx].to(context.device))
            return per_sample_loss(loss_fn, logits, y[idx], task.kind).mean()

    if options.rank > options.epochs:
        raise RashomonError(
            f"swag rank {options.rank} needs at least as many epochs (snapshots), got "
            f"{options.epochs}; raise -o epochs or lower -o rank"
        )
    snaps = _snapshots(params, loss_of_batch, len(y), options, lr, wd, context.seed).double()
    mean = snaps.mean(0)
    var = (snaps.pow(2).mean(0) - mean.pow(2)).clamp_min(0)
    dev = (snaps[-options.rank :] - mean).T  # [P, rank]
    gen = torch.Generator().manual_seed(context.seed)
    z1 = torch.randn(context.models, mean.numel(), generator=gen, dtype=torch.float64)
    z2 = torch.randn(context.models, options.rank, generator=gen, dtype=torch.float64)
    vectors = (
        mean[None] + var.sqrt()[None] * z1 / 2**0.5 + (z2 @ dev.T) / (2 * (options.rank - 1)) ** 0.5
    )
    base = copy.deepcopy(model).cpu().eval()
    meta = {
        "subset": options.subset,
        "lr": lr,
        "weight_decay": wd,
        "epochs": options.epochs,
        "rank": options.rank,
        "swa_distance": float((mean.float() - flat_parameters(base, names)).norm()),
        "fit_seconds": round(time.perf_counter() - start, 3),
    }
    return ModelSet.from_vectors(base, vectors.float(), names, source="swag", task=None, meta=meta)


register_source("swag", build, SwagOptions)
