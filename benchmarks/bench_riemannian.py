"""Riemannian Laplace: banana reproduction, solver speed, and the core claim on PneumoniaMNIST.

    .venv/bin/python benchmarks/bench_riemannian.py banana --seeds 0 1 2 3 4 --samples 50 \
        --rtol 1e-6 --atol 1e-3 --threads 1 [--refine-map]
    .venv/bin/python benchmarks/bench_riemannian.py speed --batch-sizes 20 50 100 200
    .venv/bin/python benchmarks/bench_riemannian.py diagnose --seed 0 [--refine-map]
    .venv/bin/python benchmarks/bench_riemannian.py pneumonia --samples 200 [--refine-map] \
        [--all-weights --all-samples 8 --all-timeout 240] --checkpoint cnn_small.pt

banana: the setting of the reference's `banana_experiment.py -str full -sub all -optim sgd`
(RIEMANNIAN.md): MLP 2-16-16-2 tanh, SGD lr 1e-3, 2,500 full-batch epochs on 265 points, summed
cross-entropy, prior precision 0.02, full-Hessian all-weights laplace-torch posterior. Reports
accuracy, NLL, Brier and ECE on the 795 test points for MAP, Euclidean LA (sampled networks),
linearized LA, Riemannian LA and linearized Riemannian LA, and seconds per geodesic.
speed: seconds per geodesic against batch size and one at a time (ratio to the reference's
15.7 s), nfev against scipy's RK45 on the same ODE, optionally the error against a tight solve.
diagnose: what the linearized Riemannian samples look like (loss, logits, NLL, distance).
pneumonia: the core claim on PneumoniaMNIST (last layer; shares within ε and test multiplicity of
the Euclidean and Riemannian samples of the same velocities), optionally all weights, bounded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rashomon.sets.flat import ParameterView, flat_loss, minimize_flat
from rashomon.sets.geodesic import (
    LinearizedMLPMongeMetric,
    MLPMongeMetric,
    MongeMetric,
)
from rashomon.sets.riemannian import exp_map

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


def run_banana(
    seed: int,
    samples: int,
    rtol: float,
    atol: float,
    time_single: int,
    rhs: str = "closed",
    refine: bool = False,
) -> dict:
    data = banana_splits()
    (x, y), (x_te, y_te) = data["train"], data["test"]
    t0 = time.perf_counter()
    model = train_banana(x, y, seed)
    train_s = time.perf_counter() - t0
    refine_info = refine_banana(model, x, y) if refine else None
    view = ParameterView(model)
    theta_star = view.flatten()
    v = euclidean_velocities(model, x, y, samples, seed)
    metric = banana_metric(model, x, y, rhs)
    lin_loss = flat_loss(view, x, y, PRIOR_PRECISION, theta_star=theta_star)

    def solve(velocity, m=metric):
        return exp_map(None, theta_star, velocity, rtol=rtol, atol=atol, metric=m, return_info=True)

    cpu0 = time.process_time()
    riem, info = solve(v)
    cpu_per_geodesic = (time.process_time() - cpu0) / samples
    if rhs == "closed":
        lin_metric = LinearizedMLPMongeMetric(model, x, y, theta_star, PRIOR_PRECISION)
    else:
        lin_metric = MongeMetric(lin_loss)
    lin_riem, lin_info = solve(v, lin_metric)
    singles = []
    for i in range(min(time_single, samples)):
        _, si = solve(v[i])
        singles.append(si.seconds)

    y_np = y_te.numpy()
    rows = {
        "MAP": classification_metrics(mean_probs(view, theta_star[None], x_te), y_np),
        "Euclidean LA": classification_metrics(mean_probs(view, theta_star + v, x_te), y_np),
        "linearized LA": classification_metrics(
            mean_probs(view, theta_star + v, x_te, linear_at=theta_star), y_np
        ),
        "Riemannian LA": classification_metrics(mean_probs(view, riem[info.ok], x_te), y_np),
        "linearized Riemannian LA": classification_metrics(
            mean_probs(view, lin_riem[lin_info.ok], x_te, linear_at=theta_star), y_np
        ),
    }
    return {
        "seed": seed,
        "samples": samples,
        "rhs": rhs,
        "refine": refine_info,
        "rtol": rtol,
        "atol": atol,
        "train_seconds": train_s,
        "metrics": rows,
        "exact": _solve_stats(info, samples),
        "linearized": _solve_stats(lin_info, samples),
        "single_seconds_per_geodesic": float(np.mean(singles)) if singles else None,
        "batched_cpu_seconds_per_geodesic": cpu_per_geodesic,
        "load_average": os.getloadavg()[0],
    }


def _solve_stats(info, k: int) -> dict:
    return {
        "seconds_per_geodesic": info.seconds / k,
        "nfev_mean": float(info.nfev.float().mean()),
        "nfev_max": int(info.nfev.max()),
        "failed": info.failed,
        "counts": info.counts,
    }


def summarise_banana(runs: list[dict]) -> str:
    names = list(runs[0]["metrics"])
    lines = [
        "| model | accuracy % | NLL | Brier | ECE % |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        cells = []
        for key, fmt in (
            ("accuracy", "{:.1f}"),
            ("nll", "{:.3f}"),
            ("brier", "{:.3f}"),
            ("ece", "{:.2f}"),
        ):
            vals = np.array([r["metrics"][name][key] for r in runs])
            sd = vals.std(ddof=1) if len(vals) > 1 else 0.0
            cells.append(f"{fmt.format(vals.mean())} ± {fmt.format(sd)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ex = [r["exact"] for r in runs]
    li = [r["linearized"] for r in runs]
    refined = [r["refine"] for r in runs if r.get("refine")]
    if refined:
        lines += [
            "",
            "MAP refined by L-BFGS: ‖∇L(θ*)‖ "
            + ", ".join(
                f"{q['grad_norm_before']:.1f} → {q['grad_norm_after']:.0e}" for q in refined
            )
            + "; L "
            + ", ".join(f"{q['loss_before']:.1f} → {q['loss_after']:.1f}" for q in refined),
        ]
    single = [r["single_seconds_per_geodesic"] for r in runs if r["single_seconds_per_geodesic"]]
    batched = float(np.mean([e["seconds_per_geodesic"] for e in ex]))
    cpu = float(np.mean([r["batched_cpu_seconds_per_geodesic"] for r in runs]))
    load = float(np.mean([r["load_average"] for r in runs]))
    lines += [
        "",
        f"machine load average during the runs: {load:.1f} (2 cores); batched CPU time "
        f"{cpu:.3f} s/geodesic "
        f"({REFERENCE_SECONDS_PER_GEODESIC / cpu:.0f}× below the reference wall time)",
        f"exact geodesics, batched: {batched:.3f} s/geodesic "
        f"({REFERENCE_SECONDS_PER_GEODESIC / batched:.0f}× cheaper than the reference's 15.7 s), "
        f"nfev mean {np.mean([e['nfev_mean'] for e in ex]):.0f}, "
        f"max {max(e['nfev_max'] for e in ex)}, failed {sum(e['failed'] for e in ex)}",
    ]
    if single:
        s = float(np.mean(single))
        lines.append(
            f"exact geodesics, one at a time: {s:.3f} s/geodesic "
            f"({REFERENCE_SECONDS_PER_GEODESIC / s:.0f}× cheaper than the reference)"
        )
    lines.append(
        f"linearized geodesics, batched: {np.mean([e['seconds_per_geodesic'] for e in li]):.3f} "
        f"s/geodesic, nfev mean {np.mean([e['nfev_mean'] for e in li]):.0f}, "
        f"failed {sum(e['failed'] for e in li)}"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------- banana diagnosis
def run_diagnose(args) -> list[dict]:
    """Why linearized Riemannian LA is poorly calibrated on banana: for one seed, per set of
    samples, the geodesics' loss L at the samples, test logits, per-sample and ensemble NLL, and
    distance from θ*; plus ‖∇L(θ*)‖ and the minimiser of the (convex) linearized loss."""
    torch.set_num_threads(1)  # small ops: one thread is faster on this shared 2-core machine
    data = banana_splits()
    (x, y), (x_te, y_te) = data["train"], data["test"]
    model = train_banana(x, y, args.seed)
    refine = refine_banana(model, x, y) if args.refine_map else None
    view = ParameterView(model)
    theta = view.flatten()
    v = euclidean_velocities(model, x, y, args.samples, args.seed)
    loss = flat_loss(view, x, y, PRIOR_PRECISION)
    lin = flat_loss(view, x, y, PRIOR_PRECISION, theta_star=theta)
    riem = exp_map(
        None, theta, v, rtol=args.rtol, atol=args.atol, metric=banana_metric(model, x, y, "closed")
    )
    lin_riem = exp_map(
        None,
        theta,
        v,
        rtol=args.rtol,
        atol=args.atol,
        metric=LinearizedMLPMongeMetric(model, x, y, theta, PRIOR_PRECISION),
    )
    lin_opt, _ = minimize_flat(lin, theta, max_iter=2000, tolerance_change=1e-12, history_size=100)

    def logits(th: torch.Tensor, xx: torch.Tensor, linear: bool) -> torch.Tensor:
        if not linear:
            return view.forward(th, xx)
        f0, jv = torch.func.jvp(lambda q: view.forward(q, xx), (theta,), (th - theta,))
        return f0 + jv

    rows = []
    with torch.no_grad():
        for name, thetas, linear in (
            ("MAP", theta[None], False),
            ("Euclidean LA", theta + v, False),
            ("linearized LA", theta + v, True),
            ("Riemannian LA", riem, False),
            ("linearized Riemannian LA", lin_riem, True),
            ("minimiser of the linearized loss", lin_opt[None], True),
        ):
            big_l = torch.stack([(lin if linear else loss)(q) for q in thetas])
            lg = torch.stack([logits(q, x_te, linear) for q in thetas])
            pr = torch.softmax(lg, -1)
            each = -torch.log(pr[:, torch.arange(len(y_te)), y_te].clamp_min(1e-12)).mean(1)
            ens = pr.mean(0)
            rows.append(
                {
                    "set": name,
                    "L_median": float(big_l.median()),
                    "test_accuracy": float((ens.argmax(1) == y_te).float().mean() * 100),
                    "test_nll_ensemble": float(
                        -torch.log(ens[torch.arange(len(y_te)), y_te].clamp_min(1e-12)).mean()
                    ),
                    "test_nll_per_sample_median": float(each.median()),
                    "max_abs_test_logit_median": float(lg.abs().amax(dim=(1, 2)).median()),
                    "distance_median": float((thetas - theta).norm(dim=1).median()),
                }
            )
    head = {
        "seed": args.seed,
        "grad_norm_at_map": float(torch.func.grad(loss)(theta).norm()),
        "L_at_map": float(loss(theta)),
        "refine": refine,
        "velocity_norm_median": float(v.norm(dim=1).median()),
    }
    return [head, *rows]


def summarise_diagnose(rows: list[dict]) -> str:
    head, *sets = rows
    lines = [
        f"seed {head['seed']}: ‖∇L(θ*)‖ = {head['grad_norm_at_map']:.3g}, L(θ*) = "
        f"{head['L_at_map']:.2f}, median ‖v‖ = {head['velocity_norm_median']:.1f}",
        "",
        "| samples | L at samples (median; linearized L for linearized sets) | test acc % | "
        "ensemble NLL | per-sample NLL (median) | max abs test logit (median) | ‖θ − θ*‖ |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['set']} | {r['L_median']:.1f} | {r['test_accuracy']:.1f} | "
        f"{r['test_nll_ensemble']:.3f} | {r['test_nll_per_sample_median']:.3f} | "
        f"{r['max_abs_test_logit_median']:.1f} | {r['distance_median']:.1f} |"
        for r in sets
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ banana speed
def run_speed(args) -> list[dict]:
    """Seconds per geodesic against batch size, one at a time, and nfev against scipy's RK45.

    One banana model (seed `args.seed`), the exact loss, the reference's tolerances by default.
    Wall and process CPU seconds are both reported: on a shared machine CPU time is the steadier.
    """
    from scipy.integrate import solve_ivp

    torch.set_num_threads(1)  # small ops: one thread is faster on this shared 2-core machine
    data = banana_splits()
    x, y = data["train"]
    model = train_banana(x, y, args.seed)
    theta = ParameterView(model).flatten()
    p = theta.numel()
    n_velocities = max(*args.batch_sizes, args.single, args.scipy)
    v = euclidean_velocities(model, x, y, n_velocities, args.seed)
    rows = []
    for rhs in args.rhs:
        metric = banana_metric(model, x, y, rhs)

        def solve(velocity: torch.Tensor, metric=metric):
            return exp_map(
                None,
                theta,
                velocity,
                rtol=args.rtol,
                atol=args.atol,
                metric=metric,
                return_info=True,
                cpu_threads=args.cpu_threads,
            )[1]

        for k in args.batch_sizes:
            cpu0 = time.process_time()
            info = solve(v[:k])
            cpu = (time.process_time() - cpu0) / k
            rows.append(
                {
                    "rhs": rhs,
                    "mode": "batched",
                    "batch": k,
                    "seconds_per_geodesic": info.seconds / k,
                    "cpu_seconds_per_geodesic": cpu,
                    "nfev_mean": float(info.nfev.float().mean()),
                    "nfev_max": int(info.nfev.max()),
                    "failed": info.failed,
                    "load_average": os.getloadavg()[0],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        secs, cpus, nfevs = [], [], []
        for i in range(args.single):
            cpu0 = time.process_time()
            info = solve(v[i])
            cpus.append(time.process_time() - cpu0)
            secs.append(info.seconds)
            nfevs.append(int(info.nfev))
        if args.single:
            rows.append(
                {
                    "rhs": rhs,
                    "mode": "single",
                    "batch": 1,
                    "seconds_per_geodesic": float(np.mean(secs)),
                    "cpu_seconds_per_geodesic": float(np.mean(cpus)),
                    "nfev_mean": float(np.mean(nfevs)),
                    "nfev_max": int(max(nfevs)),
                    "failed": 0,
                    "load_average": os.getloadavg()[0],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.scipy:
        # The same ODE (closed-form right-hand side, float32 like ours) under scipy's RK45.
        metric = banana_metric(model, x, y, "closed")

        def rhs_np(_t, state):
            s = torch.from_numpy(state).float()[None]
            acc = metric.acceleration(s[:, :p], s[:, p:])
            return torch.cat([s[:, p:], acc], dim=1)[0].double().numpy()

        metric64 = MLPMongeMetric(copy.deepcopy(model).double(), x.double(), y, PRIOR_PRECISION)

        def rhs64(_t, state):
            s = torch.from_numpy(state)[None]
            acc = metric64.acceleration(s[:, :p], s[:, p:])
            return torch.cat([s[:, p:], acc], dim=1)[0].numpy()

        torch.set_flush_denormal(True)
        torch.set_num_threads(1)
        for i in range(args.scipy):
            y0 = torch.cat([theta, v[i]]).double().numpy()
            ref = solve_ivp(rhs_np, (0.0, 1.0), y0, rtol=args.rtol, atol=args.atol)
            info = solve(v[i])
            row = {
                "mode": "scipy_rk45",
                "velocity": i,
                "scipy_nfev": int(ref.nfev),
                "scipy_steps": len(ref.t) - 1,
                "ours_nfev": int(info.nfev),
                "ours_steps": int(info.steps),
            }
            if i < args.tight:
                # How far both solutions at these tolerances are from the geodesic itself, solved
                # in float64 (float32 round-off would stall a 1e-10 error control).
                tight = solve_ivp(rhs64, (0.0, 1.0), y0, rtol=1e-10, atol=1e-10)
                end = tight.y[:p, -1]
                ours = exp_map(None, theta, v[i], rtol=args.rtol, atol=args.atol, metric=metric)
                row.update(
                    tight_nfev=int(tight.nfev),
                    scipy_max_abs_error=float(np.abs(ref.y[:p, -1] - end).max()),
                    ours_max_abs_error=float(np.abs(ours.double().numpy() - end).max()),
                    end_point_norm_from_theta=float(np.linalg.norm(end - theta.double().numpy())),
                )
            rows.append(row)
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def summarise_speed(rows: list[dict]) -> str:
    lines = [
        "| right-hand side | mode | geodesics per solve | s / geodesic (wall) | CPU s / geodesic "
        "| vs reference 15.7 s | nfev mean | nfev max | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["mode"] == "scipy_rk45":
            continue
        s = r["seconds_per_geodesic"]
        lines.append(
            f"| {r['rhs']} | {r['mode']} | {r['batch']} | {s:.3f} | "
            f"{r['cpu_seconds_per_geodesic']:.3f} | {REFERENCE_SECONDS_PER_GEODESIC / s:.0f}× | "
            f"{r['nfev_mean']:.0f} | {r['nfev_max']} | {r['load_average']:.1f} |"
        )
    sc = [r for r in rows if r["mode"] == "scipy_rk45"]
    if sc:
        lines += [
            "",
            "| velocity | scipy RK45 nfev (steps) | ours nfev (steps) | max abs error vs "
            "rtol=atol=1e-10 (scipy / ours) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['velocity']} | {r['scipy_nfev']} ({r['scipy_steps']}) | "
            f"{r['ours_nfev']} ({r['ours_steps']}) | "
            + (
                f"{r['scipy_max_abs_error']:.2g} / {r['ours_max_abs_error']:.2g} "
                f"(tight solve {r['tight_nfev']} nfev; ‖θ_end − θ*‖ "
                f"{r['end_point_norm_from_theta']:.1f})"
                if "tight_nfev" in r
                else "–"
            )
            + " |"
            for r in sc
        ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- pneumonia
def _mean_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per model: logits [M, N, C] → [M]."""
    m, n, c = logits.shape
    ce = nn.functional.cross_entropy(logits.reshape(-1, c), y.repeat(m), reduction="none")
    return ce.reshape(m, n).mean(1)


