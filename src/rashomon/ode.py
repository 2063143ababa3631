"""A batched Dormand–Prince 5(4) solver in torch with per-row step-size control.

Each row of the state is its own initial-value problem. Rows keep their own time, step size and
error control, and a row that reaches the end time leaves the batch, so a batch moves at the pace
of each of its rows, not of its hardest one (the failure mode of solvers that share one step size
across a batch of stiff geodesics). The right-hand side is called on the active rows only, with
their indices, so a caller can hand each row its own data (a mini-batch per geodesic).

Step control follows Hairer, Nørsett & Wanner (and scipy's RK45): RMS error norm scaled by
atol + rtol·max(|y|, |y_new|), safety 0.9, step factor in [0.2, 10], no growth right after a
rejection, initial step chosen from the local derivatives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Statuses of a row. Anything but SUCCESS means the row's end point must not be used.
SUCCESS = 0
MAX_NFEV = 1  # ran out of its function-evaluation budget (stiff or too long)
NON_FINITE = 2  # the state or its derivative became NaN / inf
STEP_TOO_SMALL = 3  # the step size collapsed below min_step (stiff)
TIMEOUT = 4  # still running when the solve's wall-clock budget ran out
RUNNING = -1
STATUS_NAMES = {
    SUCCESS: "success",
    MAX_NFEV: "max_nfev",
    NON_FINITE: "non_finite",
    STEP_TOO_SMALL: "step_too_small",
    TIMEOUT: "timeout",
}

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# Difference between the 5th-order solution and the embedded 4th-order one (7 stages, FSAL).
_E = (-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERR_EXPONENT = -1.0 / 5.0  # 1 / (error estimator order + 1)

# f(y_active [A, D], rows [A] int64) -> dy/dt [A, D]; autonomous systems only (geodesics are).
RightHandSide = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class BatchSolution:
    """End states of a batched solve and how each row got there."""

    y: torch.Tensor  # [K, D] state at t1 (rows that failed hold their last accepted state)
    status: torch.Tensor  # [K] int64, SUCCESS / MAX_NFEV / NON_FINITE / STEP_TOO_SMALL
    nfev: torch.Tensor  # [K] int64 right-hand-side evaluations spent on each row
    steps: torch.Tensor  # [K] int64 accepted steps
    rejected: torch.Tensor  # [K] int64 rejected steps
    seconds: float  # wall-clock time of the whole solve
    t: torch.Tensor | None = None  # [K] time each row reached (t1 for SUCCESS)
    h: torch.Tensor | None = None  # [K] each row's next (proposed) step size
    h_max: torch.Tensor | None = None  # [K] each row's largest accepted step (0: none)

    @property
    def ok(self) -> torch.Tensor:
        """Rows that ended in success [K]."""
        return self.status == SUCCESS

    def status_counts(self) -> dict[str, int]:
        """How many rows ended with each status, by name."""
        return {name: int((self.status == code).sum()) for code, name in STATUS_NAMES.items()}


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=1).sqrt()


def _max_abs(x: torch.Tensor) -> torch.Tensor:
    return x.abs().amax(dim=1)


ERROR_NORMS = {"rms": _rms, "max": _max_abs}
Tolerance = float | torch.Tensor  # scalar, per row [K, 1] or per component [K, D] / [D]


def _row_tolerance(atol: Tolerance, k_rows: int, y0: torch.Tensor) -> Tolerance:
    """`atol` as a float or a [K, 1] / [K, D] tensor that rows can be indexed from."""
    if not torch.is_tensor(atol):
        return float(atol)
    a = atol.to(device=y0.device, dtype=y0.dtype)
    if a.ndim == 1 and a.shape[0] == y0.shape[1]:
        a = a[None]
    elif a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] not in (1, k_rows) or a.shape[1] not in (1, y0.shape[1]):
        raise ValueError(f"atol must be a scalar, [K], [D], [K, 1] or [K, D]; got {tuple(a.shape)}")
    if not bool((a > 0).all()):
        raise ValueError("atol must be positive")
    return a.expand(k_rows, a.shape[1])


def _initial_step(
    f: RightHandSide,
    y0: torch.Tensor,
    f0: torch.Tensor,
    rows: torch.Tensor,
    span: float,
    rtol: float,
    atol: Tolerance,
    norm: Callable[[torch.Tensor], torch.Tensor] = _rms,
) -> torch.Tensor:
    """Per-row first step from the size of y and of its first two derivatives (one evaluation)."""
    scale = atol + y0.abs() * rtol
    d0, d1 = norm(y0 / scale), norm(f0 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    h0 = torch.nan_to_num(h0.clamp(max=span), nan=1e-6)
    f1 = f(y0 + h0[:, None] * f0, rows)
    d2 = norm((f1 - f0) / scale) / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(
        dmax <= 1e-15,
        torch.clamp(h0 * 1e-3, min=1e-6),
        (0.01 / dmax) ** (1.0 / 5.0),
    )
    h = torch.minimum(torch.minimum(100 * h0, h1), torch.full_like(h0, span))
    return torch.nan_to_num(h, nan=1e-6)


@torch.no_grad()
def solve_batched(
    f: RightHandSide,
    y0: torch.Tensor,
    t1: float = 1.0,
    *,
    rtol: float = 1e-5,
    atol: Tolerance = 1e-6,
    max_nfev: int = 20_000,
    min_step: float = 1e-9,
    first_step: float | torch.Tensor | None = None,
    max_seconds: float | None = None,
    t0: torch.Tensor | None = None,
    max_step: float | torch.Tensor | None = None,
    pi_beta: float = 0.0,
    error_norm: str = "rms",
) -> BatchSolution:
    """Integrate dy/dt = f(y) from t = 0 (or per-row times `t0` [K]) to t1 for every row of y0.

    Each row keeps its own step size; rows that finish or fail leave the batch. A row whose
    evaluations exceed `max_nfev`, whose step falls below `min_step`·t1, or whose state turns
    non-finite stops with that status; callers must drop it (or resume it from its last
    accepted state `y`, `t`, which the solution keeps). With `max_seconds`, rows still running
    once that much wall-clock time has passed stop with status TIMEOUT (checked after each step,
    so the solve may overrun by one step). `first_step` (scalar or [K]) replaces the automatic
    initial step; `max_step` (scalar or [K]) caps every step. `pi_beta` > 0 switches the step
    control of accepted steps to Hairer's stabilised PI controller (DOPRI5's β, 0.04 there).
    `atol` is a scalar or a tensor per row ([K] or [K, 1]), per component ([D]) or both
    ([K, D]): the error of component i of row k is measured against atol[k, i] + rtol·|y[k, i]|.
    `error_norm` "rms" (scipy's, the default) or "max" combines a row's scaled errors.
    """
    if y0.ndim != 2:
        raise ValueError(f"y0 must be [K, D], got shape {tuple(y0.shape)}")
    if not t1 > 0:
        raise ValueError(f"t1 must be positive, got {t1}")
    if error_norm not in ERROR_NORMS:
        raise ValueError(f"error_norm must be one of {sorted(ERROR_NORMS)}, got {error_norm!r}")
    norm = ERROR_NORMS[error_norm]
    start = time.perf_counter()
    k_rows, device = y0.shape[0], y0.device
    atol = _row_tolerance(atol, k_rows, y0)
    y = y0.clone()
    if t0 is None:
        t = torch.zeros(k_rows, dtype=y0.dtype, device=device)
    else:
        t = torch.as_tensor(t0, dtype=y0.dtype, device=device).expand(k_rows).clone()
    cap = None
    if max_step is not None:
        cap = torch.as_tensor(max_step, dtype=y0.dtype, device=device).expand(k_rows).clone()
    h_max = torch.zeros(k_rows, dtype=y0.dtype, device=device)
    status = torch.full((k_rows,), RUNNING, dtype=torch.int64, device=device)
    nfev = torch.zeros(k_rows, dtype=torch.int64, device=device)
    steps = torch.zeros_like(nfev)
    rejected = torch.zeros_like(nfev)
    all_rows = torch.arange(k_rows, device=device)

    fy = f(y, all_rows)
    nfev += 1
    if first_step is None:
        h = _initial_step(f, y, fy, all_rows, t1, rtol, atol, norm)
        nfev += 1
    else:
        h = torch.as_tensor(first_step, dtype=y0.dtype, device=device).expand(k_rows).clone()
    if cap is not None:
        h = torch.minimum(h, cap)
    just_rejected = torch.zeros(k_rows, dtype=torch.bool, device=device)
    err_prev = torch.full((k_rows,), 1e-4, dtype=y0.dtype, device=device)
    exponent = _ERR_EXPONENT + 0.75 * pi_beta
    bad_start = ~torch.isfinite(fy).all(dim=1)
    status[bad_start] = NON_FINITE

    active = all_rows[status == RUNNING]
    while active.numel() > 0:
        ya, fa, ta = y[active], fy[active], t[active]
        ha = torch.minimum(h[active], t1 - ta)
        if cap is not None:
            ha = torch.minimum(ha, cap[active])
        hcol = ha[:, None]
        ks = [fa]
        for stage in range(1, 6):
            dy = sum(a * k for a, k in zip(_A[stage], ks, strict=False))
            ks.append(f(ya + hcol * dy, active))
        y_new = ya + hcol * sum(b * k for b, k in zip(_B, ks, strict=False) if b != 0.0)
        f_new = f(y_new, active)
        ks.append(f_new)
        nfev[active] += 6
        err = hcol * sum(e * k for e, k in zip(_E, ks, strict=False) if e != 0.0)
        atol_a = atol if isinstance(atol, float) else atol[active]
        scale = atol_a + rtol * torch.maximum(ya.abs(), y_new.abs())
        err_norm = norm(err / scale)
        finite = torch.isfinite(y_new).all(dim=1) & torch.isfinite(f_new).all(dim=1)
        err_norm = torch.where(finite & torch.isfinite(err_norm), err_norm, torch.inf)
        accept = err_norm < 1.0

        safe_err = err_norm.clamp(min=1e-30)
        proposal = torch.where(
            accept,
            _SAFETY * safe_err**exponent * err_prev[active] ** pi_beta,
            _SAFETY * safe_err**_ERR_EXPONENT,
        )
        factor = torch.where(err_norm == 0, torch.full_like(err_norm, _MAX_FACTOR), proposal)
        grow = torch.where(just_rejected[active], 1.0, _MAX_FACTOR)
        factor = torch.where(
            accept,
            torch.minimum(factor.clamp(min=_MIN_FACTOR), torch.as_tensor(grow, dtype=y.dtype)),
            factor.clamp(min=_MIN_FACTOR, max=1.0),
        )
        factor = torch.nan_to_num(factor, nan=_MIN_FACTOR)

        acc_rows = active[accept]
        y[acc_rows] = y_new[accept]
        fy[acc_rows] = f_new[accept]
        t[acc_rows] = ta[accept] + ha[accept]
        h_max[acc_rows] = torch.maximum(h_max[acc_rows], ha[accept])
        steps[acc_rows] += 1
        err_prev[acc_rows] = err_norm[accept].clamp(min=1e-4)
        rejected[active[~accept]] += 1
        h[active] = ha * factor
        just_rejected[active] = ~accept

        finished = accept & (t[active] >= t1 * (1 - 1e-12))
        status[active[finished]] = SUCCESS
        running = status[active] == RUNNING
        over_budget = running & (nfev[active] + 6 > max_nfev)
        status[active[over_budget]] = MAX_NFEV
        tiny = running & ~over_budget & (h[active] < min_step * t1)
        # A step that keeps producing non-finite values shrinks until here; say why it stopped.
        status[active[tiny]] = torch.where(torch.isinf(err_norm[tiny]), NON_FINITE, STEP_TOO_SMALL)
        active = active[status[active] == RUNNING]
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            status[active] = TIMEOUT
            break

    bad_end = (status == SUCCESS) & ~torch.isfinite(y).all(dim=1)
    status[bad_end] = NON_FINITE
    return BatchSolution(
        y, status, nfev, steps, rejected, time.perf_counter() - start, t=t, h=h, h_max=h_max
    )
