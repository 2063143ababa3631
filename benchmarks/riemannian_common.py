"""What the Riemannian Laplace benchmarks share: banana's data, model, training and Laplace
velocities, the banana metrics, and the reference's time per geodesic.

Imported by bench_riemannian_banana.py, bench_riemannian_speed.py and
bench_riemannian_diagnose.py (run them from the repository root; Python puts this folder on the
path).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rashomon.sets.flat import ParameterView, flat_loss, minimize_flat
from rashomon.sets.geodesic import MLPMongeMetric, MongeMetric
from rashomon.sets.riemannian import GeodesicSolver

BANANA_CSV = Path(os.environ.get("RASHOMON_DATA", "/work/shared/data")) / "banana.csv"
REFERENCE_SECONDS_PER_GEODESIC = 15.7  # reference implementation on this CPU (RIEMANNIAN.md)
PRIOR_PRECISION = 0.02


# ----------------------------------------------------------------------------- banana data/model
def banana_splits(path: Path = BANANA_CSV) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The reference's split: 70 % train (cut to its first 265 points), the rest halved into
    test and validation, sklearn `train_test_split(random_state=230)` both times."""
    from sklearn.model_selection import train_test_split

    xy = np.loadtxt(path, delimiter=",")
    x, y = xy[:, :-1], xy[:, -1] - 1
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, train_size=0.7, random_state=230)
    x_te, x_va, y_te, y_va = train_test_split(x_rest, y_rest, train_size=0.5, random_state=230)
    x_tr, y_tr = x_tr[:265], y_tr[:265]

    def pair(a, b):
        return torch.from_numpy(a).float(), torch.from_numpy(b).long()

    return {"train": pair(x_tr, y_tr), "val": pair(x_va, y_va), "test": pair(x_te, y_te)}


def banana_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2)
    )


def train_banana(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 2500) -> nn.Module:
    """Full-batch SGD (lr 1e-3) on Σ CE + (τ/2)‖θ‖², τ = 0.02: the very loss whose geometry the
    geodesics follow, so θ* is (near) stationary for it. The reference uses weight_decay=1e-2
    here (an L2 term of precision 0.01) but precision 0.02 in the Laplace fit and the metric."""
    torch.manual_seed(seed)
    model = banana_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, weight_decay=PRIOR_PRECISION)
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def refine_banana(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Move the MLP (in place) to a stationary point of L = Σ CE + (τ/2)‖θ‖² by full-batch
    L-BFGS in float64 (2,500 SGD epochs at lr 1e-3 leave ‖∇L(θ*)‖ ≈ 90 on banana)."""
    model64 = copy.deepcopy(model).double()
    view = ParameterView(model64)
    loss = flat_loss(view, x.double(), y, PRIOR_PRECISION)
    theta = view.flatten().clone()

    def grad_norm(t: torch.Tensor) -> float:
        return float(torch.func.grad(loss)(t.detach()).norm())

    before = (float(loss(theta.detach())), grad_norm(theta))
    theta, _ = minimize_flat(loss, theta, max_iter=5000, tolerance_change=1e-15)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta.detach().float(), model.parameters())
    rounded = ParameterView(model).flatten().double()
    return {
        "loss_before": before[0],
        "grad_norm_before": before[1],
        "loss_after": float(loss(rounded)),
        "grad_norm_after": grad_norm(rounded),
        "step_norm": float((rounded - view.flatten()).norm()),
    }


def euclidean_velocities(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, seed: int
) -> torch.Tensor:
    """v ~ N(0, Σ) of laplace-torch's full-GGN all-weights posterior at prior precision 0.02."""
    from laplace import Laplace

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=len(x))
    la = Laplace(
        model,
        "classification",
        subset_of_weights="all",
        hessian_structure="full",
        prior_precision=PRIOR_PRECISION,
    )
    la.fit(loader)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, la.n_params, generator=gen)
    return z @ la.posterior_scale.T.detach()


# ----------------------------------------------------------------------------------- metrics
def classification_metrics(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Accuracy %, mean NLL, Brier (mean squared error over N×C, as the reference's sklearn
    call), ECE % (binary: 15 equal bins on p(y=1), as the reference's netcal call)."""
    probs = np.clip(probs, 1e-12, 1.0)
    onehot = np.eye(probs.shape[1])[y]
    acc = float((probs.argmax(1) == y).mean() * 100)
    nll = float(-np.log(probs[np.arange(len(y)), y]).mean())
    brier = float(((probs - onehot) ** 2).mean())
    if probs.shape[1] == 2:
        conf, hit = probs[:, 1], (y == 1).astype(float)
    else:
        conf, hit = probs.max(1), (probs.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = sum(
        abs(hit[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean()
        for b in range(bins)
        if (idx == b).any()
    )
    return {"accuracy": acc, "nll": nll, "brier": brier, "ece": float(ece * 100)}


def mean_probs(view: ParameterView, thetas: torch.Tensor, x: torch.Tensor, linear_at=None):
    """Average softmax over sampled parameter vectors; `linear_at` = θ* uses the linearized net."""
    out = []
    with torch.no_grad():
        for th in thetas:
            if linear_at is None:
                logits = view.forward(th, x)
            else:
                f0, jv = torch.func.jvp(
                    lambda p: view.forward(p, x), (linear_at,), (th - linear_at,)
                )
                logits = f0 + jv
            out.append(torch.softmax(logits, dim=1))
    return torch.stack(out).mean(0).numpy()


# ----------------------------------------------------------------------------------- banana run
def banana_metric(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rhs: str):
    """The exact Monge metric of banana's loss: closed form (default) or autograd."""
    if rhs == "closed":
        return MLPMongeMetric(model, x, y, PRIOR_PRECISION)
    return MongeMetric(flat_loss(ParameterView(model), x, y, PRIOR_PRECISION))


def solver_from_args(args) -> GeodesicSolver:
    """`GeodesicSolver` defaults with the settings given on the command line (None: default)."""
    given = {k: getattr(args, k, None) for k in ("rtol", "atol", "error_scale", "error_norm")}
    return GeodesicSolver().with_options(**{k: v for k, v in given.items() if v is not None})


def solve_stats(info, k: int) -> dict:
    """Seconds per geodesic, nfev and failures of one `exp_map` solve of k geodesics."""
    return {
        "seconds_per_geodesic": info.seconds / k,
        "nfev_mean": float(info.nfev.float().mean()),
        "nfev_max": int(info.nfev.max()),
        "failed": info.failed,
        "counts": info.counts,
    }
