"""Riemannian Laplace on banana, diagnosed: what the linearized Riemannian samples look like.

    .venv/bin/python benchmarks/bench_riemannian_diagnose.py --seed 0 [--refine-map]

For one seed and each set of samples (MAP, Euclidean LA, linearized LA, Riemannian LA,
linearized Riemannian LA, the minimiser of the linearized loss): the geodesics' loss L at the
samples, test accuracy, ensemble and per-sample NLL, the largest test logit and the distance
from θ*.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from riemannian_common import (
    PRIOR_PRECISION,
    banana_metric,
    banana_splits,
    euclidean_velocities,
    refine_banana,
    train_banana,
)

from rashomon.sets.flat import ParameterView, flat_loss, minimize_flat
from rashomon.sets.geodesic import LinearizedMLPMongeMetric
from rashomon.sets.riemannian import exp_map


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--refine-map", action="store_true")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--atol", type=float, default=1e-3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = run_diagnose(args)
    print(summarise_diagnose(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
