"""Last-layer Laplace for multilabel (sigmoid) outputs, which laplace-torch lacks: it has no
Bernoulli likelihood.

The loss is the summed binary cross-entropy of every label, Σ_i Σ_l BCE(z_il, y_il), with
z_i = W φ(x_i) + b the head's logits on the body's features φ. Its GGN over the head's
parameters comes from curvlinops' `GGNLinearOperator` with `BCEWithLogitsLoss(reduction="sum")`
(the head is linear in its parameters, so this GGN is also the exact Hessian). BCE couples no
two labels, so the GGN is block diagonal over labels; it is small enough (L·(D+1) parameters)
to be materialised and factorised densely.

Posterior N(θ*, (G + δI)⁻¹): the prior precision δ maximises the Laplace evidence at θ*
(`prior="marglik"`), is the value of a grid whose sampled sets give the lowest validation NLL
(`"grid"`), or is given. The set's models are the sampled heads: sigmoid probabilities [M, N, L].
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from rashomon.errors import RashomonError
from rashomon.memory import format_bytes, memory_budget
from rashomon.models.predict import model_features
from rashomon.models.registry import Classifier
from rashomon.sets.base import ModelSet, ordered_names, task_description
from rashomon.sets.prior import GRID, parse_prior, prior_by_grid

HESSIANS = ("full", "kron", "diag")  # kron: the exact label-block GGN (see the docstring)
LOG_PRIOR_BOUNDS = (-8.0, 8.0)  # log10 of the prior precisions the evidence search considers


def head_ggn(head: nn.Linear, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dense GGN [P, P] of the summed BCE over the head's parameters (weight then bias, each
    flattened row-major, the order of `head.parameters()`), from curvlinops."""
    from curvlinops import GGNLinearOperator

    head = copy.deepcopy(head).double()
    params = [p for p in head.parameters()]
    data = [(features.double(), y.double())]
    ggn = GGNLinearOperator(
        head,
        nn.BCEWithLogitsLoss(reduction="sum"),
        params,
        data,
        check_deterministic=False,
    )
    n = sum(p.numel() for p in params)
    return ggn @ torch.eye(n, dtype=torch.float64, device=features.device)


def log_evidence(
    eigenvalues: torch.Tensor, theta_norm2: float, nll: float, prior: torch.Tensor
) -> torch.Tensor:
    """Laplace log evidence at θ* for prior precisions δ (a tensor), up to a constant:
    −NLL(θ*) − δ‖θ*‖²/2 + (P/2) log δ − ½ Σ log(λ_k + δ)."""
    P = eigenvalues.numel()
    logdet = torch.log(eigenvalues[None, :].clamp_min(0) + prior[:, None]).sum(1)
    return -nll - 0.5 * prior * theta_norm2 + 0.5 * P * torch.log(prior) - 0.5 * logdet


def marglik_prior(eigenvalues: torch.Tensor, theta_norm2: float, nll: float) -> float:
    """The prior precision maximising `log_evidence`: a log grid, then golden-section search
    around its best point (the evidence is unimodal in log δ for a fixed GGN)."""
    lo, hi = LOG_PRIOR_BOUNDS
    grid = torch.logspace(lo, hi, 161, dtype=torch.float64)
    values = log_evidence(eigenvalues, theta_norm2, nll, grid)
    k = int(values.argmax())
    a = math.log10(grid[max(k - 1, 0)])
    b = math.log10(grid[min(k + 1, len(grid) - 1)])
    phi = (math.sqrt(5) - 1) / 2

    def f(log_prior: float) -> float:
        t = torch.tensor([10.0**log_prior], dtype=torch.float64)
        return float(log_evidence(eigenvalues, theta_norm2, nll, t)[0])

    c, d = b - phi * (b - a), a + phi * (b - a)
    for _ in range(60):
        if f(c) > f(d):
            b = d
        else:
            a = c
        c, d = b - phi * (b - a), a + phi * (b - a)
    return 10.0 ** ((a + b) / 2)


