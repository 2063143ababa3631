"""Riemannian Laplace on PneumoniaMNIST: the core claim (docs/riemannian.md).

    RASHOMON_DATA=/work/shared/data .venv/bin/python benchmarks/bench_riemannian_pneumonia.py \
        --samples 200 [--refine-map] [--all-weights --all-samples 8 --all-timeout 240] \
        --checkpoint cnn_small.pt

Last layer: shares within ε and test multiplicity of the Euclidean samples θ* + v and of the
Riemannian samples Exp_θ*(v) of the same velocities under each metric (`--metrics monge fisher`:
g = I + ∇L∇Lᵀ, and the Fisher metric F + τI of Yu et al. 2024); optionally all weights, bounded
by a function-evaluation and time budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


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
    if args.tolerance_check:
        out["tolerance_check"] = run_tolerance_check(model, task, args)
        return out
    if args.skip_last_layer:
        out["all_weights"] = run_pneumonia_all(model, task, args)
        return out
    m = args.samples
    solves: dict[str, dict] = {}
    v = post = None
    for metric in args.metrics:
        t0 = time.perf_counter()
        post = rs.riemannian(
            model,
            task,
            subset="last_layer",
            hessian="kron",
            prior="marglik",
            refine_map=args.refine_map,
            metric=metric,
            **solver_settings(args),
        )
        fit_seconds = time.perf_counter() - t0
        v_metric = post.velocities(m, seed=0)
        if v is None:
            v = v_metric
        # The same Laplace fit, hence the same velocities, for every metric.
        assert torch.equal(v, v_metric), "the Laplace fits differ between metrics"
        cpu0, t0 = time.process_time(), time.perf_counter()
        ends, info = post.end_points(v)
        batched_wall = time.perf_counter() - t0
        batched_cpu = time.process_time() - cpu0
        singles = []
        for i in range(args.time_single):
            _, si = post.end_points(v[i : i + 1])
            singles.append(si.seconds)
        solves[metric] = {
            "post": post,
            "ends": ends,
            "info": info,
            "stats": {
                "fit_seconds": fit_seconds,
                "right_hand_side": post.meta.get("right_hand_side"),
                "failed": info.failed,
                "status_counts": info.counts,
                "retried": info.retried,
                "batched_seconds": batched_wall,
                "batched_cpu_seconds": batched_cpu,
                "seconds_per_geodesic_batched": batched_wall / m,
                "single_seconds_per_geodesic": float(np.mean(singles)) if singles else None,
                "nfev_mean": float(info.nfev.float().mean()),
                "nfev_median": float(info.nfev.float().median()),
                "nfev_max": int(info.nfev.max()),
                "cg_iterations_mean": getattr(post.metric, "cg_iterations_mean", None),
                "load_average": os.getloadavg()[0],
            },
        }
        print(json.dumps({metric: solves[metric]["stats"]}), file=sys.stderr, flush=True)
    out["refine"] = post.meta.get("refine")
    out["prior_precision"] = post.laplace.prior_precision
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
    # Only velocities whose geodesics succeeded under every metric: one sample set per row.
    ok = torch.stack([sv["info"].ok.cpu() for sv in solves.values()]).all(0)
    sets = {"MAP": theta[None], "trained head": original[None], "Euclidean": (theta[None] + v)[ok]}
    for metric, sv in solves.items():
        sets[f"Riemannian ({metric})"] = sv["ends"].cpu()[ok]
    res = {
        name: {
            "train": _head_losses(th, f_tr, task.train.y, c),
            "val": _head_losses(th, f_va, task.val.y, c),
            "test_labels": _head_labels(th, f_te, c),
        }
        for name, th in sets.items()
    }
    map_val = float(res["MAP"]["val"][0])
    ref = res["MAP"]["test_labels"][0]
    # The geodesics' own loss L (summed CE + prior): how far up each sample sits.
    with torch.no_grad():
        big_l = {
            n: torch.stack([post.loss(t.to(post.device)) for t in th]).cpu()
            for n, th in sets.items()
            if n != "trained head"
        }
    table = {}
    for name in [n for n in sets if n not in ("MAP", "trained head")]:
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
            "distance_median": float((sets[name] - theta).norm(dim=1).median()),
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
        used=int(ok.sum()),
        solves={metric: sv["stats"] for metric, sv in solves.items()},
        load_average=os.getloadavg()[0],
    )
    if args.all_weights:
        out["all_weights"] = run_pneumonia_all(model, task, args)
    return out


def solver_settings(args) -> dict:
    """The solver settings given on the command line (the rest stay `GeodesicSolver`'s)."""
    given = {k: getattr(args, k) for k in ("rtol", "atol", "error_scale", "error_norm")}
    return {k: v for k, v in given.items() if v is not None}


def parse_control(text: str):
    """'rtol:atol' (the default error scale and norm) or 'rtol:atol:scale:norm'."""
    from rashomon.sets.riemannian import GeodesicSolver

    parts = text.split(":")
    settings = {"rtol": float(parts[0]), "atol": float(parts[1])}
    if len(parts) == 4:
        settings.update(error_scale=parts[2], error_norm=parts[3])
    return GeodesicSolver(**settings)


def run_tolerance_check(model, task, args) -> list[dict]:
    """Last-layer Monge geodesics of `--tolerance-check` velocities under each `--tolerances`
    error control against the same geodesics at rtol 1e-9, atol 1e-10 (absolute, RMS): end-point
    error relative to the displacement and error in the loss L at the end point."""
    import rashomon as rs
    from rashomon.sets.riemannian import GeodesicSolver, exp_map

    post = rs.riemannian(
        model,
        task,
        subset="last_layer",
        hessian="kron",
        prior="marglik",
        refine_map=args.refine_map,
    )
    v = post.velocities(args.tolerance_check, seed=0)
    theta = post.theta_star
    tight = GeodesicSolver(
        rtol=1e-9, atol=1e-10, error_scale="absolute", error_norm="rms", max_nfev=10**6
    )
    ref, info = exp_map(None, theta, v, metric=post.metric, solver=tight, return_info=True)
    rows = [
        {
            "rtol": 1e-9,
            "atol": 1e-10,
            "nfev_mean": float(info.nfev.float().mean()),
            "displacement_median": float((ref - theta).norm(dim=1).median()),
        }
    ]
    with torch.no_grad():
        ref_loss = torch.stack([post.loss(e) for e in ref])
    for control in args.tolerances:
        solver = parse_control(control)
        cpu0 = time.process_time()
        ends, info = exp_map(None, theta, v, metric=post.metric, solver=solver, return_info=True)
        cpu = time.process_time() - cpu0
        err = (ends - ref).norm(dim=1) / (ref - theta).norm(dim=1)
        with torch.no_grad():
            dl = (torch.stack([post.loss(e) for e in ends]) - ref_loss).abs()
        rows.append(
            {
                **solver.as_meta(),
                "nfev_mean": float(info.nfev.float().mean()),
                "cpu_seconds_per_geodesic": cpu / len(v),
                "load_average": os.getloadavg()[0],
                "relative_error_median": float(err.median()),
                "relative_error_max": float(err.max()),
                "loss_error_median": float(dl.median()),
                "loss_error_max": float(dl.max()),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


ALL_VARIANTS = {  # name: (linearized, solved in the subspace)
    "exact": (False, False),
    "linearized": (True, True),
    "linearized_full": (True, False),
}


def run_pneumonia_all(model, task, args) -> dict:
    """All weights with a fixed mini-batch per geodesic (data term scaled by N/B), one Laplace
    fit, then each `--all-variants` (exact; linearized solved in each geodesic's subspace;
    linearized in the full parameter space) under each `--all-metrics` metric on the same
    velocities, bounded by `--all-max-nfev` per geodesic and `--all-timeout` seconds per solve.

    Reports seconds per geodesic (with the subspaces' construction), evaluations, how each
    geodesic ended, and 500 geodesics' cost extrapolated from the finished ones (labelled so);
    for full-space variants also the cost of one right-hand-side call for the K geodesics,
    measured before the solve, so the cost is known even when the solve times out."""
    import rashomon as rs
    from rashomon.sets.riemannian import MetricOptions, RiemannianPosterior, geodesic_problem

    t0 = time.perf_counter()
    base = rs.riemannian(
        model,
        task,
        subset="all",
        hessian="kron",
        prior="marglik",
        linearized=True,
        batch_size=args.all_batch,
        max_nfev=args.all_max_nfev,
        **solver_settings(args),
    )
    out: dict = {
        "fit_seconds": time.perf_counter() - t0,
        "prior_precision": base.laplace.prior_precision,
        "batch_size": args.all_batch,
        "solver": base.solver.as_meta(),
    }
    k = args.all_samples
    v = base.velocities(k, seed=0).to(base.device)
    index = base.problem.minibatches(k, seed=0)
    ends: dict[str, torch.Tensor] = {}
    torch.set_num_threads(1)
    for metric in args.all_metrics:
        for variant in args.all_variants:
            linearized, subspace = ALL_VARIANTS[variant]
            options = MetricOptions(metric=metric, subspace=subspace)
            problem = geodesic_problem(
                base.laplace, task, "all", linearized, args.all_batch, 1.0, options
            )
            post = RiemannianPosterior(
                base.laplace,
                problem,
                base.solver,
                subset="all",
                linearized=linearized,
                meta=base.meta,
            )
            row: dict = {"right_hand_side": problem.right_hand_side}
            if not subspace:
                theta = post.theta_star[None].expand(k, -1)
                post.metric.acceleration(theta, v, index)  # warm-up
                t0 = time.perf_counter()
                post.metric.acceleration(theta, v, index)
                row["seconds_per_call_all_k"] = time.perf_counter() - t0
                row["seconds_per_geodesic_evaluation"] = row["seconds_per_call_all_k"] / k
            cpu0 = time.process_time()
            points, info = post.end_points(v, seed=0, max_seconds=args.all_timeout)
            cpu = time.process_time() - cpu0
            done = info.ok
            finished = int(done.sum())
            row.update(
                samples=k,
                params=int(v.shape[1]),
                solve_seconds=info.seconds,
                solve_cpu_seconds=cpu,
                timeout_seconds=args.all_timeout,
                nfev=info.nfev.tolist(),
                nfev_mean_finished=float(info.nfev[done].float().mean()) if finished else None,
                status_counts=info.counts,
                finished=finished,
                seconds_per_finished_geodesic=info.seconds / finished if finished else None,
                extrapolated_seconds_500=500 * info.seconds / finished if finished else None,
                load_average=os.getloadavg()[0],
            )
            if finished:
                row.update(all_weights_shares(post, task, v, points, done))
            ends[f"{metric}/{variant}"] = points.detach().cpu()
            out[f"{metric}/{variant}"] = row
            print(json.dumps({f"{metric}/{variant}": row}), file=sys.stderr, flush=True)
        both = [f"{metric}/linearized", f"{metric}/linearized_full"]
        if all(b in ends for b in both):
            a, b = ends[both[0]], ends[both[1]]
            moved = (b - base.theta_star.cpu()).norm(dim=1)
            ok = torch.isfinite(a).all(1) & torch.isfinite(b).all(1)
            out[f"{metric}/subspace_vs_full_relative_difference"] = ((a - b).norm(dim=1) / moved)[
                ok
            ].tolist()
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
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--checkpoint", default=None, help="load if it exists, else train and save")
    parser.add_argument("--rtol", type=float, default=None)
    parser.add_argument("--atol", type=float, default=None)
    parser.add_argument("--error-scale", choices=("velocity", "absolute"), default=None)
    parser.add_argument("--error-norm", choices=("max", "rms"), default=None)
    parser.add_argument("--time-single", type=int, default=20)
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["monge", "fisher"],
        choices=("monge", "fisher"),
        help="last-layer geodesic metrics, each mapping the same velocities",
    )
    parser.add_argument(
        "--refine-map",
        action="store_true",
        help="L-BFGS the head to a stationary point of L first (rs.riemannian refine_map)",
    )
    parser.add_argument("--all-weights", action="store_true")
    parser.add_argument("--all-batch", type=int, default=64)
    parser.add_argument("--all-samples", type=int, default=4)
    parser.add_argument("--all-max-nfev", type=int, default=3000)
    parser.add_argument(
        "--all-timeout", type=float, default=240.0, help="seconds per all-weights solve"
    )
    parser.add_argument(
        "--all-variants",
        nargs="+",
        default=["linearized", "linearized_full", "exact"],
        choices=tuple(ALL_VARIANTS),
    )
    parser.add_argument(
        "--all-metrics", nargs="+", default=["monge", "fisher"], choices=("monge", "fisher")
    )
    parser.add_argument(
        "--skip-last-layer", action="store_true", help="only the all-weights part (--all-weights)"
    )
    parser.add_argument(
        "--tolerance-check",
        type=int,
        default=0,
        help="only: this many last-layer geodesics at each --tolerances pair vs a tight solve",
    )
    parser.add_argument(
        "--tolerances",
        nargs="+",
        default=["1e-6:1e-3:absolute:rms", "1e-5:1e-6:absolute:rms", "1e-6:1e-3:velocity:max"],
        help="error controls, 'rtol:atol' or 'rtol:atol:scale:norm'",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run_pneumonia(args)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
