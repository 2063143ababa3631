"""Exact last-layer extremes: for every patient, the lowest and highest probability that ANY
head within the Rashomon set's loss bounds gives them — what no last-layer sampler can exceed.

The set (binary tasks, softmax head on the body's fixed features φ̃ = [φ, 1]). A two-class
softmax depends only on the difference of the two rows, δ = θ₁ − θ₀ ∈ R^{D+1}; the penalty
‖θ₀‖² + ‖θ₁‖² is smallest, ‖δ‖²/2, with θ₁ = −θ₀ = δ/2, so the set over heads projects onto

    S = { δ :  L_val(δ)   ≤ (1 + ε)   · L_val(δ*)      (validation: the Rashomon filter)
               J_train(δ) ≤ (1 + ε_t) · J_train(δ*) }  (training objective, ε_t = ε by default)

with L_val the mean cross-entropy on the validation split, δ* the trained (MAP) head, and
J_train(δ) = Σ_train CE + (τ/4)‖δ‖² the training objective the head minimises (summed loss,
prior precision τ = N·weight decay, as Adam's weight decay on the mean loss). The training
bound is needed: a bound on the validation loss alone leaves every direction orthogonal to the
validation features free, so over a 130-parameter head it allows any probability on most test
patients, far beyond anything training produces.

Both bounds are relative to the audited model, which is therefore in S (a trained head is
rarely at its objective's minimum, so a bound around the minimum could exclude it).

For patient x the logit margin is linear, z(δ) = δᵀφ̃(x), so p₁ = σ(z) is extreme where z is:
two convex programs (max and min of a linear function over a convex set) per patient, solved
all at once by a log-barrier interior-point method to a duality gap `tol` in logit units. Each
Newton system is solved by conjugate gradients with exact Hessian-vector products (two
products with each split's features, no per-patient [D+1, D+1] Hessian over N training
points), preconditioned by the same Hessian with the data curvature of the starting point,
which every patient shares: a few iterations give the Newton step.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.functional import softplus

from rashomon import schema as S
from rashomon.data.task import Task
from rashomon.errors import RashomonError

BARRIER_GROWTH = 20.0  # t ← t·growth between centering steps
NEWTON_STEPS = 200  # per centering step, at most
CENTERED = 1e-10  # Newton decrement at which a centering step stops
MAX_HALVINGS = 40
CG_ITERATIONS = 8  # preconditioned CG iterations per Newton step, at most
CG_TOLERANCE = 1e-6  # relative residual at which CG stops (an inexact Newton step)
PATIENT_CHUNK_BYTES = 256 * 2**20  # bound on the [chunk, N_train, D+1] Hessian work array


@dataclass(frozen=True)
class HeadProblem:
    """The two constraints over δ, on float64 tensors. `w_train`, `w_val` [N] weight each
    patient's loss as training did (its class's weight; ones when unweighted)."""

    phi_train: torch.Tensor  # [N_t, d]
    s_train: torch.Tensor  # [N_t] ±1 (2y − 1)
    phi_val: torch.Tensor  # [N_v, d]
    s_val: torch.Tensor
    prior: float  # τ: J = Σ w softplus(−s δᵀφ) + τ/4 ‖δ‖²
    val_bound: float  # on the mean (weighted) validation CE
    train_bound: float  # on J
    w_train: torch.Tensor | None = None
    w_val: torch.Tensor | None = None

    def _weights(self, which: str) -> torch.Tensor:
        w = self.w_val if which == "val" else self.w_train
        phi = self.phi_val if which == "val" else self.phi_train
        return torch.ones(phi.shape[0], dtype=phi.dtype) if w is None else w

    def values(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_val, J_train) for δ [B, d]."""
        lv = (self._weights("val") * softplus(-(delta @ self.phi_val.T) * self.s_val)).mean(1)
        jt = (self._weights("train") * softplus(-(delta @ self.phi_train.T) * self.s_train)).sum(1)
        return lv, jt + 0.25 * self.prior * (delta**2).sum(1)

    def gradients(self, delta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(L_val, ∇L_val, J_train, ∇J_train) for δ [B, d]: two products with each split."""
        wv, wt = self._weights("val"), self._weights("train")
        mv = -(delta @ self.phi_val.T) * self.s_val
        lv = (wv * softplus(mv)).mean(1)
        gv = (-wv * torch.sigmoid(mv) * self.s_val) @ self.phi_val / self.phi_val.shape[0]
        mt = -(delta @ self.phi_train.T) * self.s_train
        jt = (wt * softplus(mt)).sum(1) + 0.25 * self.prior * (delta**2).sum(1)
        gt = (-wt * torch.sigmoid(mt) * self.s_train) @ self.phi_train + 0.5 * self.prior * delta
        return lv, gv, jt, gt

    def derivatives(self, delta: torch.Tensor) -> tuple:
        """Values, gradients [B, d] and Hessians [B, d, d] of both constraints."""
        out = []
        for phi, s, w, mean in (
            (self.phi_val, self.s_val, self._weights("val"), True),
            (self.phi_train, self.s_train, self._weights("train"), False),
        ):
            m = -(delta @ phi.T) * s  # [B, N]
            value = w * softplus(m)
            sig = torch.sigmoid(m)
            gcoef = -w * sig * s  # d w·softplus(m)/dz
            hcoef = w * sig * (1 - sig)
            scale = 1.0 / phi.shape[0] if mean else 1.0
            grad = scale * gcoef @ phi
            hess = scale * _weighted_gram(phi, hcoef)
            val = scale * value.sum(1)
            out.append((val, grad, hess))
        (lv, gv, hv), (jt, gt, ht) = out
        d = delta.shape[1]
        jt = jt + 0.25 * self.prior * (delta**2).sum(1)
        gt = gt + 0.5 * self.prior * delta
        ht = ht + 0.5 * self.prior * torch.eye(d, dtype=delta.dtype)[None]
        return (lv, gv, hv), (jt, gt, ht)


def _weighted_gram(phi: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_n w[b, n] φ_n φ_nᵀ for every b: [B, d, d], in chunks of b bounded in memory."""
    B, (N, d) = w.shape[0], phi.shape
    chunk = max(1, PATIENT_CHUNK_BYTES // max(1, N * d * phi.element_size()))
    parts = []
    for i in range(0, B, chunk):
        wp = w[i : i + chunk, :, None] * phi[None]  # [b, N, d]
        parts.append(wp.transpose(1, 2) @ phi)
    return torch.cat(parts)


def _barrier_change(
    problem: HeadProblem,
    delta: torch.Tensor,
    move: torch.Tensor,
    a: torch.Tensor,
    t: torch.Tensor,
    slack_val: torch.Tensor,
    slack_train: torch.Tensor,
) -> torch.Tensor:
    """F(δ + move) − F(δ) of the barrier F = −t·aᵀδ − log(b_v − L_v) − log(b_t − J), computed
    as a difference (F itself grows like t and would swamp the change in rounding); inf when
    δ + move leaves S."""
    lv, jt = problem.values(delta + move)
    sv_new = problem.val_bound - lv
    st_new = problem.train_bound - jt
    inside = (sv_new > 0) & (st_new > 0)
    change = (
        -t * (a * move).sum(1)
        - torch.log(sv_new.clamp_min(1e-300) / slack_val[:, 0])
        - torch.log(st_new.clamp_min(1e-300) / slack_train[:, 0])
    )
    return torch.where(inside, change, torch.full_like(change, math.inf))


def _barrier_hvp(problem: HeadProblem, wv, wt, sv, st, gv, gt, v: torch.Tensor) -> torch.Tensor:
    """The barrier Hessian times v [B, d], exactly: each split's data curvature as two products
    with its features, plus the rank-one terms of the log barrier."""
    pv, pt = problem.phi_val, problem.phi_train
    data_v = (wv * (v @ pv.T)) @ pv / pv.shape[0]
    data_t = (wt * (v @ pt.T)) @ pt + 0.5 * problem.prior * v
    return (
        data_v / sv
        + gv * (gv * v).sum(1, keepdim=True) / sv**2
        + data_t / st
        + gt * (gt * v).sum(1, keepdim=True) / st**2
    )


def _curvature_weights(problem: HeadProblem, delta: torch.Tensor) -> tuple:
    """Per-sample (weighted) loss curvature w·σ(m)(1 − σ(m)) on each split for δ [B, d]."""
    out = []
    for which, phi, s in (
        ("val", problem.phi_val, problem.s_val),
        ("train", problem.phi_train, problem.s_train),
    ):
        sig = torch.sigmoid(-(delta @ phi.T) * s)
        out.append(problem._weights(which) * sig * (1 - sig))
    return tuple(out)


def maximise_linear(
    problem: HeadProblem, a: torch.Tensor, start: torch.Tensor, tol: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """max aᵢᵀδ over S for each row of `a` [B, d], from a strictly feasible `start` [d].
    Returns (values [B], maximisers [B, d]); the values are within `tol` of the optimum (the
    barrier method's duality gap 2/t for two constraints, times ‖aᵢ‖)."""
    B, d = a.shape
    delta = start[None].expand(B, d).clone()
    scale = a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    an = a / scale  # unit directions: one gap tolerance for every patient
    (_, _, hv0), (_, _, ht0) = problem.derivatives(start[None])
    basis = _SharedCurvature(hv0[0], ht0[0])
    t = torch.ones(B, dtype=a.dtype)
    t_final = 2.0 / tol * float(scale.max())
    while True:
        active = torch.ones(B, dtype=torch.bool)  # rows still centering at this t
        for _ in range(NEWTON_STEPS):
            lv, gv, jt, gt = problem.gradients(delta)
            sv = (problem.val_bound - lv)[:, None]
            st = (problem.train_bound - jt)[:, None]
            grad = -t[:, None] * an + gv / sv + gt / st
            wv, wt = _curvature_weights(problem, delta)

            hvp = functools.partial(_barrier_hvp, problem, wv, wt, sv, st, gv, gt)
            precondition = basis.inverse(1 / sv[:, 0], 1 / st[:, 0], gv / sv, gt / st)
            step = _pcg(hvp, -grad, precondition)
            decrement = -(grad * step).sum(1)
            active &= decrement > CENTERED
            if not bool(active.any()):
                break
            size = torch.ones(B, dtype=a.dtype)
            ok = torch.zeros(B, dtype=torch.bool)
            for _ in range(MAX_HALVINGS):  # backtracking: stay inside S, decrease F (Armijo)
                change = _barrier_change(problem, delta, size[:, None] * step, an, t, sv, st)
                ok = change <= -0.25 * size * decrement
                if bool((ok | ~active).all()):
                    break
                size = torch.where(ok | ~active, size, size * 0.5)
            # A row whose step cannot decrease F any more is centred to rounding precision.
            moved = active & ok
            delta = torch.where(moved[:, None], delta + size[:, None] * step, delta)
            active &= ok
        if float(t.min()) >= t_final:
            break
        t = torch.clamp(t * BARRIER_GROWTH, max=t_final)
    return (a * delta).sum(1), delta


class _SharedCurvature:
    """Inverses of c₁·H₁ + c₂·H₂ + u uᵀ + w wᵀ for many (c₁, c₂, u, w) at once, with H₁ ⪰ 0 and
    H₂ ≻ 0 fixed: one generalised eigendecomposition H₁ = L U Λ Uᵀ Lᵀ, H₂ = L Lᵀ makes
    c₁H₁ + c₂H₂ = L U (c₁Λ + c₂) Uᵀ Lᵀ diagonal in a shared basis, and Woodbury adds the two
    rank-one terms; no per-patient factorisation."""

    def __init__(self, h1: torch.Tensor, h2: torch.Tensor):
        chol = torch.linalg.cholesky(h2)
        m = torch.linalg.solve_triangular(chol, h1, upper=False)
        m = torch.linalg.solve_triangular(chol, m.T, upper=False).T
        lam, u = torch.linalg.eigh((m + m.T) / 2)
        self.lam = lam.clamp_min(0)
        self.basis = torch.linalg.solve_triangular(chol.T, u, upper=True)  # L⁻ᵀ U

    def inverse(self, c1: torch.Tensor, c2: torch.Tensor, u: torch.Tensor, w: torch.Tensor):
        """x ↦ (c₁H₁ + c₂H₂ + uuᵀ + wwᵀ)⁻¹ x for rows x [B, d] (one system per row)."""
        diag = 1.0 / (c1[:, None] * self.lam[None] + c2[:, None])  # [B, d]
        T = self.basis

        def a_inv(x: torch.Tensor) -> torch.Tensor:  # x [B, d] or [B, d, k]
            if x.ndim == 2:
                return ((x @ T) * diag) @ T.T
            y = torch.einsum("bdk,de->bek", x, T) * diag[..., None]
            return torch.einsum("bek,de->bdk", y, T)

        g = torch.stack([u, w], dim=2)  # [B, d, 2]
        ag = a_inv(g)
        small = torch.eye(2, dtype=g.dtype) + g.transpose(1, 2) @ ag  # [B, 2, 2]

        def apply(x: torch.Tensor) -> torch.Tensor:
            ax = a_inv(x)
            coef = torch.linalg.solve(small, (g.transpose(1, 2) @ ax[..., None]))
            return ax - (ag @ coef)[..., 0]

        return apply


def _pcg(hvp, rhs: torch.Tensor, precondition) -> torch.Tensor:
    """Batched preconditioned conjugate gradients for H x = rhs (rows are patients)."""
    x = precondition(rhs)  # the preconditioner's own solution: already a good step
    r = rhs - hvp(x)
    z = precondition(r)
    p = z.clone()
    rz = (r * z).sum(1)
    norm0 = rhs.norm(dim=1).clamp_min(1e-300)
    for _ in range(CG_ITERATIONS):
        if bool((r.norm(dim=1) <= CG_TOLERANCE * norm0).all()):
            break
        hp = hvp(p)
        alpha = rz / (p * hp).sum(1).clamp_min(1e-300)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * hp
        z = precondition(r)
        rz_new = (r * z).sum(1)
        p = z + (rz_new / rz.clamp_min(1e-300))[:, None] * p
        rz = rz_new
    return x


def _fit_objective_minimum(
    problem_without_bounds: HeadProblem, start: torch.Tensor
) -> torch.Tensor:
    """argmin J_train by Newton's method (convex, smooth): the training-bound's reference."""
    delta = start.clone()[None]
    for _ in range(100):
        _, (jt, gt, ht) = problem_without_bounds.derivatives(delta)
        step = -torch.linalg.solve(ht, gt[..., None])[..., 0]
        size = 1.0
        for _ in range(50):
            if problem_without_bounds.values(delta + size * step)[1] <= jt + 0.25 * size * (
                gt * step
            ).sum(1):
                break
            size *= 0.5
        delta = delta + size * step
        if float(gt.norm()) < 1e-9 * max(1.0, float(jt)):
            break
    return delta[0]


def binary_head_extremes(
    phi_train: Any,
    y_train: Any,
    phi_val: Any,
    y_val: Any,
    phi_eval: Any,
    delta_map: Any,
    *,
    epsilon: float,
    train_epsilon: float | None = None,
    prior_precision: float,
    tol: float = 1e-6,
    class_weight: Any = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(z_min [N], z_max [N], definition) of the logit margin δᵀφ̃ over S for each row of
    `phi_eval` (features with the constant 1 appended). `delta_map` is the trained head's
    δ* = θ₁ − θ₀; `train_epsilon` defaults to `epsilon`; `class_weight` [2] weights each
    patient's loss by its class, as the model's training did."""
    f64 = torch.float64
    pt, pv, pe = (torch.as_tensor(np.asarray(v), dtype=f64) for v in (phi_train, phi_val, phi_eval))
    st = 2 * torch.as_tensor(np.asarray(y_train), dtype=f64) - 1
    sv = 2 * torch.as_tensor(np.asarray(y_val), dtype=f64) - 1
    d_map = torch.as_tensor(np.asarray(delta_map), dtype=f64)
    if not epsilon > 0:
        raise RashomonError(f"epsilon must be positive for last-layer extremes, got {epsilon}")
    eps_t = epsilon if train_epsilon is None else float(train_epsilon)
    weights: dict[str, torch.Tensor | None] = {"w_train": None, "w_val": None}
    if class_weight is not None:
        cw = torch.as_tensor(np.asarray(class_weight, dtype=float), dtype=f64)
        weights = {"w_train": cw[(st > 0).long()], "w_val": cw[(sv > 0).long()]}
    free = HeadProblem(pt, st, pv, sv, float(prior_precision), math.inf, math.inf, **weights)
    d_hat = _fit_objective_minimum(free, d_map)
    l_map, j_map = free.values(d_map[None])
    l_hat, j_hat = free.values(d_hat[None])
    problem = HeadProblem(
        pt,
        st,
        pv,
        sv,
        float(prior_precision),
        val_bound=float(l_map) * (1 + epsilon),
        train_bound=float(j_map) * (1 + eps_t),
        **weights,
    )
    start = _strictly_feasible(problem, d_hat, d_map)
    z_max, _ = maximise_linear(problem, pe, start, tol)
    neg, _ = maximise_linear(problem, -pe, start, tol)
    definition = {
        "epsilon": epsilon,
        "train_epsilon": eps_t,
        "prior_precision": float(prior_precision),
        "val_loss_map": float(l_map),
        "val_bound": problem.val_bound,
        "train_objective_min": float(j_hat),
        "train_objective_map": float(j_map),
        "train_bound": problem.train_bound,
        "train_gradient_gap": float(j_map) - float(j_hat),
        "class_weight": None if class_weight is None else [float(v) for v in class_weight],
        "tol_logit": tol,
    }
    return (-neg).numpy(), z_max.numpy(), definition


def _strictly_feasible(problem: HeadProblem, d_hat: torch.Tensor, d_map: torch.Tensor):
    """A point strictly inside both bounds: the training optimum, the MAP head, or a point on
    the segment between them."""
    for w in np.linspace(0.0, 1.0, 21):
        cand = (1 - w) * d_hat + w * d_map
        lv, jt = problem.values(cand[None])
        if float(lv) < problem.val_bound and float(jt) < problem.train_bound:
            return cand
    raise RashomonError(
        "no head lies strictly within both bounds (validation within ε of the trained head and "
        "training objective within ε_t of its minimum); use a larger epsilon or train_epsilon"
    )


def _augment(phi: torch.Tensor) -> torch.Tensor:
    return torch.cat([phi.double(), torch.ones(len(phi), 1, dtype=torch.float64)], 1)


def last_layer_extremes(
    model: torch.nn.Module,
    task: Task,
    epsilon: float,
    split: str = "test",
    *,
    train_epsilon: float | None = None,
    prior_precision: float | None = None,
    device: str = "cpu",
    tol: float = 1e-4,
    class_weight: Any = "model",
) -> pd.DataFrame:
    """Lowest and highest probability of the positive class for every patient of `split` over
    every head within the set defined in the module docstring (binary tasks).

    `prior_precision` defaults to N_train · weight decay of the model's training (1e-4 when
    unknown); `class_weight` to the class weights it was trained with ("model": its
    `train_config["class_weight"]`; None: unweighted). Returns one row per patient: `sample`,
    `p_map`, `p_min`, `p_max`, `flip_possible` (some head in the set gives the other label at
    threshold 0.5); `attrs["definition"]` holds the set's bounds."""
    from rashomon.models.external import as_classifier
    from rashomon.models.predict import model_features

    if task.kind != "binary":
        raise RashomonError(
            f"last-layer extremes are exact convex programs for binary tasks; this task is "
            f"{task.kind} (for C > 2 the lowest probability of a class is not a convex program)"
        )
    model = as_classifier(model, probe=task.val.x[:2], size=task.image_size)
    head = model.head
    if head.out_features != 2:
        raise RashomonError("last-layer extremes need a two-output softmax head")
    if isinstance(class_weight, str) and class_weight == "model":
        class_weight = getattr(model, "train_config", {}).get("class_weight")
    if prior_precision is None:
        wd = float(getattr(model, "train_config", {}).get("weight_decay", 1e-4) or 1e-4)
        prior_precision = len(task.train) * wd
    feats = {
        s: _augment(model_features(model, task.split(s).x, device).cpu())
        for s in ("train", "val", split)
    }
    w = head.weight.detach().cpu().double()
    b = head.bias.detach().cpu().double() if head.bias is not None else torch.zeros(2)
    delta_map = torch.cat([w[1] - w[0], (b[1] - b[0])[None]])
    z_min, z_max, definition = binary_head_extremes(
        feats["train"],
        task.train.y.numpy(),
        feats["val"],
        task.val.y.numpy(),
        feats[split],
        delta_map,
        epsilon=epsilon,
        train_epsilon=train_epsilon,
        prior_precision=prior_precision,
        tol=tol,
        class_weight=class_weight,
    )
    z_map = (feats[split] @ delta_map).numpy()
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    table = pd.DataFrame(
        {
            S.SAMPLE: np.arange(len(z_map)),
            S.P_MAP: sig(z_map),
            S.P_MIN: sig(z_min),
            S.P_MAX: sig(z_max),
        }
    )
    map_label = table[S.P_MAP] >= 0.5
    table[S.FLIP_POSSIBLE] = np.where(map_label, table[S.P_MIN] < 0.5, table[S.P_MAX] >= 0.5)
    table.attrs["definition"] = {**definition, "split": split}
    return table
