"""Riemannian Laplace sampling (Bergamin et al., NeurIPS 2023).

A sample is θ = Exp_θ*(v): draw v from the Euclidean Laplace posterior's Gaussian N(0, Σ) and
follow the geodesic of the metric g(θ) = I + ∇L(θ)∇L(θ)ᵀ from the MAP weights θ* with initial
velocity v up to t = 1. L is the negative log posterior (summed data term + Gaussian prior).

`exp_map` solves K geodesics as one batch with a Dormand–Prince 5(4) solver that keeps a step size
per geodesic (`rashomon.ode`). A geodesic that fails (evaluation budget, step collapse, NaN) is
reported in the returned info and its end point set to NaN: callers drop it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rashomon.errors import RashomonError
from rashomon.models.predict import model_features
from rashomon.ode import (
    MAX_NFEV,
    NON_FINITE,
    STATUS_NAMES,
    STEP_TOO_SMALL,
    SUCCESS,
    BatchSolution,
    solve_batched,
)
from rashomon.sets.fisher import (
    CG_MAX_ITER,
    CG_TOL,
    FisherMetric,
    MLPFisherMetric,
    Operator,
)
from rashomon.sets.flat import FlatLoss, ParameterView, flat_loss, minimize_flat
from rashomon.sets.geodesic import (
    GeodesicMetric,
    LinearizedMLPMongeMetric,
    MLPMongeMetric,
    MongeMetric,
)

MIN_VELOCITY_NORM = 1e-5  # below this the geodesic is the straight line to solver precision
RETRIES = 1  # resumes of a failed geodesic before it is dropped (see exp_map)
# Default tolerances. The reference's (rtol 1e-6, atol 1e-3) are 2-7x cheaper, but atol 1e-3 is
# coarse for small weights: on PneumoniaMNIST's head (weights of rms 0.05) the end points were 3 %
# (median) to 29 % off the converged geodesic against 0.016 % / 0.07 % at these (measured; banana,
# where a tight solve costs 7x, is solved at the reference's tolerances explicitly). The budget
# failures tight tolerances cause are what the resume-retry catches (docs/riemannian.md).
RTOL, ATOL = 1e-5, 1e-6
RETRYABLE = torch.tensor([MAX_NFEV, NON_FINITE, STEP_TOO_SMALL])


@dataclass
class GeodesicInfo:
    """How the K geodesics of one `exp_map` call went."""

    ok: torch.Tensor  # [K] bool; False rows must be dropped
    status: torch.Tensor  # [K] int64, codes of rashomon.ode.STATUS_NAMES
    nfev: torch.Tensor  # [K] int64 right-hand-side evaluations (0 for skipped tiny velocities)
    steps: torch.Tensor  # [K] int64 accepted steps
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    retries: torch.Tensor | None = None  # [K] int64 retries each geodesic needed (0: none)

    @property
    def failed(self) -> int:
        return int((~self.ok).sum())

    @property
    def retried(self) -> int:
        """Geodesics that failed a first attempt and were resumed with a tighter step."""
        return 0 if self.retries is None else int((self.retries > 0).sum())

    @property
    def recovered(self) -> int:
        """Retried geodesics that then succeeded."""
        return 0 if self.retries is None else int(((self.retries > 0) & self.ok).sum())


def exp_map(
    loss: FlatLoss | None,
    theta: torch.Tensor,
    velocity: torch.Tensor,
    t: float = 1.0,
    rtol: float = RTOL,
    atol: float = ATOL,
    *,
    metric: GeodesicMetric | None = None,
    data: Sequence[torch.Tensor] = (),
    max_nfev: int = 20_000,
    batch_size: int | None = None,
    return_info: bool = False,
    cpu_threads: int | None = 1,
    max_seconds: float | None = None,
    retries: int = RETRIES,
) -> torch.Tensor | tuple[torch.Tensor, GeodesicInfo]:
    """End points of the geodesics leaving `theta` [P] with `velocity` [P] or [K, P] at time t.

    `loss(theta [P], *data_k)` is a scalar (torch.func-transformable); the metric defaults to
    `MongeMetric(loss)`. `data` holds per-geodesic tensors [K, ...] handed to the loss (e.g. the
    index of each geodesic's mini-batch). Velocities with norm < 1e-5 return θ + t·v unsolved.
    `batch_size` caps how many geodesics share one solve (memory); None solves all at once.
    Failed geodesics come back as NaN rows; `return_info=True` also returns a `GeodesicInfo`.
    `max_seconds` bounds the wall-clock time of all solves together (unfinished geodesics stop
    with status "timeout").
    A geodesic that fails (evaluation budget, step collapse, non-finite values) is resumed up to
    `retries` times from its last accepted point, each time with a fresh `max_nfev` budget, a
    first step a tenth of its largest accepted one and steps capped at that largest one; only
    then is it dropped. `GeodesicInfo.retries` says how many retries each one needed.
    Device and dtype follow `theta`. On the CPU the solve runs with `cpu_threads` intra-op
    threads (restored afterwards; None leaves torch's setting): a right-hand side is many tiny
    ops, and on a busy 2-core machine each op's thread barrier made a call 100× slower
    (0.2 s against 1.2 ms with one thread, measured on a small head). With `cpu_threads` set,
    subnormal floats are also flushed to zero during the solve (switched off afterwards).
    """
    if cpu_threads is not None and theta.device.type == "cpu":
        previous = torch.get_num_threads()
        torch.set_num_threads(int(cpu_threads))
        # Saturated tanh units and tiny softmax tails produce subnormal floats; on x86 CPUs each
        # operation on them is ~15× slower (measured: 1.2 ms against 81 µs for one product of
        # 212K floats). Flushing them to zero changes values below 1e-38 only.
        torch.set_flush_denormal(True)
        try:
            return exp_map(
                loss,
                theta,
                velocity,
                t,
                rtol,
                atol,
                metric=metric,
                data=data,
                max_nfev=max_nfev,
                batch_size=batch_size,
                return_info=return_info,
                cpu_threads=None,
                max_seconds=max_seconds,
                retries=retries,
            )
        finally:
            torch.set_num_threads(previous)
            torch.set_flush_denormal(False)
    if metric is None:
        if loss is None:
            raise RashomonError("exp_map needs a loss or a metric; pass loss=callable(theta)")
        metric = MongeMetric(loss)
    single = velocity.ndim == 1
    v = velocity[None] if single else velocity
    if v.ndim != 2 or v.shape[1] != theta.numel() or theta.ndim != 1:
        raise RashomonError(
            f"velocity must be [P] or [K, P] with P = theta.numel() = {theta.numel()}, "
            f"got {tuple(velocity.shape)}; flatten the parameters first"
        )
    if not t > 0:
        raise RashomonError(f"t must be positive, got {t}; flip the velocity for negative times")
    v = v.to(device=theta.device, dtype=theta.dtype)
    k_rows, p = v.shape
    # γ_v(t) = γ_{t·v}(1): integrate every geodesic over [0, 1].
    v = v * t
    points = theta[None].expand(k_rows, p) + v
    status = torch.full((k_rows,), SUCCESS, dtype=torch.int64, device=theta.device)
    nfev = torch.zeros(k_rows, dtype=torch.int64, device=theta.device)
    steps = torch.zeros_like(nfev)
    tries = torch.zeros_like(nfev)
    seconds = 0.0

    warm = bool(getattr(metric, "warm_start", False))
    if warm:
        metric.reset()

    def solve(
        y0: torch.Tensor, rows_data: list[torch.Tensor], ids: torch.Tensor, **kw
    ) -> BatchSolution:
        def rhs(state: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
            position, speed = state[:, :p], state[:, p:]
            d = [x[active] for x in rows_data]
            if warm:  # a metric that reuses each geodesic's last solve needs its identity
                accel = metric.acceleration(position, speed, d, ids=ids[active])
            else:
                accel = metric.acceleration(position, speed, d)
            return torch.cat([speed, accel], dim=1)

        left = None if max_seconds is None else max(0.0, max_seconds - seconds)
        return solve_batched(
            rhs, y0, 1.0, rtol=rtol, atol=atol, max_nfev=max_nfev, max_seconds=left, **kw
        )

    solve_rows = torch.nonzero(v.norm(dim=1) >= MIN_VELOCITY_NORM).flatten()
    chunk = batch_size or max(1, solve_rows.numel())
    points = points.clone()
    for start in range(0, solve_rows.numel(), chunk):
        rows = solve_rows[start : start + chunk]
        chunk_data = [d[rows] for d in data]
        sol = solve(
            torch.cat([theta[None].expand(rows.numel(), p), v[rows]], dim=1), chunk_data, rows
        )
        seconds += sol.seconds
        state, st, nf, stp = sol.y, sol.status, sol.nfev, sol.steps
        reached, h_max = sol.t, sol.h_max
        used = torch.zeros_like(nf)
        for _ in range(max(0, int(retries))):
            redo = torch.nonzero(torch.isin(st, RETRYABLE.to(st.device))).flatten()
            if redo.numel() == 0 or (max_seconds is not None and seconds >= max_seconds):
                break
            # Resume from the last accepted point: that part of the curve passed error control.
            largest = torch.where(h_max[redo] > 0, h_max[redo], 1e-2 * (1.0 - reached[redo]))
            again = solve(
                state[redo],
                [d[redo] for d in chunk_data],
                rows[redo],
                t0=reached[redo],
                first_step=0.1 * largest,
                max_step=largest,
            )
            seconds += again.seconds
            state[redo], st[redo] = again.y, again.status
            nf[redo] += again.nfev
            stp[redo] += again.steps
            reached[redo] = again.t
            # a retry that accepted no step hands the next one a tenth of its step again
            h_max[redo] = torch.where(again.h_max > 0, again.h_max, 0.1 * largest)
            used[redo] += 1
        end = state[:, :p].clone()
        end[st != SUCCESS] = torch.nan
        points[rows] = end
        status[rows], nfev[rows], steps[rows], tries[rows] = st, nf, stp, used

    ok = status == SUCCESS
    counts = {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()}
    info = GeodesicInfo(ok, status, nfev, steps, seconds, counts, tries)
    if not return_info and info.failed:
        warnings.warn(
            f"{info.failed} of {k_rows} geodesics failed ({counts}); their end points are NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    out = points[0] if single else points
    return (out, info) if return_info else out


# ---------------------------------------------------------------------------------------------
# Riemannian Laplace posterior over a trained classifier
# ---------------------------------------------------------------------------------------------
SUBSETS = ("last_layer", "all")
METRICS = ("monge", "fisher")
FEATURE_CHUNK = 512  # images per forward when caching the body's features


class RiemannianPosterior:
    """A fitted Euclidean Laplace posterior plus the loss whose geodesics carry its samples.

    `sample(M, seed)` draws v ~ N(0, Σ) from the Laplace posterior, maps each through
    Exp_θ*(v) as one batched solve, drops failed geodesics and returns a ModelSet
    (source "riemannian"; kind "glm" when linearized over all weights, else "nn").
    """

    def __init__(
        self,
        laplace_posterior,
        loss: FlatLoss,
        *,
        subset: str,
        linearized: bool,
        theta_star: torch.Tensor,
        n_train: int,
        batch_size: int | None,
        rtol: float,
        atol: float,
        max_nfev: int,
        geodesic_batch: int | None,
        metric: GeodesicMetric,
        device: torch.device,
        meta: dict,
        cpu_threads: int | None = 1,
        retries: int = RETRIES,
    ):
        self.laplace = laplace_posterior
        self.retries = int(retries)
        self.loss = loss
        self.subset = subset
        self.linearized = linearized
        self.theta_star = theta_star
        self.n_train = n_train
        self.batch_size = batch_size
        self.rtol, self.atol, self.max_nfev = rtol, atol, max_nfev
        self.geodesic_batch = geodesic_batch
        self.metric = metric
        self.device = device
        self.cpu_threads = cpu_threads
        self.meta = dict(meta)
        self.last_info: GeodesicInfo | None = None

    @property
    def param_names(self) -> list[str]:
        return self.laplace.param_names

    @property
    def kind(self) -> str:
        # The network is linear in its head: linearizing the last layer changes nothing.
        return "glm" if self.linearized and self.subset != "last_layer" else "nn"

    def velocities(self, n: int, seed: int = 0) -> torch.Tensor:
        """v ~ N(0, Σ) of the Euclidean Laplace posterior, [n, P] float32 on the CPU."""
        return self.laplace.sample_deviations(n, seed)

    def end_points(
        self, velocities: torch.Tensor, seed: int = 0, max_seconds: float | None = None
    ) -> tuple[torch.Tensor, GeodesicInfo]:
        """Exp_θ*(v) for each row of `velocities`, with the solve report (failed rows NaN)."""
        v = velocities.to(self.device, torch.float32)
        data: list[torch.Tensor] = []
        if self.batch_size is not None:
            # One fixed mini-batch per geodesic, drawn from the seed (reproducible samples).
            gen = torch.Generator().manual_seed(int(seed) + 1)
            index = torch.stack(
                [torch.randperm(self.n_train, generator=gen)[: self.batch_size] for _ in v]
            )
            data = [index.to(self.device)]
        points, info = exp_map(
            None,
            self.theta_star,
            v,
            rtol=self.rtol,
            atol=self.atol,
            metric=self.metric,
            data=data,
            max_nfev=self.max_nfev,
            batch_size=self.geodesic_batch,
            return_info=True,
            cpu_threads=self.cpu_threads,
            max_seconds=max_seconds,
            retries=self.retries,
        )
        return points, info

    def sample(self, n: int, seed: int = 0, kind: str | None = None):
        """A ModelSet of the geodesic end points of n Laplace velocities (failed ones dropped)."""
        if kind is not None and kind != self.kind:
            raise RashomonError(
                f"a {'linearized' if self.linearized else 'exact'} Riemannian set over "
                f"{self.subset} has kind {self.kind!r}, not {kind!r}; "
                f"use {'--exact' if self.linearized else '--linearized'} to change it"
            )
        v = self.velocities(n, seed)
        points, info = self.end_points(v, seed)
        self.last_info = info
        keep = info.ok.cpu()
        if not bool(keep.any()):
            raise RashomonError(
                f"all {n} geodesics failed ({info.counts}); raise max_nfev, loosen rtol/atol, "
                "or use linearized=True"
            )
        nfev = info.nfev.cpu()
        meta = {
            **{k: v for k, v in self.meta.items() if k != "source"},
            "seed": seed,
            "requested": n,
            "failed": info.failed,
            "status_counts": info.counts,
            "retried": info.retried,
            "recovered": info.recovered,
            "solve_seconds": round(info.seconds, 3),
            "nfev_mean": float(nfev.float().mean()),
            "nfev_max": int(nfev.max()),
            "nfev": nfev[keep].tolist(),
        }
        return self.laplace.to_set(
            points[keep].detach().cpu(), kind=self.kind, source="riemannian", **meta
        )


def _refine_head(
    net,
    feats: torch.Tensor,
    y: torch.Tensor,
    tau: float,
    mu: torch.Tensor | None,
    scale: float,
    max_iter: int,
) -> dict:
    """Move `net.head` (in place) to the minimiser of scale·Σ CE(head(feats), y) + (τ/2)‖θ − μ‖²
    by full-batch L-BFGS in float64; returns ‖∇L‖ and L before and after."""
    import copy

    head64 = copy.deepcopy(net.head).double()
    view = ParameterView(head64)
    mu64 = mu.double() if mu is not None else None
    loss = flat_loss(view, feats.double(), y, tau, data_scale=scale, prior_mean=mu64)
    theta = view.flatten().clone()

    def value_and_grad_norm(t: torch.Tensor) -> tuple[float, float]:
        t = t.detach().requires_grad_(True)
        value = loss(t)
        (g,) = torch.autograd.grad(value, t)
        return float(value.detach()), float(g.norm())

    before = value_and_grad_norm(theta)
    start = time.perf_counter()
    theta, iterations = minimize_flat(loss, theta, max_iter=max_iter)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        offset = 0
        for p in net.head.parameters():  # the flat layout of ParameterView(head)
            n = p.numel()
            p.copy_(theta.detach()[offset : offset + n].view_as(p).to(p.dtype))
            offset += n
    after = value_and_grad_norm(theta)
    # What the geodesics see: the head rounded back to its own dtype.
    after_rounded = value_and_grad_norm(
        torch.cat([p.detach().double().flatten() for p in net.head.parameters()])
    )
    return {
        "loss_before": before[0],
        "grad_norm_before": before[1],
        "loss_after": after[0],
        "grad_norm_after": after[1],
        "grad_norm_after_rounded": after_rounded[1],
        "step_norm": float((theta.detach() - view.flatten()).norm()),
        "iterations": iterations,
        "seconds": round(seconds, 3),
    }


def riemannian(
    model,
    task,
    subset: str = "last_layer",
    linearized: bool = False,
    hessian: str = "kron",
    prior: str | float = "marglik",
    batch_size: int | None = None,
    device: str | None = None,
    *,
    temperature: float = 1.0,
    rtol: float = RTOL,
    atol: float = ATOL,
    max_nfev: int = 20_000,
    geodesic_batch: int | None = None,
    metric: str = "monge",
    max_memory: str | int | None = None,
    seed: int = 0,
    cpu_threads: int | None = 1,
    closed_form: bool = True,
    refine_map: bool = False,
    refine_max_iter: int = 500,
    retries: int = RETRIES,
    cg_tol: float = CG_TOL,
    cg_max_iter: int = CG_MAX_ITER,
    cg_preconditioner: str | None = "auto",
) -> RiemannianPosterior:
    """Riemannian Laplace posterior of `model` (a Classifier with a `head`) on `task.train`.

    Fits `rs.laplace(model, task, subset, hessian, prior)` for the velocities, then builds the
    negative log posterior L(θ) = (N/B)/T · Σ_batch CE + (τ/2)‖θ − μ‖² over the same parameters
    with the fitted prior precision τ, prior mean μ and temperature T.

    subset: "last_layer" (the body's penultimate features are computed once and cached; each
    evaluation is a K-head matrix product) or "all" (every geodesic evaluation runs the
    network, batched over geodesics). batch_size None: the whole training set per evaluation;
    an int B: one fixed random mini-batch of B points per geodesic, data term scaled by N/B.
    linearized: follow the loss of f(x; θ*) + J(x)(θ − θ*) (identical to exact for last_layer).
    geodesic_batch caps the geodesics solved together (memory); None solves all at once.
    cpu_threads: torch threads during CPU solves (see `exp_map`); None keeps torch's setting.
    closed_form: where the varied parameters form an MLP (always true for the last layer: one
    `nn.Linear` on cached features) and the loss is softmax cross-entropy (not multilabel),
    evaluate the geodesic right-hand side in closed form (`MLPMongeMetric`, or
    `LinearizedMLPMongeMetric` for the linearized loss: autograd's values to rounding, several
    times cheaper); False forces the autograd `MongeMetric`.
    refine_map (last_layer only): the trained head is rarely a stationary point of L (trained on
    a mean loss, another weight decay, early stopping), so ∇L(θ*) ≠ 0 and geodesics partly
    descend. With refine_map, after a first Laplace fit gives τ, the head is moved to the
    minimiser of L (full-batch L-BFGS in float64 on the cached features, at most
    `refine_max_iter` iterations), and the Laplace approximation is refitted there with τ fixed;
    velocities and geodesics then start from a stationary θ*. `meta["refine"]` records ‖∇L‖ and
    L before and after.
    metric: "monge" (g = I + ∇L∇Lᵀ, Bergamin et al. 2023) or "fisher" (G = F + diag(τ), the
    Fisher of the likelihood plus the prior precision, Yu et al. 2024; `rashomon.sets.fisher`):
    G⁻¹q by conjugate gradients (relative residual `cg_tol`, at most `cg_max_iter` iterations);
    closed form for the last layer and MLPs, torch.func products otherwise; softmax
    likelihoods only (not multilabel). cg_preconditioner "laplace": the Laplace covariance
    Σ ≈ G(θ*)⁻¹ (10 iterations per evaluation on PneumoniaMNIST's head); None: plain CG; "auto"
    (default): "laplace" for the last layer, None over all weights, where the geodesics move far
    enough for G(θ) to leave G(θ*) behind (on banana Σ-preconditioned CG needed 500–2,900
    iterations 10–100 % of the way along a geodesic, plain CG 40–160).
    retries: resumes of a failed geodesic, each with a fresh `max_nfev` and a tighter step,
    before it is dropped (`exp_map`); `meta["retried"]` / `meta["recovered"]` count them.
    """
    from rashomon.sets.laplace import laplace as fit_laplace

    if subset not in SUBSETS:
        raise RashomonError(f"unknown subset {subset!r} for riemannian; choose one of {SUBSETS}")
    if metric not in METRICS:
        raise RashomonError(f"unknown metric {metric!r}; choose one of {METRICS}")
    n_train = len(task.train.y)
    if batch_size is not None and not 0 < int(batch_size) <= n_train:
        raise RashomonError(
            f"batch_size must be in [1, {n_train}] (the training set size), got {batch_size}"
        )
    if not (rtol > 0 and atol > 0 and max_nfev > 0):
        raise RashomonError("rtol, atol and max_nfev must be positive")
    if cg_preconditioner not in ("auto", "laplace", None):
        raise RashomonError(
            f"unknown cg_preconditioner {cg_preconditioner!r}; choose 'auto', 'laplace' or None"
        )
    if metric == "fisher" and task.kind == "multilabel":
        raise RashomonError(
            "metric='fisher' covers softmax likelihoods (binary, multiclass); use metric='monge' "
            "for multilabel tasks"
        )
    if refine_map and subset != "last_layer":
        raise RashomonError(
            "refine_map is offered for subset='last_layer' (L-BFGS over the head on cached "
            "features); over all weights train the MAP model on L instead"
        )
    post = fit_laplace(
        model,
        task,
        subset=subset,
        hessian=hessian,
        prior=prior,
        temperature=temperature,
        device=device,
        max_memory=max_memory,
        seed=seed,
    )
    net = post.model  # the Laplace fit's copy, on its device
    dev = next(net.parameters()).device
    theta_star = post.mean.to(dev)
    la = post.la
    tau = la.prior_precision_diag.detach().float().to(dev)
    mu = la.prior_mean
    mu = mu.detach().float().to(dev) if torch.is_tensor(mu) and mu.numel() > 1 else None
    if post.columns is not None:  # subnetwork posteriors are not offered here
        raise RashomonError("riemannian supports subset last_layer or all")
    y = task.train.y.to(dev)
    refine: dict | None = None
    if refine_map:
        if tau.numel() > 1 and not bool((tau == tau[0]).all()):
            raise RashomonError("refine_map needs a scalar prior precision")
        tau_value = float(tau.flatten()[0])
        feats = model_features(net, task.train.x, dev, batch=FEATURE_CHUNK)
        scale0 = 1.0 / float(temperature)
        refine = _refine_head(net, feats, y, tau_value, mu, scale0, refine_max_iter)
        post = fit_laplace(
            net,
            task,
            subset=subset,
            hessian=hessian,
            prior=tau_value,
            temperature=temperature,
            device=device,
            max_memory=max_memory,
            seed=seed,
        )
        net = post.model
        theta_star = post.mean.to(dev)
        la = post.la
        tau = la.prior_precision_diag.detach().float().to(dev)
    if subset == "last_layer":
        x = model_features(net, task.train.x, dev, batch=FEATURE_CHUNK)
        view = ParameterView(net.head)
    else:
        x = task.train.x.to(dev)
        view = ParameterView(net, post.param_names)
    scale = (n_train / batch_size if batch_size else 1.0) / float(temperature)
    loss = flat_loss(
        view,
        x,
        y,
        tau if tau.numel() > 1 else float(tau),
        kind=task.kind,
        data_scale=scale,
        prior_mean=mu,
        theta_star=theta_star if (linearized and subset != "last_layer") else None,
        per_geodesic_batches=batch_size is not None,
    )
    use_closed_form = (
        closed_form
        and task.kind != "multilabel"  # binary and multiclass heads both use softmax CE
        and MLPMongeMetric.supports(view.module, view.names)
    )
    tau_arg = tau if tau.numel() > 1 else float(tau)
    per_geodesic = batch_size is not None
    if metric == "fisher":
        geodesic_metric: GeodesicMetric = _fisher_metric(
            post,
            view,
            x,
            tau_arg,
            scale,
            theta_star if (linearized and subset != "last_layer") else None,
            per_geodesic,
            use_closed_form and not (linearized and subset != "last_layer"),
            cg_tol,
            cg_max_iter,
            cg_preconditioner == "laplace"
            or (cg_preconditioner == "auto" and subset == "last_layer"),
        )
        use_closed_form = isinstance(geodesic_metric, MLPFisherMetric)
    elif use_closed_form and linearized and subset != "last_layer":
        geodesic_metric = LinearizedMLPMongeMetric(
            view.module,
            x,
            y,
            theta_star,
            tau_arg,
            data_scale=scale,
            prior_mean=mu,
            per_geodesic_batches=per_geodesic,
        )
    elif use_closed_form:
        geodesic_metric = MLPMongeMetric(
            view.module,
            x,
            y,
            tau_arg,
            data_scale=scale,
            prior_mean=mu,
            per_geodesic_batches=per_geodesic,
        )
    else:
        geodesic_metric = MongeMetric(loss)
    meta = {
        **post.meta,
        "source": "riemannian",
        "metric": metric,
        "right_hand_side": "closed_form" if use_closed_form else "autograd",
        "linearized": bool(linearized),
        "batch_size": batch_size,
        "data_scale": scale,
        "rtol": rtol,
        "atol": atol,
        "max_nfev": max_nfev,
        "retries": int(retries),
        "cg_preconditioner": cg_preconditioner if metric == "fisher" else None,
        "refine": refine,
    }
    return RiemannianPosterior(
        post,
        loss,
        subset=subset,
        linearized=bool(linearized),
        theta_star=theta_star,
        n_train=n_train,
        batch_size=batch_size,
        rtol=rtol,
        atol=atol,
        max_nfev=max_nfev,
        geodesic_batch=geodesic_batch,
        metric=geodesic_metric,
        device=dev,
        meta=meta,
        cpu_threads=cpu_threads,
        retries=retries,
    )


def _covariance_operator(post) -> Operator | None:
    """u ↦ Σu for the Laplace posterior's covariance (rows of u [R, P]), the natural
    preconditioner of the Fisher metric: Σ⁻¹ is the GGN at θ* plus the prior, i.e. G(θ*) up to
    the Hessian structure (exact for "full", Kronecker-factored for "kron")."""
    la = post.la
    if post.hessian == "full":
        cov = la.posterior_covariance.detach()
        return lambda u: u @ cov.to(u.dtype)
    if post.hessian == "kron":
        precision = la.posterior_precision
        return lambda u: precision._bmm(u[:, None].to(la.mean.dtype), exponent=-1)[:, 0].to(u.dtype)
    if post.hessian == "diag":
        var = la.posterior_variance.detach()
        return lambda u: u * var.to(u.dtype)
    return None


def _fisher_metric(
    post,
    view: ParameterView,
    x: torch.Tensor,
    tau: float | torch.Tensor,
    scale: float,
    theta_star: torch.Tensor | None,
    per_geodesic: bool,
    closed_form: bool,
    cg_tol: float,
    cg_max_iter: int,
    precondition: bool,
) -> GeodesicMetric:
    """The Fisher metric over `view`'s parameters: closed form for an MLP (the last layer on
    cached features included), torch.func products otherwise (linearized: the logits of
    f(x; θ*) + J(x)(θ − θ*), whose f̈ vanishes)."""
    kw = {
        "data_scale": scale,
        "preconditioner": _covariance_operator(post) if precondition else None,
        "cg_tol": cg_tol,
        "cg_max_iter": cg_max_iter,
    }
    if closed_form:
        return MLPFisherMetric(view.module, x, tau, per_geodesic_batches=per_geodesic, **kw)

    def net(theta: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        if theta_star is None:
            return view.forward(theta, xb)
        f_star, jv = torch.func.jvp(
            lambda q: view.forward(q, xb), (theta_star,), (theta - theta_star,)
        )
        return f_star + jv

    if per_geodesic:

        def logits(theta: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return net(theta, x[index])

    else:

        def logits(theta: torch.Tensor) -> torch.Tensor:
            return net(theta, x)

    return FisherMetric(logits, tau, **kw)