def _head_losses(thetas: torch.Tensor, feats: torch.Tensor, y: torch.Tensor, c: int):
    """Mean CE of many heads (flat [M, C·D + C], weight then bias) on cached features."""
    d = feats.shape[1]
    w = thetas[:, : c * d].reshape(-1, c, d)
    b = thetas[:, c * d :]
    out = []
    for i in range(0, len(thetas), 100):
        logits = torch.einsum("nd,mcd->mnc", feats, w[i : i + 100]) + b[i : i + 100, None, :]
        out.append(_mean_ce(logits, y))
    return torch.cat(out)


def _head_labels(thetas: torch.Tensor, feats: torch.Tensor, c: int) -> np.ndarray:
    """[M, N] labels of many heads on cached features (rashomon.metrics' decision rule)."""
    from rashomon.metrics.multiplicity import predict_labels

    d = feats.shape[1]
    out = []
    for i in range(0, len(thetas), 100):
        w = thetas[i : i + 100, : c * d].reshape(-1, c, d)
        b = thetas[i : i + 100, c * d :]
        logits = torch.einsum("nd,mcd->mnc", feats, w) + b[:, None, :]
        out.append(predict_labels(torch.softmax(logits, -1).numpy()))
    return np.concatenate(out)


def _multiplicity(labels: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from rashomon.metrics.multiplicity import ambiguity, discrepancy

    if len(labels) == 0:
        return {"models": 0, "ambiguity": float("nan"), "discrepancy": float("nan")}
    return {
        "models": int(len(labels)),
        "ambiguity": ambiguity(labels, ref),
        "discrepancy": discrepancy(labels, ref),
    }


def run_pneumonia(args) -> dict:
    import rashomon as rs

    torch.manual_seed(0)
    task = rs.load_task("pneumoniamnist")
    if args.checkpoint and Path(args.checkpoint).exists():
        model, _ = rs.load_checkpoint(args.checkpoint)
    else:
        t0 = time.perf_counter()
        model = rs.train(
            task,
            "cnn-small",
            epochs=args.epochs,
            seed=0,
            progress=False,
            arch_options={"activation": args.activation},
        )
        print(
            f"trained cnn-small ({args.activation}) in {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
        if args.checkpoint:  # reuse the same MAP model in later runs
            from rashomon.models.train import save_checkpoint

            save_checkpoint(model, args.checkpoint, task)
    out: dict = {"activation": args.activation, "epochs": args.epochs}
    if args.skip_last_layer:
        out["all_weights"] = run_pneumonia_all(model, task, args)
        return out
    t0 = time.perf_counter()
    post = rs.riemannian(
        model,
        task,
        subset="last_layer",
        hessian="kron",
        prior="marglik",
        rtol=args.rtol,
        atol=args.atol,
        refine_map=args.refine_map,
    )
    out["fit_seconds"] = time.perf_counter() - t0
    out["refine"] = post.meta.get("refine")
    out["right_hand_side"] = post.meta.get("right_hand_side")
    out["prior_precision"] = post.laplace.prior_precision
    m = args.samples
    v = post.velocities(m, seed=0)
    cpu0, t0 = time.process_time(), time.perf_counter()
    ends, info = post.end_points(v)
    batched_wall = time.perf_counter() - t0
    batched_cpu = time.process_time() - cpu0
    singles = []
    for i in range(args.time_single):
        _, si = post.end_points(v[i : i + 1])
        singles.append(si.seconds)
    net = post.laplace.model
    with torch.no_grad():
        f_tr = torch.cat(
            [net.features(task.train.x[i : i + 512]) for i in range(0, len(task.train.x), 512)]
        )
        f_va = net.features(task.val.x)
        f_te = net.features(task.test.x)
    c = task.num_classes
    theta = post.theta_star.cpu()
    original = torch.cat([p.detach().flatten() for p in model.head.parameters()]).cpu()
    eucl = theta[None] + v
    ok = info.ok.cpu()
    res = {}
    for name, th in (
        ("MAP", theta[None]),
        ("trained head", original[None]),
        ("Euclidean", eucl[ok]),
        ("Riemannian", ends.cpu()[ok]),
    ):
        res[name] = {
            "train": _head_losses(th, f_tr, task.train.y, c),
            "val": _head_losses(th, f_va, task.val.y, c),
            "test_labels": _head_labels(th, f_te, c),
        }
    map_val = float(res["MAP"]["val"][0])
    ref = res["MAP"]["test_labels"][0]
    # The geodesics' own loss L (summed CE + prior): how far up each sample sits.
    with torch.no_grad():
        big_l = {
            n: torch.stack([post.loss(t.to(post.device)) for t in res_th]).cpu()
            for n, res_th in (
                ("MAP", theta[None]),
                ("Euclidean", eucl[ok]),
                ("Riemannian", ends.cpu()[ok]),
            )
        }
    table = {}
    th_of = {"Euclidean": eucl[ok], "Riemannian": ends.cpu()[ok]}
    for name in ("Euclidean", "Riemannian"):
        r = res[name]
        table[name] = {
            "train_loss_median": float(r["train"].median()),
            "val_loss_median": float(r["val"].median()),
            "val_loss_mean": float(r["val"].mean()),
            "below_map_train_loss": float(
                (r["train"] < float(res["MAP"]["train"][0])).float().mean()
            ),
            "multiplicity_all": _multiplicity(r["test_labels"], ref),
            "L_rise_median": float((big_l[name] - big_l["MAP"][0]).median()),
            "distance_median": float((th_of[name] - theta).norm(dim=1).median()),
            "velocity_norm_median": float(v[ok].norm(dim=1).median()),
        }
        for e in (0.01, 0.02, 0.05):
            inside = (r["val"] <= map_val * (1 + e)).numpy()
            table[name][f"in_set_eps_{e}"] = float(inside.mean())
            table[name][f"multiplicity_eps_{e}"] = _multiplicity(r["test_labels"][inside], ref)
    out.update(
        map_train_loss=float(res["MAP"]["train"][0]),
        map_val_loss=map_val,
        trained_head_train_loss=float(res["trained head"]["train"][0]),
        trained_head_val_loss=float(res["trained head"]["val"][0]),
        table=table,
        samples=m,
        failed=info.failed,
        status_counts=info.counts,
        batched_seconds=batched_wall,
        batched_cpu_seconds=batched_cpu,
        geodesics_per_second_batched=m / batched_wall,
        single_seconds_per_geodesic=float(np.mean(singles)) if singles else None,
        nfev_mean=float(info.nfev.float().mean()),
        nfev_median=float(info.nfev.float().median()),
        nfev_max=int(info.nfev.max()),
        load_average=os.getloadavg()[0],
    )
    if args.all_weights:
        out["all_weights"] = run_pneumonia_all(model, task, args)
    return out


def run_pneumonia_all(model, task, args) -> dict:
    """All weights with a fixed mini-batch per geodesic (data term scaled by N/B), exact and/or
    linearized, bounded by `--all-max-nfev` per geodesic and `--all-timeout` seconds per solve.

    Reports the cost of one right-hand-side call for the K geodesics (measured before the solve,
    so the cost is known even when the solve times out), the function evaluations each
    geodesic used, and how each ended."""
    import rashomon as rs

    out: dict = {}
    for variant in args.all_variants:
        t0 = time.perf_counter()
        post = rs.riemannian(
            model,
            task,
            subset="all",
            hessian="kron",
            prior="marglik",
            linearized=variant == "linearized",
            batch_size=args.all_batch,
            rtol=args.rtol,
            atol=args.atol,
            max_nfev=args.all_max_nfev,
        )
        fit_seconds = time.perf_counter() - t0
        k = args.all_samples
        v = post.velocities(k, seed=0).to(post.device)
        theta = post.theta_star[None].expand(k, -1)
        gen = torch.Generator().manual_seed(0)
        index = torch.stack(
            [torch.randperm(post.n_train, generator=gen)[: args.all_batch] for _ in v]
        )
        torch.set_num_threads(1)
        post.metric.acceleration(theta, v, [index])  # warm-up
        t0 = time.perf_counter()
        calls = 3
        for _ in range(calls):
            post.metric.acceleration(theta, v, [index])
        per_call = (time.perf_counter() - t0) / calls
        points, info = post.end_points(v, max_seconds=args.all_timeout)
        nfev = info.nfev.float()
        done = info.ok
        shares = all_weights_shares(post, task, v, points, done) if bool(done.any()) else {}
        out[variant] = {
            "batch_size": args.all_batch,
            "samples": k,
            "params": int(v.shape[1]),
            "prior_precision": post.laplace.prior_precision,
            "right_hand_side": post.meta["right_hand_side"],
            "fit_seconds": fit_seconds,
            "seconds_per_call_all_k": per_call,
            "seconds_per_geodesic_evaluation": per_call / k,
            "solve_seconds": info.seconds,
            "timeout_seconds": args.all_timeout,
            "nfev": info.nfev.tolist(),
            "nfev_mean_finished": float(nfev[done].mean()) if bool(done.any()) else None,
            "status_counts": info.counts,
            "seconds_per_finished_geodesic": info.seconds / int(done.sum())
            if bool(done.any())
            else None,
            "load_average": os.getloadavg()[0],
            **shares,
        }
        print(json.dumps({variant: out[variant]}), file=sys.stderr, flush=True)
    return out


def all_weights_shares(post, task, v, points, done) -> dict:
    """For the geodesics that finished: validation loss relative to the MAP model and the share
    within ε of it, for the Euclidean samples θ* + v and the Riemannian end points of the same v
    (both evaluated with the set's own kind: sampled or linearized network)."""
    from rashomon.sets.rashomon import model_scores

    ok = done.cpu()
    theta = post.theta_star.detach().cpu()[None]
    x_val, y_val = task.val.x, task.val.y.numpy()
    map_loss = None
    out: dict = {"finished": int(ok.sum())}
    for name, vectors in (("euclidean", theta + v.cpu()[ok]), ("riemannian", points.cpu()[ok])):
        mset = post.laplace.to_set(vectors.detach(), kind=post.kind)
        if map_loss is None:
            base = post.laplace.to_set(theta, kind=post.kind)
            map_loss = float(model_scores(base.predict(x_val).numpy(), y_val)["loss"][0])
        rel = model_scores(mset.predict(x_val).numpy(), y_val)["loss"] / map_loss - 1.0
        out[f"{name}_val_loss_rise_median"] = float(np.median(rel))
        for eps in (0.01, 0.02, 0.05):
            out[f"{name}_in_set_eps_{eps}"] = float((rel <= eps).mean())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("banana")
    b.add_argument("--seeds", type=int, nargs="+", default=[0])
    b.add_argument("--samples", type=int, default=50)
    b.add_argument("--rtol", type=float, default=1e-5)
    b.add_argument("--atol", type=float, default=1e-6)
    b.add_argument("--time-single", type=int, default=5, help="geodesics timed one at a time")
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--rhs", choices=("closed", "autograd"), default="closed")
    b.add_argument(
        "--refine-map",
        action="store_true",
        help="L-BFGS the trained MLP to a stationary point of L before the Laplace fit",
    )
    b.add_argument("--json", type=Path, default=None)
    dg = sub.add_parser("diagnose")
    dg.add_argument("--seed", type=int, default=0)
    dg.add_argument("--samples", type=int, default=20)
    dg.add_argument("--refine-map", action="store_true")
    dg.add_argument("--rtol", type=float, default=1e-6)
    dg.add_argument("--atol", type=float, default=1e-3)
    dg.add_argument("--json", type=Path, default=None)
    sp = sub.add_parser("speed")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 50, 100, 200])
    sp.add_argument("--single", type=int, default=5, help="geodesics timed one at a time")
    sp.add_argument("--rhs", nargs="+", default=["closed", "autograd"])
    sp.add_argument("--scipy", type=int, default=3, help="geodesics solved by scipy RK45 too")
    sp.add_argument("--cpu-threads", type=int, default=1, help="torch threads during solves")
    sp.add_argument(
        "--tight", type=int, default=0, help="of those, solved at rtol=atol=1e-10 (slow)"
    )
    sp.add_argument("--rtol", type=float, default=1e-6)
    sp.add_argument("--atol", type=float, default=1e-3)
    sp.add_argument("--json", type=Path, default=None)
    q = sub.add_parser("pneumonia")
    q.add_argument("--samples", type=int, default=1000)
    q.add_argument("--epochs", type=int, default=3)
    q.add_argument("--activation", default="relu")
    q.add_argument("--checkpoint", default=None, help="load if it exists, else train and save")
    q.add_argument("--rtol", type=float, default=1e-5)
    q.add_argument("--atol", type=float, default=1e-6)
    q.add_argument("--time-single", type=int, default=20)
    q.add_argument(
        "--refine-map",
        action="store_true",
        help="L-BFGS the head to a stationary point of L first (rs.riemannian refine_map)",
    )
    q.add_argument("--all-weights", action="store_true")
    q.add_argument("--all-batch", type=int, default=64)
    q.add_argument("--all-samples", type=int, default=4)
    q.add_argument("--all-max-nfev", type=int, default=3000)
    q.add_argument("--all-timeout", type=float, default=240.0, help="seconds per all-weights solve")
    q.add_argument(
        "--all-variants",
        nargs="+",
        default=["exact", "linearized"],
        choices=("exact", "linearized"),
    )
    q.add_argument(
        "--skip-last-layer", action="store_true", help="only the all-weights part (--all-weights)"
    )
    q.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.command == "banana":
        runs = []
        for seed in args.seeds:
            r = run_banana(
                seed,
                args.samples,
                args.rtol,
                args.atol,
                args.time_single,
                args.rhs,
                args.refine_map,
            )
            print(json.dumps(r), file=sys.stderr, flush=True)
            runs.append(r)
        print(summarise_banana(runs))
        if args.json:
            args.json.write_text(json.dumps(runs, indent=1))
    if args.command == "diagnose":
        rows = run_diagnose(args)
        print(summarise_diagnose(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    if args.command == "speed":
        rows = run_speed(args)
        print(summarise_speed(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    if args.command == "pneumonia":
        result = run_pneumonia(args)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
