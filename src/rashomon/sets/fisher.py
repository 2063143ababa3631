"""Fisher-metric geodesics (Yu, Hartmann, Williams, Girolami & Klami, AISTATS 2024).

Metric G(θ) = s·F(θ) + diag(τ): F = Σ_i J_iᵀ H_i J_i is the Fisher of the softmax likelihood
(equal to its generalised Gauss–Newton), J_i = ∂f(x_i; θ)/∂θ the logit Jacobian, H_i =
diag p_i − p_i p_iᵀ, s the data scale (N/B, 1/T) and τ the prior precision. Unlike the Monge
metric I + ∇L∇Lᵀ, G(θ*) is the Laplace precision itself, so the velocities v ~ N(0, G(θ*)⁻¹)
and the geometry share one scale.

Geodesic equation. F is the pullback of the Euclidean metric through z_ic = 2√p_ic (the
sphere embedding of the Fisher–Rao metric), so with J = ∂z/∂θ the Christoffel force is Jᵀz̈ and

    θ̈ = −G⁻¹ q,   q = s·Σ_i J_iᵀ r_i,   r_i = H_i f̈_i + ½ p_i ∘ (δ_i² − Σ_c p_ic δ_ic²),

with ḟ_i, f̈_i the first and second directional derivatives of the logits along θ̇ and
δ_i = ḟ_i − p_i·ḟ_i (r_i is J_gᵀ z̈ for g(f) = 2√softmax(f): the Fisher in logits applied to f̈
plus half the softmax's third cumulant contracted with ḟ twice). The labels do not enter.

G⁻¹q is solved by preconditioned conjugate gradients on Fisher-vector products
Gu = s·Jᵀ H (J u) + τu: one Jacobian-vector and one vector-Jacobian product per iteration,
never a P×P matrix. `FisherMetric` takes any flat logits function (torch.func jvp / vjp, vmapped
over the K geodesics); `MLPFisherMetric` does the same in closed form for an `nn.Linear` (the
last layer on cached features) or an MLP, caching each row's activations for all CG iterations.
A good preconditioner is the Laplace covariance Σ ≈ G(θ*)⁻¹ (`rs.riemannian` passes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import jvp, vjp, vmap

from rashomon.sets.geodesic import MLPMongeMetric

LogitsFn = Callable[..., torch.Tensor]  # logits(theta [P], *per_geodesic_data) -> [N, C]
Operator = Callable[[torch.Tensor], torch.Tensor]  # [R, P] -> [R, P]
CG_TOL = 1e-6  # relative residual ‖Gx − q‖ ≤ tol·‖q‖
CG_MAX_ITER = 500


def softmax_hvp(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """H u = p ∘ (u − p·u) over the last (class) dimension: the softmax Fisher in logits."""
    return p * (u - (p * u).sum(-1, keepdim=True))


def christoffel_residual(
    p: torch.Tensor, fd: torch.Tensor, fdd: torch.Tensor | None
) -> torch.Tensor:
    """r = H f̈ + ½ p ∘ (δ² − Σ p δ²), δ = ḟ − p·ḟ, per point (module docstring)."""
    delta = fd - (p * fd).sum(-1, keepdim=True)
    sq = delta * delta
    r = 0.5 * p * (sq - (p * sq).sum(-1, keepdim=True))
    return r if fdd is None else r + softmax_hvp(p, fdd)


def conjugate_gradient(
    matvec: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    precondition: Operator | None = None,
    tol: float = CG_TOL,
    max_iter: int = CG_MAX_ITER,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A x_k = b_k for every row k of b [K, P] by preconditioned CG (A SPD).

    `matvec(u [R, P], rows [R])` returns A u for the given rows (each row may have its own A);
    `precondition` applies an SPD approximation of A⁻¹; `x0` is a starting guess (one extra
    product). Rows stop once ‖b − Ax‖ ≤ tol·‖b‖ and leave the batch. Returns x [K, P] and the
    iterations each row took [K]."""
    k_rows = b.shape[0]
    rows = torch.arange(k_rows, device=b.device)
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        x = x0.clone()
        r = b - matvec(x, rows)
    z = precondition(r) if precondition is not None else r.clone()
    p = z.clone()
    rz = (r * z).sum(1)
    goal = tol * b.norm(dim=1)
    iters = torch.zeros(k_rows, dtype=torch.int64, device=b.device)
    active = rows[r.norm(dim=1) > goal]
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        pa = p[active]
        ap = matvec(pa, active)
        alpha = rz[active] / (pa * ap).sum(1)
        x[active] += alpha[:, None] * pa
        ra = r[active] - alpha[:, None] * ap
        r[active] = ra
        iters[active] += 1
        za = precondition(ra) if precondition is not None else ra
        rz_new = (ra * za).sum(1)
        p[active] = za + (rz_new / rz[active])[:, None] * pa
        rz[active] = rz_new
        active = active[ra.norm(dim=1) > goal[active]]
    return x, iters


