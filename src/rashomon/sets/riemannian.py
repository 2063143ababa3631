"""Riemannian Laplace sampling (Bergamin et al., NeurIPS 2023).

A sample is θ = Exp_θ*(v): draw v from the Euclidean Laplace posterior's Gaussian N(0, Σ) and
follow the geodesic of the metric g(θ) = I + ∇L(θ)∇L(θ)ᵀ from the MAP weights θ* with initial
velocity v up to t = 1. L is the negative log posterior (summed data term + Gaussian prior).

`exp_map` solves K geodesics as one batch with a Dormand–Prince 5(4) solver that keeps a step size
per geodesic (`rashomon.ode`). A geodesic that fails (evaluation budget, step collapse, NaN) is
reported in the returned info and its end point set to NaN: callers drop it.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

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
    is_warm,
)
from rashomon.sets.subspace import (
    LinearizedSubspace,
    LinearModelFisherMetric,
    LinearModelMongeMetric,
)

MIN_VELOCITY_NORM = 1e-5  # below this the geodesic is the straight line to solver precision
RETRIES = 1  # resumes of a failed geodesic before it is dropped (see exp_map)
NFEV_BUDGET = 20_000  # default max_nfev: right-hand-side evaluations per geodesic and attempt
# Default error control: the reference's tolerances, measured per component against the size of
# each geodesic (ERROR_SCALES, ERROR_NORMS; docs/riemannian.md, "Tolerances").
RTOL, ATOL = 1e-6, 1e-3
ERROR_SCALE, ERROR_NORM = "velocity", "max"
ERROR_SCALES = ("velocity", "absolute")
ERROR_NORMS = ("max", "rms")
RETRYABLE = torch.tensor([MAX_NFEV, NON_FINITE, STEP_TOO_SMALL])


@dataclass(frozen=True)
class GeodesicSolver:
    """How the geodesics are integrated (`rashomon.ode.solve_batched`) and what a failure costs.

    Error control: each component i of the state (θ, θ̇) of geodesic k must have a local error
    below atol·s_k + rtol·|y_i|, combined over components by `error_norm` ("max": the largest,
    as MATLAB's ode45; "rms": scipy's root mean square). `error_scale` "velocity" sets
    s_k = ‖v_k‖/√P, the RMS of the geodesic's own initial velocity (the size of one unit-time
    step), so atol is a fraction of each geodesic's size whatever the scale of the weights;
    "absolute" sets s_k = 1 (scipy's and the reference's rule).
    `max_nfev` caps the evaluations of one attempt; a failed geodesic is resumed `retries`
    times (`exp_map`). `geodesic_batch` caps the geodesics solved together (memory; None: all).
    `cpu_threads`: torch intra-op threads during CPU solves (None keeps torch's setting).
    """

    rtol: float = RTOL
    atol: float = ATOL
    error_scale: str = ERROR_SCALE
    error_norm: str = ERROR_NORM
    max_nfev: int = NFEV_BUDGET
    retries: int = RETRIES
    geodesic_batch: int | None = None
    cpu_threads: int | None = 1

    def __post_init__(self) -> None:
        if not (self.rtol > 0 and self.atol > 0 and self.max_nfev > 0):
            raise RashomonError("rtol, atol and max_nfev must be positive")
        if self.error_scale not in ERROR_SCALES:
            raise RashomonError(
                f"unknown error_scale {self.error_scale!r}; choose one of {ERROR_SCALES}"
            )
        if self.error_norm not in ERROR_NORMS:
            raise RashomonError(
                f"unknown error_norm {self.error_norm!r}; choose one of {ERROR_NORMS}"
            )
        if self.retries < 0:
            raise RashomonError(f"retries must be ≥ 0, got {self.retries}")
        if self.geodesic_batch is not None and self.geodesic_batch < 1:
            raise RashomonError(f"geodesic_batch must be ≥ 1 or None, got {self.geodesic_batch}")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The solver's setting names."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def with_options(self, **options) -> GeodesicSolver:
        """A copy with some settings changed; `batch_size` is `exp_map`'s older name for
        `geodesic_batch`."""
        if "batch_size" in options:
            options["geodesic_batch"] = options.pop("batch_size")
        unknown = sorted(set(options) - set(self.fields()))
        if unknown:
            raise RashomonError(
                f"unknown solver setting(s) {unknown}; choose from {list(self.fields())}"
            )
        return dataclasses.replace(self, **options) if options else self

    def absolute_tolerance(self, velocity: torch.Tensor) -> float | torch.Tensor:
        """atol for each geodesic of velocities [K, P]: a float, or [K, 1] per geodesic."""
        if self.error_scale == "absolute":
            return self.atol
        return self.atol * velocity.pow(2).mean(dim=1, keepdim=True).sqrt()

    def as_meta(self) -> dict:
        """The error-control settings a set records in its meta."""
        keys = ("rtol", "atol", "error_scale", "error_norm", "max_nfev", "retries")
        return {k: getattr(self, k) for k in keys}


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
        """Number of geodesics that failed."""
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
    *,
    metric: GeodesicMetric | None = None,
    data: Sequence[torch.Tensor] = (),
    solver: GeodesicSolver | None = None,
    return_info: bool = False,
    max_seconds: float | None = None,
    **solver_settings,
) -> torch.Tensor | tuple[torch.Tensor, GeodesicInfo]:
    """End points of the geodesics leaving `theta` [P] with `velocity` [P] or [K, P] at time t.

    `loss(theta [P], *data_k)` is a scalar (torch.func-transformable); the metric defaults to
    `MongeMetric(loss)`. `data` holds per-geodesic tensors [K, ...] handed to the loss (e.g. the
    index of each geodesic's mini-batch). Velocities with norm < 1e-5 return θ + t·v unsolved.
    `solver` (a `GeodesicSolver`, default its defaults) says how to integrate; single settings
    can be passed as keywords too (`rtol=`, `atol=`, `max_nfev=`, `retries=`, `cpu_threads=`,
    `batch_size=` for `geodesic_batch`, ...), which override the solver's.
    Failed geodesics come back as NaN rows; `return_info=True` also returns a `GeodesicInfo`.
    `max_seconds` bounds the wall-clock time of all solves together (unfinished geodesics stop
    with status "timeout").
    A geodesic that fails (evaluation budget, step collapse, non-finite values) is resumed up to
    `retries` times from its last accepted point, each time with a fresh `max_nfev` budget, a
    first step a tenth of its largest accepted one and steps capped at that largest one; only
    then is it dropped. `GeodesicInfo.retries` says how many retries each one needed.
    Device and dtype follow `theta`. On the CPU the solve runs with `cpu_threads` intra-op
    threads (restored afterwards): a right-hand side is many tiny ops, and on a busy 2-core
    machine each op's thread barrier made a call 100× slower (0.2 s against 1.2 ms with one
    thread, measured on a small head). Subnormal floats are flushed to zero meanwhile.
    """
    solver = (solver or GeodesicSolver()).with_options(**solver_settings)
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
    # γ_v(t) = γ_{t·v}(1): integrate every geodesic over [0, 1].
    v = v.to(device=theta.device, dtype=theta.dtype) * t
    with _cpu_solve(theta.device, solver.cpu_threads):
        points, info = _integrate(metric, theta, v, list(data), solver, max_seconds)
    if not return_info and info.failed:
        warnings.warn(
            f"{info.failed} of {len(v)} geodesics failed ({info.counts}); their end points are NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    out = points[0] if single else points
    return (out, info) if return_info else out


@contextmanager
def _cpu_solve(device: torch.device, threads: int | None):
    """One intra-op thread (or `threads`) and subnormals flushed to zero during a CPU solve."""
    if threads is None or device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    # Saturated tanh units and tiny softmax tails produce subnormal floats; on x86 CPUs each
    # operation on them is ~15× slower (measured: 1.2 ms against 81 µs for one product of 212K
    # floats). Flushing them to zero changes values below 1e-38 only.
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        torch.set_flush_denormal(False)


def _integrate(
    metric: GeodesicMetric,
    theta: torch.Tensor,
    v: torch.Tensor,
    data: list[torch.Tensor],
    solver: GeodesicSolver,
    max_seconds: float | None,
) -> tuple[torch.Tensor, GeodesicInfo]:
    """Solve the geodesics of velocities v [K, P] in chunks of `solver.geodesic_batch`, each
    failed one resumed up to `solver.retries` times; failed rows come back NaN."""
    k_rows, p = v.shape
    points = (theta[None].expand(k_rows, p) + v).clone()
    status = torch.full((k_rows,), SUCCESS, dtype=torch.int64, device=theta.device)
    nfev = torch.zeros(k_rows, dtype=torch.int64, device=theta.device)
    steps, tries = torch.zeros_like(nfev), torch.zeros_like(nfev)
    if is_warm(metric):
        metric.reset()
    clock = _Budget(max_seconds)
    solve_rows = torch.nonzero(v.norm(dim=1) >= MIN_VELOCITY_NORM).flatten()
    chunk = solver.geodesic_batch or max(1, solve_rows.numel())
    for start in range(0, solve_rows.numel(), chunk):
        rows = solve_rows[start : start + chunk]
        run = _Chunk(metric, theta, v[rows], [d[rows] for d in data], rows, solver)
        sol = run.solve(clock)
        end = sol.y[:, :p].clone()
        end[sol.status != SUCCESS] = torch.nan
        points[rows] = end
        status[rows], nfev[rows], steps[rows], tries[rows] = (
            sol.status,
            sol.nfev,
            sol.steps,
            run.tries,
        )
    counts = {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()}
    info = GeodesicInfo(status == SUCCESS, status, nfev, steps, clock.used, counts, tries)
    return points, info


class _Budget:
    """Wall-clock seconds spent by the solves of one `exp_map` call, against an optional cap."""

    def __init__(self, max_seconds: float | None):
        self.max_seconds, self.used = max_seconds, 0.0

    def left(self) -> float | None:
        return None if self.max_seconds is None else max(0.0, self.max_seconds - self.used)

    def spent(self) -> bool:
        return self.max_seconds is not None and self.used >= self.max_seconds


class _Chunk:
    """The geodesics of one solve: their right-hand side, tolerances, and the retry of failures."""

    def __init__(
        self,
        metric: GeodesicMetric,
        theta: torch.Tensor,
        v: torch.Tensor,
        data: list[torch.Tensor],
        ids: torch.Tensor,
        solver: GeodesicSolver,
    ):
        self.metric, self.data, self.ids, self.solver = metric, data, ids, solver
        self.p = v.shape[1]
        self.y0 = torch.cat([theta[None].expand(len(v), self.p), v], dim=1)
        atol = solver.absolute_tolerance(v)
        self.atol = atol
        self.tries = torch.zeros(len(v), dtype=torch.int64, device=v.device)

    def _rhs(self, subset: torch.Tensor):
        data = [d[subset] for d in self.data]
        ids = self.ids[subset]
        p = self.p

        def rhs(state: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
            position, speed = state[:, :p], state[:, p:]
            d = [x[active] for x in data]
            metric = self.metric
            if is_warm(metric):  # a metric reusing each geodesic's last solve needs its identity
                accel = metric.acceleration(position, speed, d, ids=ids[active])
            else:
                accel = metric.acceleration(position, speed, d)
            return torch.cat([speed, accel], dim=1)

        return rhs

    def _solve(self, subset: torch.Tensor, y0: torch.Tensor, clock: _Budget, **kw):
        atol = self.atol if isinstance(self.atol, float) else self.atol[subset]
        s = self.solver
        sol = solve_batched(
            self._rhs(subset),
            y0,
            1.0,
            rtol=s.rtol,
            atol=atol,
            error_norm=s.error_norm,
            max_nfev=s.max_nfev,
            max_seconds=clock.left(),
            **kw,
        )
        clock.used += sol.seconds
        return sol

    def solve(self, clock: _Budget) -> BatchSolution:
        everything = torch.arange(len(self.y0), device=self.y0.device)
        sol = self._solve(everything, self.y0, clock)
        for _ in range(self.solver.retries):
            redo = torch.nonzero(torch.isin(sol.status, RETRYABLE.to(sol.status.device)))
            redo = redo.flatten()
            if redo.numel() == 0 or clock.spent():
                break
            # Resume from the last accepted point: that part of the curve passed error control.
            largest = torch.where(sol.h_max[redo] > 0, sol.h_max[redo], 1e-2 * (1.0 - sol.t[redo]))
            again = self._solve(
                redo,
                sol.y[redo],
                clock,
                t0=sol.t[redo],
                first_step=0.1 * largest,
                max_step=largest,
            )
            sol.y[redo], sol.status[redo], sol.t[redo] = again.y, again.status, again.t
            sol.nfev[redo] += again.nfev
            sol.steps[redo] += again.steps
            # a retry that accepted no step hands the next one a tenth of its step again
            sol.h_max[redo] = torch.where(again.h_max > 0, again.h_max, 0.1 * largest)
            self.tries[redo] += 1
        return sol


# ---------------------------------------------------------------------------------------------
# Riemannian Laplace posterior over a trained classifier
# ---------------------------------------------------------------------------------------------
SUBSETS = ("last_layer", "all")
METRICS = ("monge", "fisher")
PRECONDITIONERS = ("auto", "laplace", None)
FEATURE_CHUNK = 512  # images per forward when caching the body's features
SUBSPACE_GROUP = 16  # geodesics reduced and solved together: each holds a [P, B·C + 2] basis


@dataclass(frozen=True)
class MetricOptions:
    """Which geodesic metric, and how its right-hand side is computed.

    metric: "monge" (g = I + ∇L∇Lᵀ, Bergamin et al. 2023) or "fisher" (G = F + diag(τ), the
    Fisher of the likelihood plus the prior precision, Yu et al. 2024; `rashomon.sets.fisher`).
    closed_form: where the varied parameters form an MLP (always for the last layer: one
    `nn.Linear` on cached features) and the loss is softmax cross-entropy, evaluate the
    right-hand side without autograd (autograd's values to rounding, several times cheaper);
    False forces autograd. Fisher only: G⁻¹q by conjugate gradients to a relative residual
    `cg_tol` in at most `cg_max_iter` iterations; `cg_preconditioner` "laplace" (the Laplace
    covariance Σ ≈ G(θ*)⁻¹: 10 iterations per evaluation on PneumoniaMNIST's head), None (plain
    CG) or "auto" ("laplace" for the last layer, None over all weights, where the geodesics move
    far enough for G(θ) to leave G(θ*) behind: on banana Σ-preconditioned CG needed 500–2,900
    iterations 10–100 % of the way along a geodesic, plain CG 40–160).
    subspace: linearized over all weights with one mini-batch per geodesic and one prior
    precision, solve each geodesic in the subspace it never leaves (`rashomon.sets.subspace`:
    the same end points, 2·(B·C + 2) instead of 2·P state dimensions); False solves in the full
    parameter space.
    """

    metric: str = "monge"
    closed_form: bool = True
    cg_tol: float = CG_TOL
    cg_max_iter: int = CG_MAX_ITER
    cg_preconditioner: str | None = "auto"
    subspace: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise RashomonError(f"unknown metric {self.metric!r}; choose one of {METRICS}")
        if self.cg_preconditioner not in PRECONDITIONERS:
            raise RashomonError(
                f"unknown cg_preconditioner {self.cg_preconditioner!r}; choose 'auto', "
                "'laplace' or None"
            )

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The problem's field names."""
        return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class GeodesicProblem:
    """What the geodesics of one posterior follow: the loss L, its metric, the start θ*, and
    the data each geodesic sees (all N training points, or one fixed mini-batch of B each)."""

    loss: FlatLoss
    metric: GeodesicMetric
    theta_star: torch.Tensor
    n_train: int
    batch_size: int | None
    data_scale: float
    right_hand_side: str  # "closed_form" | "autograd" | "subspace"
    # Linearized over all weights with mini-batches: each geodesic solved in its own subspace
    # (rashomon.sets.subspace) by `reduced_metric`; `metric` stays the full-space one.
    subspace: LinearizedSubspace | None = None
    reduced_metric: GeodesicMetric | None = None

    @property
    def device(self) -> torch.device:
        """The device θ* is on."""
        return self.theta_star.device

    def minibatches(self, k: int, seed: int) -> list[torch.Tensor]:
        """Per-geodesic data for `exp_map`: [K, B] indices of one fixed mini-batch per geodesic,
        drawn from the seed (reproducible samples); none for full-batch geodesics."""
        if self.batch_size is None:
            return []
        gen = torch.Generator().manual_seed(int(seed) + 1)
        index = torch.stack(
            [torch.randperm(self.n_train, generator=gen)[: self.batch_size] for _ in range(k)]
        )
        return [index.to(self.device)]


class RiemannianPosterior:
    """A fitted Euclidean Laplace posterior plus the loss whose geodesics carry its samples.

    `sample(M, seed)` draws v ~ N(0, Σ) from the Laplace posterior, maps each through
    Exp_θ*(v) as one batched solve, drops failed geodesics and returns a ModelSet
    (source "riemannian"; kind "glm" when linearized over all weights, else "nn").
    """

    def __init__(
        self,
        laplace_posterior,
        problem: GeodesicProblem,
        solver: GeodesicSolver,
        *,
        subset: str,
        linearized: bool,
        meta: dict,
    ):
        self.laplace = laplace_posterior
        self.problem = problem
        self.solver = solver
        self.subset = subset
        self.linearized = linearized
        self.meta = dict(meta)
        self.last_info: GeodesicInfo | None = None

    # What benchmarks and tests read off the posterior: the geodesics' loss, metric and start.
    @property
    def loss(self) -> FlatLoss:
        """The flat loss the geodesics follow."""
        return self.problem.loss

    @property
    def metric(self) -> GeodesicMetric:
        """The metric whose geodesics are solved."""
        return self.problem.metric

    @property
    def theta_star(self) -> torch.Tensor:
        """θ*, the MAP weights over the varied parameters."""
        return self.problem.theta_star

    @property
    def n_train(self) -> int:
        """Number of training samples in the loss."""
        return self.problem.n_train

    @property
    def batch_size(self) -> int | None:
        """The mini-batch per geodesic (None: the whole training set)."""
        return self.problem.batch_size

    @property
    def device(self) -> torch.device:
        """The device θ* is on."""
        return self.problem.device

    @property
    def param_names(self) -> list[str]:
        """The varied parameters' names."""
        return self.laplace.param_names

    @property
    def kind(self) -> str:
        """The set's kind: glm for a linearized set over more than the head, else nn."""
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
        data = self.problem.minibatches(len(v), seed)
        if self.problem.subspace is not None:
            return _subspace_end_points(
                self.problem, self.problem.subspace, v, data[0], self.solver, max_seconds
            )
        points, info = exp_map(
            None,
            self.theta_star,
            v,
            metric=self.metric,
            data=data,
            solver=self.solver,
            return_info=True,
            max_seconds=max_seconds,
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
        points, info = self.end_points(self.velocities(n, seed), seed)
        self.last_info = info
        return _assemble_set(self.laplace, points, info, self.kind, {**self.meta, "seed": seed})


def _subspace_end_points(
    problem: GeodesicProblem,
    subspace: LinearizedSubspace,
    v: torch.Tensor,
    index: torch.Tensor,
    solver: GeodesicSolver,
    max_seconds: float | None,
) -> tuple[torch.Tensor, GeodesicInfo]:
    """Exp_θ*(v) of linearized geodesics, each in its own subspace (rashomon.sets.subspace),
    in groups of `solver.geodesic_batch` (default SUBSPACE_GROUP: each holds a [P, D] basis).
    The seconds include building the subspaces (a Jacobian and a QR decomposition each)."""
    group = solver.geodesic_batch or SUBSPACE_GROUP
    inner = dataclasses.replace(solver, geodesic_batch=None)
    budget = _Budget(max_seconds)
    points = torch.empty_like(v)
    infos: list[GeodesicInfo] = []
    for start in range(0, len(v), group):
        rows = slice(start, start + group)
        began = time.perf_counter()
        with _cpu_solve(v.device, solver.cpu_threads):
            reduced = subspace.reduce(index[rows], v[rows])
        built = time.perf_counter() - began
        budget.used += built
        z, info = exp_map(
            None,
            torch.zeros(reduced["velocity"].shape[1], dtype=v.dtype, device=v.device),
            reduced["velocity"],
            metric=problem.reduced_metric,
            data=[reduced["design"], reduced["center"], reduced["f_star"], reduced["onehot"]],
            solver=inner,
            return_info=True,
            max_seconds=budget.left(),
        )
        budget.used += info.seconds
        info.seconds += built
        points[rows] = problem.theta_star + torch.bmm(reduced["basis"], z[:, :, None])[:, :, 0]
        infos.append(info)
    status = torch.cat([i.status for i in infos])
    counts = {name: int((status == code).sum()) for code, name in STATUS_NAMES.items()}
    info = GeodesicInfo(
        torch.cat([i.ok for i in infos]),
        status,
        torch.cat([i.nfev for i in infos]),
        torch.cat([i.steps for i in infos]),
        sum(i.seconds for i in infos),
        counts,
        # no retries recorded: none taken (as GeodesicInfo.retried reads it)
        torch.cat([torch.zeros_like(i.nfev) if i.retries is None else i.retries for i in infos]),
    )
    return points, info


def _assemble_set(laplace_posterior, points: torch.Tensor, info: GeodesicInfo, kind: str, meta):
    """The ModelSet of the geodesics that succeeded, with the solve report in its meta."""
    keep = info.ok.cpu()
    if not bool(keep.any()):
        raise RashomonError(
            f"all {len(keep)} geodesics failed ({info.counts}); raise max_nfev, loosen rtol/atol, "
            "or use linearized=True"
        )
    nfev = info.nfev.cpu()
    meta = {
        **{k: v for k, v in meta.items() if k != "source"},
        "requested": len(keep),
        "failed": info.failed,
        "status_counts": info.counts,
        "retried": info.retried,
        "recovered": info.recovered,
        "solve_seconds": round(info.seconds, 3),
        "nfev_mean": float(nfev.float().mean()),
        "nfev_max": int(nfev.max()),
        "nfev": nfev[keep].tolist(),
    }
    return laplace_posterior.to_set(
        points[keep].detach().cpu(), kind=kind, source="riemannian", **meta
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
    metric: str = "monge",
    max_memory: str | int | None = None,
    seed: int = 0,
    refine_map: bool = False,
    refine_max_iter: int = 500,
    solver: GeodesicSolver | None = None,
    **settings,
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
    metric: "monge" or "fisher" (`MetricOptions`).
    refine_map (last_layer only): the trained head is rarely a stationary point of L (trained on
    a mean loss, another weight decay, early stopping), so ∇L(θ*) ≠ 0 and geodesics partly
    descend. With refine_map, after a first Laplace fit gives τ, the head is moved to the
    minimiser of L (full-batch L-BFGS in float64 on the cached features, at most
    `refine_max_iter` iterations), and the Laplace approximation is refitted there with τ fixed;
    velocities and geodesics then start from a stationary θ*. `meta["refine"]` records ‖∇L‖ and
    L before and after.
    solver: a `GeodesicSolver` (tolerances, error control, evaluation budget, retries, geodesics
    per solve, CPU threads). `settings`: single fields of `GeodesicSolver` (rtol=, atol=,
    error_scale=, error_norm=, max_nfev=, retries=, geodesic_batch=, cpu_threads=) or of
    `MetricOptions` (closed_form=, cg_tol=, cg_max_iter=, cg_preconditioner=).
    """
    solver, options = _split_settings(solver, metric, settings)
    _check_request(task, subset, batch_size, refine_map, options)

    def fit(net, prior_value):
        from rashomon.sets.laplace import laplace as fit_laplace

        return fit_laplace(
            net,
            task,
            subset=subset,
            hessian=hessian,
            prior=prior_value,
            temperature=temperature,
            device=device,
            max_memory=max_memory,
            seed=seed,
        )

    post, refine = laplace_velocities(
        model, task, fit, prior, temperature, refine_map, refine_max_iter
    )
    problem = geodesic_problem(post, task, subset, linearized, batch_size, temperature, options)
    meta = {
        **post.meta,
        "source": "riemannian",
        "metric": options.metric,
        "right_hand_side": problem.right_hand_side,
        "linearized": bool(linearized),
        "batch_size": batch_size,
        "data_scale": problem.data_scale,
        **solver.as_meta(),
        "cg_preconditioner": options.cg_preconditioner if options.metric == "fisher" else None,
        "refine": refine,
    }
    return RiemannianPosterior(
        post, problem, solver, subset=subset, linearized=bool(linearized), meta=meta
    )


def _split_settings(
    solver: GeodesicSolver | None, metric: str, settings: dict
) -> tuple[GeodesicSolver, MetricOptions]:
    """Route `riemannian`'s loose keyword settings to the solver and the metric options."""
    solver_keys = set(GeodesicSolver.fields())
    metric_keys = set(MetricOptions.fields()) - {"metric"}
    unknown = sorted(set(settings) - solver_keys - metric_keys)
    if unknown:
        raise RashomonError(
            f"riemannian got unknown setting(s) {unknown}; solver settings are "
            f"{sorted(solver_keys)}, metric settings {sorted(metric_keys)}"
        )
    solver = (solver or GeodesicSolver()).with_options(
        **{k: v for k, v in settings.items() if k in solver_keys}
    )
    options = MetricOptions(
        metric=metric, **{k: v for k, v in settings.items() if k in metric_keys}
    )
    return solver, options


def _check_request(task, subset: str, batch_size, refine_map: bool, options: MetricOptions):
    """Refuse what `riemannian` cannot build, with the fix, before any fitting."""
    if subset not in SUBSETS:
        raise RashomonError(f"unknown subset {subset!r} for riemannian; choose one of {SUBSETS}")
    n_train = len(task.train.y)
    if batch_size is not None and not 0 < int(batch_size) <= n_train:
        raise RashomonError(
            f"batch_size must be in [1, {n_train}] (the training set size), got {batch_size}"
        )
    if options.metric == "fisher" and task.kind == "multilabel":
        raise RashomonError(
            "metric='fisher' covers softmax likelihoods (binary, multiclass); use metric='monge' "
            "for multilabel tasks"
        )
    if refine_map and subset != "last_layer":
        raise RashomonError(
            "refine_map is offered for subset='last_layer' (L-BFGS over the head on cached "
            "features); over all weights train the MAP model on L instead"
        )


def laplace_velocities(
    model,
    task,
    fit,
    prior: str | float,
    temperature: float,
    refine_map: bool,
    refine_max_iter: int,
) -> tuple:
    """The Euclidean Laplace posterior whose samples v ~ N(0, Σ) are the geodesics' velocities,
    fitted by `fit(model, prior)`; with `refine_map`, fitted once for τ, the head moved to the
    minimiser of L (`_refine_head`), and fitted again there with τ fixed. Returns the posterior
    and the refinement record (None without `refine_map`)."""
    post = fit(model, prior)
    if post.columns is not None:  # subnetwork posteriors are not offered here
        raise RashomonError("riemannian supports subset last_layer or all")
    if not refine_map:
        return post, None
    net = post.model  # the Laplace fit's copy, on its device
    dev = next(net.parameters()).device
    tau = _prior_precision(post, dev)
    if tau.numel() > 1 and not bool((tau == tau[0]).all()):
        raise RashomonError("refine_map needs a scalar prior precision")
    tau_value = float(tau.flatten()[0])
    feats = model_features(net, task.train.x, dev, batch=FEATURE_CHUNK)
    y = task.train.y.to(dev)
    refine = _refine_head(
        net, feats, y, tau_value, _prior_mean(post, dev), 1.0 / float(temperature), refine_max_iter
    )
    return fit(net, tau_value), refine


def _prior_precision(post, device: torch.device) -> torch.Tensor:
    return post.la.prior_precision_diag.detach().float().to(device)


def _prior_mean(post, device: torch.device) -> torch.Tensor | None:
    """The prior mean μ as a vector, or None for a zero (scalar) prior mean."""
    mu = post.la.prior_mean
    if torch.is_tensor(mu) and mu.numel() > 1:
        return mu.detach().float().to(device)
    return None


@dataclass(frozen=True)
class _LossParts:
    """The pieces of L(θ) = s · Σ CE(f(x; θ), y) + (τ/2)‖θ − μ‖² over `view`'s parameters."""

    view: ParameterView
    x: torch.Tensor  # training inputs (cached features for the last layer)
    y: torch.Tensor
    tau: float | torch.Tensor
    mu: torch.Tensor | None
    scale: float
    linearize_at: torch.Tensor | None  # θ* for the linearized network, else None
    per_geodesic: bool  # one mini-batch per geodesic

    def loss(self, kind: str) -> FlatLoss:
        return flat_loss(
            self.view,
            self.x,
            self.y,
            self.tau,
            kind=kind,
            data_scale=self.scale,
            prior_mean=self.mu,
            theta_star=self.linearize_at,
            per_geodesic_batches=self.per_geodesic,
        )


def geodesic_problem(
    post,
    task,
    subset: str,
    linearized: bool,
    batch_size: int | None,
    temperature: float,
    options: MetricOptions,
) -> GeodesicProblem:
    """The loss L of the Laplace posterior `post` over its parameters (the head on cached
    features, or the whole network) and the metric whose geodesics the samples follow."""
    net = post.model  # the Laplace fit's copy, on its device
    dev = next(net.parameters()).device
    theta_star = post.mean.to(dev)
    n_train = len(task.train.y)
    if subset == "last_layer":
        x = model_features(net, task.train.x, dev, batch=FEATURE_CHUNK)
        view = ParameterView(net.head)
    else:
        x = task.train.x.to(dev)
        view = ParameterView(net, post.param_names)
    tau = _prior_precision(post, dev)
    parts = _LossParts(
        view=view,
        x=x,
        y=task.train.y.to(dev),
        tau=tau if tau.numel() > 1 else float(tau),
        mu=_prior_mean(post, dev),
        scale=(n_train / batch_size if batch_size else 1.0) / float(temperature),
        linearize_at=theta_star if (linearized and subset != "last_layer") else None,
        per_geodesic=batch_size is not None,
    )
    loss = parts.loss(task.kind)
    closed_form = (
        options.closed_form
        and task.kind != "multilabel"  # binary and multiclass heads both use softmax CE
        and MLPMongeMetric.supports(view.module, view.names)
    )
    if options.metric == "fisher":
        precondition = options.cg_preconditioner == "laplace" or (
            options.cg_preconditioner == "auto" and subset == "last_layer"
        )
        metric = _fisher_metric(post, parts, options, closed_form, precondition)
        closed_form = isinstance(metric, MLPFisherMetric)
    else:
        metric = _monge_metric(parts, loss, closed_form)
    problem = GeodesicProblem(
        loss=loss,
        metric=metric,
        theta_star=theta_star,
        n_train=n_train,
        batch_size=batch_size,
        data_scale=parts.scale,
        right_hand_side="closed_form" if closed_form else "autograd",
    )
    if options.subspace and _subspace_applies(parts, task):
        problem = dataclasses.replace(
            problem,
            right_hand_side="subspace",
            subspace=LinearizedSubspace(
                view, parts.x, parts.y, theta_star, parts.mu, task.num_classes
            ),
            reduced_metric=(
                LinearModelFisherMetric if options.metric == "fisher" else LinearModelMongeMetric
            )(_scalar(parts.tau), parts.scale),
        )
    return problem


def _scalar(tau: float | torch.Tensor) -> float:
    return float(tau) if not torch.is_tensor(tau) else float(tau.flatten()[0])


def _subspace_applies(parts: _LossParts, task) -> bool:
    """Linearized network, one mini-batch per geodesic, a softmax likelihood and one prior
    precision for all weights: the geodesic stays in span(J, θ* − μ, v) (rashomon.sets.subspace)."""
    if parts.linearize_at is None or not parts.per_geodesic or task.kind == "multilabel":
        return False
    tau = parts.tau
    if torch.is_tensor(tau) and tau.numel() > 1 and not bool((tau == tau.flatten()[0]).all()):
        return False
    return True


def _monge_metric(parts: _LossParts, loss: FlatLoss, closed_form: bool) -> GeodesicMetric:
    """g = I + ∇L∇Lᵀ: closed form for MLPs (exact or linearized), autograd otherwise."""
    if not closed_form:
        return MongeMetric(loss)
    kw: dict[str, Any] = {
        "data_scale": parts.scale,
        "prior_mean": parts.mu,
        "per_geodesic_batches": parts.per_geodesic,
    }
    module = parts.view.module
    if parts.linearize_at is not None:
        return LinearizedMLPMongeMetric(
            module, parts.x, parts.y, parts.linearize_at, parts.tau, **kw
        )
    return MLPMongeMetric(module, parts.x, parts.y, parts.tau, **kw)


def _covariance_operator(post) -> Operator | None:
    """u ↦ Σu for the Laplace posterior's covariance (rows of u [R, P]), the natural
    preconditioner of the Fisher metric: Σ⁻¹ is the GGN at θ* plus the prior, i.e. G(θ*) up to
    the Hessian structure (exact for "full", Kronecker-factored for "kron")."""
    la = post.la
    if post.hessian == "full":
        cov = la.posterior_covariance.detach()
        return lambda u: u @ cov.to(u.dtype)
    if post.hessian == "kron":
        return _kron_inverse(la.posterior_precision)
    if post.hessian == "diag":
        var = la.posterior_variance.detach()
        return lambda u: u * var.to(u.dtype)
    return None


def _kron_inverse(precision) -> Operator:
    """u ↦ P⁻¹u for a Kronecker-factored precision (laplace-torch's `KronDecomposed`: per layer
    the eigendecompositions Q_A Λ_A Q_Aᵀ, Q_G Λ_G Q_Gᵀ and a prior term δ), rows of u [R, P].

    A layer's block is A ⊗ G + δI, so on its weight matrix U [in, out] (laplace-torch's layout of
    a flat parameter slice) P⁻¹ acts as Q_A ((Q_Aᵀ U Q_G) / (λ_A λ_Gᵀ + δ)) Q_Gᵀ; a layer with a
    single factor (a bias) as Q ((Qᵀu) / (λ + δ))."""
    blocks = []
    for values, vectors, delta in zip(
        precision.eigenvalues, precision.eigenvectors, precision.deltas, strict=True
    ):
        if len(values) == 1:
            inverse = 1.0 / (values[0] + delta)
        elif precision.damping:
            root = torch.sqrt(delta)
            inverse = 1.0 / torch.outer(values[0] + root, values[1] + root)
        else:
            inverse = 1.0 / (torch.outer(values[0], values[1]) + delta)
        blocks.append((tuple(v.detach() for v in vectors), inverse.detach()))

    def apply(u: torch.Tensor) -> torch.Tensor:
        dtype = blocks[0][1].dtype
        w = u.to(dtype)
        out, offset = [], 0
        for vectors, inverse in blocks:
            size = inverse.numel()
            part = w[:, offset : offset + size]
            offset += size
            if len(vectors) == 1:
                q = vectors[0]
                out.append(((part @ q) * inverse) @ q.T)
            else:
                qa, qg = vectors
                m = part.reshape(-1, *inverse.shape)
                m = (qa.T @ m @ qg) * inverse
                out.append((qa @ m @ qg.T).reshape(len(u), size))
        if offset != u.shape[1]:
            raise RashomonError(
                f"the Kronecker precision covers {offset} parameters, the velocities {u.shape[1]}"
            )
        return torch.cat(out, dim=1).to(u.dtype)

    return apply


def _fisher_metric(
    post, parts: _LossParts, options: MetricOptions, closed_form: bool, precondition: bool
) -> GeodesicMetric:
    """The Fisher metric over `parts.view`'s parameters: closed form for an MLP (the last layer
    on cached features included; not for the linearized network), torch.func products otherwise
    (linearized: the logits of f(x; θ*) + J(x)(θ − θ*), whose f̈ vanishes)."""
    kw: dict[str, Any] = {
        "data_scale": parts.scale,
        "preconditioner": _covariance_operator(post) if precondition else None,
        "cg_tol": options.cg_tol,
        "cg_max_iter": options.cg_max_iter,
    }
    view, x, theta_star = parts.view, parts.x, parts.linearize_at
    if closed_form and theta_star is None:
        return MLPFisherMetric(
            view.module, x, parts.tau, per_geodesic_batches=parts.per_geodesic, **kw
        )

    def net(theta: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        if theta_star is None:
            return view.forward(theta, xb)
        # jvp's stub types the has_aux=True triple too; without aux it returns a pair
        f_star, jv = torch.func.jvp(  # type: ignore[misc]
            lambda q: view.forward(q, xb), (theta_star,), (theta - theta_star,)
        )
        return f_star + jv

    if parts.per_geodesic:

        def logits_on_batch(theta: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return net(theta, x[index])

        return FisherMetric(logits_on_batch, parts.tau, **kw)

    def logits(theta: torch.Tensor) -> torch.Tensor:
        return net(theta, x)

    return FisherMetric(logits, parts.tau, **kw)
