"""Riemannian Laplace on banana: solver speed against the reference's 15.7 s per geodesic.

    .venv/bin/python benchmarks/bench_riemannian_speed.py --batch-sizes 20 50 100 200
    .venv/bin/python benchmarks/bench_riemannian_speed.py --paired 5

Seconds per geodesic against batch size and one at a time (ratio to the reference's 15.7 s), nfev
against scipy's RK45 on the same ODE, optionally the error against a tight solve. The solver
settings default to `GeodesicSolver`'s; `--rtol/--atol/--error-scale/--error-norm` change them.
`--paired R`: instead, R paired rounds (benchmarks/_paired.py) of three error controls on the
same 50 geodesics, batched: the reference's (rtol 1e-6, atol 1e-3, absolute, RMS), the earlier
defaults (rtol 1e-5, atol 1e-6, absolute, RMS) and the current defaults, with banana's test
metrics of each.
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
from riemannian_common import (
    PRIOR_PRECISION,
    REFERENCE_SECONDS_PER_GEODESIC,
    banana_metric,
    banana_splits,
    classification_metrics,
    euclidean_velocities,
    mean_probs,
    solver_from_args,
    train_banana,
)

from rashomon.sets.flat import ParameterView
from rashomon.sets.geodesic import MLPMongeMetric
from rashomon.sets.riemannian import GeodesicSolver, exp_map

# The error controls compared by --paired.
CONTROLS = {
    "reference": GeodesicSolver(rtol=1e-6, atol=1e-3, error_scale="absolute", error_norm="rms"),
    "earlier_defaults": GeodesicSolver(
        rtol=1e-5, atol=1e-6, error_scale="absolute", error_norm="rms"
    ),
    "defaults": GeodesicSolver(),
}


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
    solver = solver_from_args(args).with_options(cpu_threads=args.cpu_threads)
    rows = []
    for rhs in args.rhs:
        metric = banana_metric(model, x, y, rhs)

        def solve(velocity: torch.Tensor, metric=metric):
            return exp_map(None, theta, velocity, metric=metric, solver=solver, return_info=True)[1]

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
            # scipy's error control is the absolute-scale RMS one
            ref = solve_ivp(rhs_np, (0.0, 1.0), y0, rtol=solver.rtol, atol=solver.atol)
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
                ours = exp_map(None, theta, v[i], metric=metric, solver=solver)
                row.update(
                    tight_nfev=int(tight.nfev),
                    scipy_max_abs_error=float(np.abs(ref.y[:p, -1] - end).max()),
                    ours_max_abs_error=float(np.abs(ours.double().numpy() - end).max()),
                    end_point_norm_from_theta=float(np.linalg.norm(end - theta.double().numpy())),
                )
            rows.append(row)
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def run_tolerance_sweep(args) -> list[dict]:
    """Banana metrics and evaluations of the same 50 geodesics at each rtol:atol pair (closed
    form, `max_nfev` 100,000 so that none is cut off, no retries), under the error scale and
    norm given (default: `GeodesicSolver`'s)."""
    torch.set_num_threads(1)
    data = banana_splits()
    (x, y), (x_te, y_te) = data["train"], data["test"]
    model = train_banana(x, y, args.seed)
    view = ParameterView(model)
    theta = view.flatten()
    v = euclidean_velocities(model, x, y, 50, args.seed)
    metric = banana_metric(model, x, y, "closed")
    base = solver_from_args(args).with_options(max_nfev=100_000, retries=0)
    rows = []
    for pair in args.tolerance_sweep:
        rtol, atol = (float(t) for t in pair.split(":"))
        solver = base.with_options(rtol=rtol, atol=atol)
        ends, info = exp_map(None, theta, v, metric=metric, solver=solver, return_info=True)
        probs = mean_probs(view, ends[info.ok], x_te)
        rows.append(
            {
                **solver.as_meta(),
                "nfev_mean": float(info.nfev.float().mean()),
                "nfev_max": int(info.nfev.max()),
                "over_20000": int((info.nfev > 20_000).sum()),
                "failed": info.failed,
                **classification_metrics(probs, y_te.numpy()),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def run_paired(args) -> dict:
    """Paired rounds of the error controls in CONTROLS on banana's 50 geodesics (seed
    `args.seed`, closed form, one thread): seconds per geodesic, their per-round ratios, and the
    test metrics and evaluations of each control's end points."""
    from _paired import loadavg, run_row

    torch.set_num_threads(1)
    data = banana_splits()
    (x, y), (x_te, y_te) = data["train"], data["test"]
    model = train_banana(x, y, args.seed)
    view = ParameterView(model)
    theta = view.flatten()
    v = euclidean_velocities(model, x, y, 50, args.seed)
    metric = banana_metric(model, x, y, "closed")
    quality: dict[str, dict] = {}

    def contender(name: str):
        def solve():
            ends, info = exp_map(
                None, theta, v, metric=metric, solver=CONTROLS[name], return_info=True
            )
            if name not in quality:  # deterministic: the first solve's end points stand
                probs = mean_probs(view, ends[info.ok], x_te)
                quality[name] = {
                    "nfev_mean": float(info.nfev.float().mean()),
                    "nfev_max": int(info.nfev.max()),
                    "failed": info.failed,
                    **classification_metrics(probs, y_te.numpy()),
                }
            return ends

        return solve

    load_before = loadavg()
    row = run_row(
        "banana_error_control",
        "banana seed 0, 50 geodesics batched, closed form, 1 thread",
        {name: contender(name) for name in args.controls},
        rounds=args.paired,
        ratios=[(name, "defaults") for name in args.controls if name != "defaults"],
        warmup=True,
    )
    out = row.to_dict()
    for name, q in quality.items():
        wall = out["contenders"][name]["wall_median_s"] / len(v)
        cpu = out["contenders"][name]["cpu_median_s"] / len(v)
        q.update(
            seconds_per_geodesic=wall,
            cpu_seconds_per_geodesic=cpu,
            vs_reference_implementation=REFERENCE_SECONDS_PER_GEODESIC / wall,
            solver=CONTROLS[name].as_meta(),
        )
        print(name, json.dumps(q), flush=True)
    out["quality"] = quality
    out["load_before_all"] = load_before
    return out


def summarise_sweep(rows: list[dict]) -> str:
    lines = [
        "| rtol / atol | nfev mean | nfev max | over 20,000 | accuracy % | NLL | Brier | ECE % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['rtol']:g} / {r['atol']:g} | {r['nfev_mean']:.0f} | {r['nfev_max']} | "
        f"{r['over_20000']} | {r['accuracy']:.1f} | {r['nll']:.3f} | {r['brier']:.3f} | "
        f"{r['ece']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--single", type=int, default=5, help="geodesics timed one at a time")
    parser.add_argument("--rhs", nargs="+", default=["closed", "autograd"])
    parser.add_argument("--scipy", type=int, default=3, help="geodesics solved by scipy RK45 too")
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads during solves")
    parser.add_argument(
        "--tight", type=int, default=0, help="of those, solved at rtol=atol=1e-10 (slow)"
    )
    parser.add_argument("--rtol", type=float, default=None)
    parser.add_argument("--atol", type=float, default=None)
    parser.add_argument("--error-scale", choices=("velocity", "absolute"), default=None)
    parser.add_argument("--error-norm", choices=("max", "rms"), default=None)
    parser.add_argument(
        "--paired", type=int, default=0, metavar="ROUNDS", help="paired rounds of --controls"
    )
    parser.add_argument("--controls", nargs="+", choices=list(CONTROLS), default=list(CONTROLS))
    parser.add_argument(
        "--tolerance-sweep",
        nargs="+",
        default=None,
        metavar="RTOL:ATOL",
        help="instead of timing: banana metrics and nfev of 50 geodesics per tolerance pair",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.paired:
        rows = run_paired(args)
    elif args.tolerance_sweep:
        rows = run_tolerance_sweep(args)
        print(summarise_sweep(rows))
    else:
        rows = run_speed(args)
        print(summarise_speed(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
