"""Geodesic right-hand sides and the losses whose geometry they follow.

A metric object turns (θ, θ̇) for K geodesics into their accelerations θ̈. The Monge metric
g(θ) = I + ∇L(θ)∇L(θ)ᵀ (the loss surface seen as a graph over parameter space, Bergamin et al.
2023) is the one implemented; a Fisher-metric variant (Yu et al. 2024) plugs in by providing the
same `acceleration` method.

Losses are functions of one flat parameter vector θ [P] (plus optional per-geodesic data) that
return a scalar; `torch.func` transforms them, so they must be written with `functional_call`
(see `flat_loss`), never by mutating module parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn
from torch.func import functional_call, jvp, vmap

FlatLoss = Callable[..., torch.Tensor]  # loss(theta [P], *per_geodesic_data) -> scalar


class GeodesicMetric(Protocol):
    """Anything that gives geodesic accelerations for K (position, velocity) pairs."""

    def acceleration(
        self, theta: torch.Tensor, velocity: torch.Tensor, data: Sequence[torch.Tensor] = ()
    ) -> torch.Tensor:
        """θ̈ [K, P] for θ, θ̇ [K, P]; `data` holds per-geodesic tensors [K, ...] for the loss."""
        ...


class MongeMetric:
    """g = I + ∇L∇Lᵀ. Its geodesics solve θ̈ = −∇L (θ̇ᵀ∇²L θ̇) / (1 + ‖∇L‖²).

    One evaluation costs one gradient and one Hessian-vector product per geodesic, never the
    Hessian. The K losses run as one vmapped (batched) forward; the gradient and the
    Hessian-vector product come from two reverse passes (double backward) through it. Measured on
    banana's MLP this is 2–4× cheaper per call than `vmap(jvp(grad(L)))`, whose per-call transform
    overhead dominates such small networks.
    """

    def __init__(self, loss: FlatLoss):
        self.loss = loss

    def acceleration(
        self, theta: torch.Tensor, velocity: torch.Tensor, data: Sequence[torch.Tensor] = ()
    ) -> torch.Tensor:
        with torch.enable_grad():
            position = theta.detach().requires_grad_(True)
            losses = vmap(self.loss)(position, *data)
            (gradient,) = torch.autograd.grad(losses.sum(), position, create_graph=True)
            if gradient.requires_grad:
                # Σ_k ∇L(θ_k)·v_k differentiated in θ gives every row's H(θ_k) v_k at once.
                (hvp,) = torch.autograd.grad(
                    (gradient * velocity).sum(), position, allow_unused=True
                )
            else:  # L is at most linear in θ: no curvature
                hvp = None
        gradient = gradient.detach()
        curvature = (velocity * hvp).sum(dim=1, keepdim=True) if hvp is not None else 0.0
        return -gradient * curvature / (1.0 + (gradient * gradient).sum(dim=1, keepdim=True))


class ParameterView:
    """Maps a flat vector [P] onto named parameters of a module (a subset, e.g. the head)."""

    def __init__(self, module: nn.Module, names: Sequence[str] | None = None):
        params = dict(module.named_parameters())
        self.names = list(names) if names is not None else list(params)
        missing = [n for n in self.names if n not in params]
        if missing:
            raise ValueError(f"unknown parameter names {missing}")
        self.shapes = [params[n].shape for n in self.names]
        self.numels = [params[n].numel() for n in self.names]
        self.fixed = {k: v.detach() for k, v in params.items() if k not in set(self.names)}
        self.fixed.update({k: v.detach() for k, v in module.named_buffers()})
        self.module = module

    @property
    def size(self) -> int:
        return sum(self.numels)

    def flatten(self) -> torch.Tensor:
        params = dict(self.module.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(theta, self.numels)
        out = dict(self.fixed)
        out.update(
            {n: p.reshape(s) for n, p, s in zip(self.names, pieces, self.shapes, strict=True)}
        )
        return out

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.unflatten(theta), (x,))


def _data_term(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "multilabel":
        return nn.functional.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum")
    return nn.functional.cross_entropy(logits, y, reduction="sum")


def flat_loss(
    view: ParameterView,
    x: torch.Tensor,
    y: torch.Tensor,
    prior_precision: float | torch.Tensor,
    *,
    kind: str = "multiclass",
    data_scale: float = 1.0,
    prior_mean: torch.Tensor | None = None,
    theta_star: torch.Tensor | None = None,
    per_geodesic_batches: bool = False,
) -> FlatLoss:
    """Negative log posterior L(θ) = data_scale · Σ_i CE(f(x_i; θ), y_i) + (τ/2)‖θ − μ‖².

    The data term is a SUM over the training points (data_scale = N / B for a mini-batch of B,
    1 / T for a tempered likelihood), so L is the negative log posterior the Laplace
    approximation was fitted to: its Hessian at θ* is Σ⁻¹, the same scale as v ~ N(0, Σ).
    `prior_precision` τ is a scalar or a vector [P] (one precision per parameter).

    `theta_star` set: the loss of the linearized network f(x; θ*) + J(x)(θ − θ*) instead.
    `per_geodesic_batches`: the loss takes an index tensor [B] selecting its mini-batch of x, y.
    """
    mu = prior_mean
    tau = prior_precision if isinstance(prior_precision, torch.Tensor) else float(prior_precision)

    if theta_star is None:

        def logits_at(theta: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
            return view.forward(theta, xb)

    else:
        star = theta_star.detach()

        def logits_at(theta: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
            f_star, jv = jvp(lambda p: view.forward(p, xb), (star,), (theta - star,))
            return f_star + jv

    def prior(theta: torch.Tensor) -> torch.Tensor:
        d = theta if mu is None else theta - mu
        return 0.5 * (tau * d * d).sum()

    if per_geodesic_batches:

        def loss(theta: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            xb, yb = x[index], y[index]
            return data_scale * _data_term(logits_at(theta, xb), yb, kind) + prior(theta)

    else:

        def loss(theta: torch.Tensor) -> torch.Tensor:
            return data_scale * _data_term(logits_at(theta, x), y, kind) + prior(theta)

    return loss