class BernoulliLastLayerPosterior:
    """N(θ*, (G + δI)⁻¹) over the head of a multilabel classifier (see the module docstring)."""

    def __init__(
        self,
        model: Classifier,
        ggn: torch.Tensor,
        prior_precision: float,
        *,
        hessian: str,
        task: dict[str, Any],
        meta: dict[str, Any],
    ):
        self.model = model
        self.param_names = ordered_names(
            model, [f"head.{n}" for n, _ in model.head.named_parameters()]
        )
        self.mean = torch.cat([p.detach().flatten() for p in model.head.parameters()]).float()
        self.ggn = ggn
        self.hessian = hessian
        self.task = task
        self.meta = dict(meta)
        self.set_prior(prior_precision)

    def set_prior(self, prior_precision: float) -> None:
        """Set the prior precision and refactor the posterior precision (GGN + prior)."""
        if not prior_precision > 0:
            raise RashomonError(f"prior precision must be positive, got {prior_precision}")
        self.prior_precision = float(prior_precision)
        g = torch.diag(torch.diagonal(self.ggn)) if self.hessian == "diag" else self.ggn
        precision = g + self.prior_precision * torch.eye(len(g), dtype=g.dtype)
        # Σ^{1/2} as the inverse transpose of precision's Cholesky factor: v = L⁻ᵀ z ~ N(0, Σ).
        self._chol = torch.linalg.cholesky(precision)

    @property
    def num_params(self) -> int:
        """Number of head parameters the posterior covers."""
        return int(self.mean.numel())

    def covariance(self) -> torch.Tensor:
        """The posterior covariance Σ [P, P]."""
        return torch.cholesky_inverse(self._chol).float()

    def sample_deviations(self, models: int, seed: int = 0) -> torch.Tensor:
        """`models` deviations v ~ N(0, Σ) [models, P], drawn with `seed`."""
        if not isinstance(models, (int, np.integer)) or models <= 0:
            raise RashomonError(f"the number of models must be a positive integer, got {models!r}")
        gen = torch.Generator().manual_seed(int(seed))
        z = torch.randn(int(models), self.num_params, generator=gen, dtype=torch.float64)
        v = torch.linalg.solve_triangular(self._chol.T, z.T, upper=True).T
        return v.float()

    def to_set(self, vectors: torch.Tensor, kind: str = "nn", **meta: Any) -> ModelSet:
        """Head vectors [M, P] as a ModelSet on a copy of the network."""
        info = {**self.meta, "prior_precision": self.prior_precision, **meta}
        return ModelSet.from_vectors(
            copy.deepcopy(self.model).eval(),
            vectors,
            self.param_names,
            kind=kind,
            source="laplace",
            task=self.task,
            meta=info,
        )

    def sample(self, models: int, seed: int = 0, kind: str = "nn") -> ModelSet:
        """A ModelSet of `models` sampled heads (kind nn and glm coincide for a head)."""
        start = time.perf_counter()
        vectors = self.mean[None] + self.sample_deviations(models, seed)
        seconds = round(time.perf_counter() - start, 3)
        return self.to_set(vectors, kind, seed=seed, sample_seconds=seconds)


def bernoulli_laplace(
    model: Classifier,
    task: Any,
    hessian: str = "kron",
    prior: str | float = "marglik",
    temperature: float = 1.0,
    *,
    device: str | None = None,
    max_memory: str | int | None = None,
    grid: Sequence[float] = GRID,
    grid_models: int = 32,
    seed: int = 0,
) -> BernoulliLastLayerPosterior:
    """Last-layer Laplace of a multilabel classifier (`model` a Classifier with a head)."""
    prior = parse_prior(prior)
    if hessian not in HESSIANS:
        raise RashomonError(
            f"hessian {hessian!r} is not offered for multilabel last-layer Laplace; use one of "
            f"{', '.join(HESSIANS)}"
        )
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    head = model.head
    labels = task.train.y
    if labels.ndim != 2 or labels.shape[1] != head.out_features:
        raise RashomonError(
            f"a multilabel task needs labels of shape (images, {head.out_features}) with one 0/1 "
            f"column per class; these are shaped {tuple(labels.shape)}: give one column per "
            "class, or set the task kind to binary/multiclass"
        )
    P = head.weight.numel() + (head.bias.numel() if head.bias is not None else 0)
    need = 3 * P * P * 8
    if need > memory_budget(max_memory, dev):
        raise RashomonError(
            f"a multilabel last-layer Laplace over {P} head parameters needs {format_bytes(need)}; "
            "raise --max-memory or use hessian diag"
        )
    start = time.perf_counter()
    feats = model_features(model, task.train.x, dev)
    y = task.train.y.to(feats.device).float()
    ggn = head_ggn(head, feats, y).cpu() / float(temperature)
    fit_seconds = time.perf_counter() - start
    theta = torch.cat([p.detach().flatten() for p in head.parameters()]).double().cpu()
    with torch.no_grad():
        logits = head(feats).double()
        nll = float(
            nn.functional.binary_cross_entropy_with_logits(logits, y.double(), reduction="sum")
        )
    start = time.perf_counter()
    if prior == "marglik":
        g = torch.diag(torch.diagonal(ggn)) if hessian == "diag" else ggn
        eig = torch.linalg.eigvalsh(g)
        value = marglik_prior(eig, float(theta @ theta), nll / float(temperature))
    elif prior == "grid":
        value = 1.0  # held until the grid search below picks the precision
    else:
        value = float(prior)  # parse_prior gave a number: neither method name
    meta = {
        "source": "laplace",
        "subset": "last_layer",
        "hessian": hessian,
        "likelihood": "bernoulli",
        "prior": prior if isinstance(prior, str) else "fixed",
        "temperature": float(temperature),
        "num_params": P,
        "fit_seconds": round(fit_seconds, 3),
    }
    post = BernoulliLastLayerPosterior(
        copy.deepcopy(model).cpu().eval(),
        ggn,
        value,
        hessian=hessian,
        task=task_description(task),
        meta=meta,
    )
    if prior == "grid":
        _, grid_nll = prior_by_grid(
            post, task, grid, models=grid_models, seed=seed, device=dev, max_memory=max_memory
        )
        post.meta["grid_nll"] = {f"{k:.3g}": v for k, v in grid_nll.items()}
    post.meta["prior_precision"] = post.prior_precision
    post.meta["prior_seconds"] = round(time.perf_counter() - start, 3)
    return post