class _FisherSolve:
    """Shared tail of both Fisher metrics: θ̈ = −G⁻¹ q by CG, with statistics."""

    def __init__(
        self,
        prior_precision: float | torch.Tensor,
        data_scale: float,
        preconditioner: Operator | None,
        cg_tol: float,
        cg_max_iter: int,
    ):
        self.tau = prior_precision
        self.scale = float(data_scale)
        self.preconditioner = preconditioner
        self.cg_tol, self.cg_max_iter = float(cg_tol), int(cg_max_iter)
        self.calls = 0
        self.cg_iterations = 0  # summed over rows and calls
        self.cg_rows = 0
        self._warm: torch.Tensor | None = None  # last solution per geodesic id

    # exp_map hands metrics with this flag each row's geodesic id (`ids`) and calls reset()
    warm_start = True

    def reset(self) -> None:
        """Forget the warm starts (exp_map calls this before a new set of geodesics)."""
        self._warm = None

    def _solve(self, q: torch.Tensor, product: Callable, ids: torch.Tensor | None) -> torch.Tensor:
        def matvec(u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.scale * product(u, rows) + self.tau * u

        x0 = None
        if ids is not None and self._warm is not None and int(ids.max()) < len(self._warm):
            # The solver evaluates each geodesic at nearby points in turn: its last G⁻¹q is a
            # close guess (rows never solved before start from 0, i.e. a zero guess).
            x0 = self._warm[ids]
        x, iters = conjugate_gradient(
            matvec,
            q,
            precondition=self.preconditioner,
            tol=self.cg_tol,
            max_iter=self.cg_max_iter,
            x0=x0,
        )
        if ids is not None:
            size = int(ids.max()) + 1
            if self._warm is None or len(self._warm) < size or self._warm.shape[1:] != x.shape[1:]:
                grown = torch.zeros(size, *x.shape[1:], dtype=x.dtype, device=x.device)
                if self._warm is not None and self._warm.shape[1:] == x.shape[1:]:
                    grown[: len(self._warm)] = self._warm
                self._warm = grown
            self._warm[ids] = x
        self.calls += 1
        self.cg_iterations += int(iters.sum())
        self.cg_rows += int(iters.numel())
        return -x

    @property
    def cg_iterations_mean(self) -> float:
        """Mean CG iterations per geodesic evaluation so far."""
        return self.cg_iterations / max(1, self.cg_rows)


class FisherMetric(_FisherSolve):
    """G = s·Σ_i J_iᵀ H_i J_i + diag(τ) for any flat logits function, by torch.func.

    `logits(theta [P], *data) -> [N, C]` (written with `functional_call`, see
    `rashomon.sets.flat`); `data` are per-geodesic tensors [K, ...] (e.g. mini-batch indices).
    One evaluation: a nested jvp gives f, ḟ, f̈ for all K rows (vmapped), a vjp gives q, and
    each CG iteration costs one jvp and one vjp."""

    def __init__(
        self,
        logits: LogitsFn,
        prior_precision: float | torch.Tensor,
        *,
        data_scale: float = 1.0,
        preconditioner: Operator | None = None,
        cg_tol: float = CG_TOL,
        cg_max_iter: int = CG_MAX_ITER,
    ):
        super().__init__(prior_precision, data_scale, preconditioner, cg_tol, cg_max_iter)
        self.logits = logits

    def acceleration(
        self,
        theta: torch.Tensor,
        velocity: torch.Tensor,
        data: Sequence[torch.Tensor] = (),
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """θ̈ [K, P] under the Fisher metric: one CG solve of G θ̈ = q per row."""
        logits = self.logits

        def taylor(t: torch.Tensor, u: torch.Tensor, *d: torch.Tensor):
            def first(s: torch.Tensor):
                return jvp(lambda w: logits(w, *d), (s,), (u,))

            # jvp's stub types the has_aux=True triple too; without aux it returns a pair
            (f, fd), (_, fdd) = jvp(first, (t,), (u,))  # type: ignore[misc]
            return f, fd, fdd

        def pull(t: torch.Tensor, w: torch.Tensor, *d: torch.Tensor) -> torch.Tensor:
            return vjp(lambda s: logits(s, *d), t)[1](w)[0]

        def push(t: torch.Tensor, u: torch.Tensor, *d: torch.Tensor) -> torch.Tensor:
            return jvp(lambda s: logits(s, *d), (t,), (u,))[1]

        with torch.no_grad():
            f, fd, fdd = vmap(taylor)(theta, velocity, *data)
            p = torch.softmax(f, dim=-1)
            q = self.scale * vmap(pull)(theta, christoffel_residual(p, fd, fdd), *data)

            def product(u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
                d = [x[rows] for x in data]
                ju = vmap(push)(theta[rows], u, *d)
                return vmap(pull)(theta[rows], softmax_hvp(p[rows], ju), *d)

            return self._solve(q, product, ids)


class MLPFisherMetric(_FisherSolve):
    """`FisherMetric` in closed form for an `nn.Linear` or an MLP (the layers
    `MLPMongeMetric` supports), softmax likelihood, every parameter varied.

    One Taylor-mode forward pass gives f, ḟ, f̈ and caches each layer's input and activation
    slope per row; q and every CG product then reuse them: a tangent pass (J u) and a reverse
    pass (Jᵀ w) of batched matrix products, with the shared input (cached features) multiplied
    against all rows' weights in one GEMM. For a linear head f̈ = 0 and each product is two
    GEMMs over the N×D features."""

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        prior_precision: float | torch.Tensor,
        *,
        data_scale: float = 1.0,
        per_geodesic_batches: bool = False,
        preconditioner: Operator | None = None,
        cg_tol: float = CG_TOL,
        cg_max_iter: int = CG_MAX_ITER,
    ):
        super().__init__(prior_precision, data_scale, preconditioner, cg_tol, cg_max_iter)
        layers = MLPMongeMetric._layers(module)
        if layers is None:
            raise ValueError("MLPFisherMetric needs nn.Linear or nn.Sequential(Linear, act, ...)")
        self.layers = layers
        self.x = x
        self.per_geodesic_batches = per_geodesic_batches

    # ---- products against each row's weights; `z` is shared [N, in] or per row [K, N, in]
    @staticmethod
    def _times_weights(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """z Wᵀ for every row: [K, N, out]."""
        if z.ndim == 2:
            k, out_f, in_f = w.shape
            return (z @ w.reshape(k * out_f, in_f).T).view(z.shape[0], k, out_f).transpose(0, 1)
        return torch.bmm(z, w.mT)

    @staticmethod
    def _weight_gradient(delta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Σ_n δ_n z_nᵀ for every row: [K, out·in]."""
        k = delta.shape[0]
        if z.ndim == 2:
            return (delta.transpose(1, 2).reshape(-1, z.shape[0]) @ z).view(k, -1)
        return (delta.mT @ z).reshape(k, -1)

    def _split(self, theta: torch.Tensor):
        """Per layer: weight [K, out, in] and bias [K, out] or None, from flat rows."""
        out, offset, k = [], 0, theta.shape[0]
        for out_f, in_f, has_bias, _ in self.layers:
            w = theta[:, offset : offset + out_f * in_f].view(k, out_f, in_f)
            offset += out_f * in_f
            b = None
            if has_bias:
                b = theta[:, offset : offset + out_f]
                offset += out_f
            out.append((w, b))
        return out

    def _taylor(self, theta: torch.Tensor, velocity: torch.Tensor, z: torch.Tensor):
        """f, ḟ, f̈ [K, N, C] and the cache (inputs, weights, slopes) for the products."""
        zd = zdd = None
        slopes: list[torch.Tensor]
        inputs, weights, slopes = [], [], []
        for (w, b), (vw, vb), (_, _, _, act) in zip(
            self._split(theta), self._split(velocity), self.layers, strict=True
        ):
            a = self._times_weights(z, w)
            ad = self._times_weights(z, vw)
            if b is not None:
                a = a + b[:, None]
                ad = ad + vb[:, None]
            add = None
            if zd is not None:
                ad = ad + torch.bmm(zd, w.mT)
                add = 2.0 * torch.bmm(zd, vw.mT)
                if zdd is not None:
                    add = add + torch.bmm(zdd, w.mT)
            inputs.append(z)
            weights.append(w)
            if act is None:
                return a, ad, add, (inputs, weights, slopes)
            if act == "tanh":
                z = torch.tanh(a)
                slope = 1.0 - z * z
                zd = slope * ad
                zdd = -2.0 * z * zd * ad if add is None else slope * add - 2.0 * z * zd * ad
            elif act == "relu":
                slope = (a > 0).to(a.dtype)
                z, zd = a * slope, ad * slope
                zdd = None if add is None else add * slope
            else:
                slope = torch.ones_like(a)
                z, zd, zdd = a, ad, add
            slopes.append(slope)
        raise AssertionError("unreachable: the last layer has no activation")

    def _tangent(self, u: torch.Tensor, cache, rows: torch.Tensor | None) -> torch.Tensor:
        """J u [R, N, C] at the cached rows."""
        inputs, weights, slopes = cache
        zd = None
        for li, ((uw, ub), (_, _, _, act)) in enumerate(
            zip(self._split(u), self.layers, strict=True)
        ):
            z = inputs[li] if inputs[li].ndim == 2 or rows is None else inputs[li][rows]
            ad = self._times_weights(z, uw)
            if ub is not None:
                ad = ad + ub[:, None]
            if zd is not None:
                w = weights[li] if rows is None else weights[li][rows]
                ad = ad + torch.bmm(zd, w.mT)
            if act is None:
                return ad
            zd = ad * (slopes[li] if rows is None else slopes[li][rows])
        raise AssertionError("unreachable: the last layer has no activation")

    def _pullback(self, delta: torch.Tensor, cache, rows: torch.Tensor | None) -> torch.Tensor:
        """Jᵀ δ [R, P] at the cached rows, for δ [R, N, C]."""
        inputs, weights, slopes = cache
        grads: list[torch.Tensor] = []
        for li in range(len(self.layers) - 1, -1, -1):
            if self.layers[li][2]:
                grads.append(delta.sum(-2))
            z = inputs[li] if inputs[li].ndim == 2 or rows is None else inputs[li][rows]
            grads.append(self._weight_gradient(delta, z))
            if li > 0:
                w = weights[li] if rows is None else weights[li][rows]
                delta = (delta @ w) * (slopes[li - 1] if rows is None else slopes[li - 1][rows])
        return torch.cat(grads[::-1], dim=1)

    def acceleration(
        self,
        theta: torch.Tensor,
        velocity: torch.Tensor,
        data: Sequence[torch.Tensor] = (),
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """θ̈ [K, P] under the closed-form MLP Fisher metric: one CG solve of G θ̈ = q per row."""
        z = self.x[data[0]] if self.per_geodesic_batches else self.x
        f, fd, fdd, cache = self._taylor(theta, velocity, z)
        p = torch.softmax(f, dim=-1)
        q = self.scale * self._pullback(christoffel_residual(p, fd, fdd), cache, None)

        def product(u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self._pullback(softmax_hvp(p[rows], self._tangent(u, cache, rows)), cache, rows)

        return self._solve(q, product, ids)
