"""L∞ adversarial attacks (FGSM, PGD) on a logits function, with ε on the [0, 1] pixel scale.

Our tensors are x = (p - mean) / std with p in [0, 1] (MedMNIST: mean = std = 0.5, so x is in
[-1, 1]). A pixel-scale budget ε is ε / std in tensor units, and adversarial images are clamped
to the tensor image of [0, 1], i.e. [(0 - mean) / std, (1 - mean) / std].

The loss is the cross-entropy of the true labels (binary cross-entropy with logits per label for
multilabel tasks), summed over samples so that each sample's gradient is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from rashomon.errors import RashomonError

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
ATTACKS = ("fgsm", "pgd")
PGD_STEPS = 10
PGD_STEP_RATIO = 2.5  # α = 2.5 ε / steps (Madry et al.): the walk can cross the ball and back


def _loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum")
    return F.cross_entropy(logits, y, reduction="sum")


def _input_gradient(
    logits_fn: LogitsFn, x: torch.Tensor, y: torch.Tensor, multilabel: bool
) -> torch.Tensor:
    """∂ loss / ∂ x, without touching parameter gradients."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = _loss(logits_fn(x), y, multilabel)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _check_epsilon(epsilon: float) -> float:
    if not 0 <= epsilon <= 1:
        raise RashomonError(
            f"attack epsilon {epsilon} is outside [0, 1]; give it on the pixel scale"
        )
    return float(epsilon)


def fgsm(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    *,
    mean: float = 0.5,
    std: float = 0.5,
    multilabel: bool = False,
) -> torch.Tensor:
    """Fast gradient sign method: x + (ε / std) · sign(∇ₓ loss), clamped to valid pixels."""
    epsilon = _check_epsilon(epsilon)
    if epsilon == 0:
        return x.detach().clone()
    lo, hi = (0 - mean) / std, (1 - mean) / std
    grad = _input_gradient(logits_fn, x, y, multilabel)
    return (x.detach() + (epsilon / std) * grad.sign()).clamp_(lo, hi)


def pgd(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    *,
    steps: int = PGD_STEPS,
    alpha: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    mean: float = 0.5,
    std: float = 0.5,
    multilabel: bool = False,
) -> torch.Tensor:
    """Projected gradient descent in the L∞ ball of radius ε (pixel scale) around x.

    Starts at a uniform point of the ball (drawn from a generator seeded with `seed`, on the CPU
    so every device gives the same start) when `random_start`, then takes `steps` signed-gradient
    steps of size α (pixel scale; default 2.5 ε / steps), projecting onto the ball and the valid
    pixel range after each. Returns the last iterate.
    """
    epsilon = _check_epsilon(epsilon)
    if steps < 1:
        raise RashomonError(f"PGD needs at least 1 step, got {steps}")
    if epsilon == 0:
        return x.detach().clone()
    eps_t = epsilon / std
    alpha_t = (PGD_STEP_RATIO * epsilon / steps if alpha is None else alpha) / std
    lo, hi = (0 - mean) / std, (1 - mean) / std
    x0 = x.detach()
    x_adv = x0.clone()
    if random_start:
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.rand(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
        x_adv = (x_adv + (2 * noise - 1) * eps_t).clamp_(lo, hi)
    for _ in range(steps):
        grad = _input_gradient(logits_fn, x_adv, y, multilabel)
        x_adv = x_adv + alpha_t * grad.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x0 - eps_t), x0 + eps_t).clamp_(lo, hi)
    return x_adv.detach()


def attack(
    name: str,
    logits_fn: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    multilabel: bool = False,
    **options: Any,
) -> torch.Tensor:
    """Run attack `name` ("fgsm" or "pgd") batch by batch on `device`; returns the adversarial
    inputs on the CPU. PGD's random start of batch b is seeded with `seed + b`."""
    if name not in ATTACKS:
        raise RashomonError(f"unknown attack {name!r}; choose from: {', '.join(ATTACKS)}")
    out = []
    for b, i in enumerate(range(0, len(x), batch_size)):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        if name == "fgsm":
            adv = fgsm(logits_fn, xb, yb, epsilon, multilabel=multilabel, **options)
        else:
            adv = pgd(logits_fn, xb, yb, epsilon, seed=seed + b, multilabel=multilabel, **options)
        out.append(adv.cpu())
    return torch.cat(out) if out else x.detach().clone()
