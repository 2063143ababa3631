"""Geodesic right-hand sides: metrics that turn (θ, θ̇) into accelerations θ̈.

A metric object turns (θ, θ̇) for K geodesics into their accelerations θ̈ (`GeodesicMetric`). The
Monge metric g(θ) = I + ∇L(θ)∇L(θ)ᵀ (the loss surface seen as a graph over parameter space,
Bergamin et al. 2023) is implemented here: by autograd for any flat loss (`MongeMetric`) and in
closed form for MLPs (`MLPMongeMetric`, `LinearizedMLPMongeMetric`). Another metric (e.g. the
Fisher metric of Yu et al. 2024) plugs in by providing the same `acceleration` method. The losses
themselves live in `rashomon.sets.flat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeGuard

import torch
from torch import nn
from torch.func import vmap

from rashomon.sets.flat import FlatLoss


class GeodesicMetric(Protocol):
    """Anything that gives geodesic accelerations for K (position, velocity) pairs.

    Optional: a metric with `warm_start = True` also takes `ids` (each row's geodesic index in
    the `exp_map` call, to reuse its previous solve) and has `reset()`, which `exp_map` calls
    before solving."""

    def acceleration(
        self, theta: torch.Tensor, velocity: torch.Tensor, data: Sequence[torch.Tensor] = ()
    ) -> torch.Tensor:
        """θ̈ [K, P] for θ, θ̇ [K, P]; `data` holds per-geodesic tensors [K, ...] for the loss."""
        ...


class WarmGeodesicMetric(GeodesicMetric, Protocol):
    """A metric with `warm_start = True`: it reuses each geodesic's last solve (`ids`, the rows'
    geodesic indices) and forgets them on `reset()`."""

    warm_start: bool

    def acceleration(
        self,
        theta: torch.Tensor,
        velocity: torch.Tensor,
        data: Sequence[torch.Tensor] = (),
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """θ̈ [K, P] as `GeodesicMetric.acceleration`, warm-started per geodesic id."""
        ...

    def reset(self) -> None:
        """Forget the warm starts (`exp_map` calls this before solving)."""
        ...


def is_warm(metric: GeodesicMetric) -> TypeGuard[WarmGeodesicMetric]:
    """Whether `metric` reuses each geodesic's last solve (`warm_start = True`)."""
    return bool(getattr(metric, "warm_start", False))


class MongeMetric:
    """g = I + ∇L∇Lᵀ. Its geodesics solve θ̈ = −∇L (θ̇ᵀ∇²L θ̇) / (1 + ‖∇L‖²).

    One evaluation costs one gradient and one Hessian-vector product per geodesic, never the
    Hessian. The K losses run as one vmapped (batched) forward; the gradient and the
    Hessian-vector product come from two reverse passes (double backward) through it. Measured on
    banana's MLP this is 2–4× cheaper per call than `vmap(jvp(grad(L)))`, whose per-call transform
    overhead dominates such small networks.
    """

    def __init__(self, loss: FlatLoss):
        self.loss = loss

    def acceleration(
        self, theta: torch.Tensor, velocity: torch.Tensor, data: Sequence[torch.Tensor] = ()
    ) -> torch.Tensor:
        """θ̈ [K, P] of the Monge metric by autograd: a gradient and a Hessian-vector product per
        row."""
        with torch.enable_grad():
            position = theta.detach().requires_grad_(True)
            losses = vmap(self.loss)(position, *data)
            (gradient,) = torch.autograd.grad(losses.sum(), position, create_graph=True)
            if gradient.requires_grad:
                # Σ_k ∇L(θ_k)·v_k differentiated in θ gives every row's H(θ_k) v_k at once.
                (hvp,) = torch.autograd.grad(
                    (gradient * velocity).sum(), position, allow_unused=True
                )
            else:  # L is at most linear in θ: no curvature
                hvp = None
        gradient = gradient.detach()
        curvature = (velocity * hvp).sum(dim=1, keepdim=True) if hvp is not None else 0.0
        return -gradient * curvature / (1.0 + (gradient * gradient).sum(dim=1, keepdim=True))


# ---------------------------------------------------------------------------------------------
# Closed-form Monge metric for multilayer perceptrons (and a linear head on cached features)
# ---------------------------------------------------------------------------------------------
_ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Identity: "identity"}
ROW_CHUNK_BYTES = 512 * 1024  # per-row activation bytes evaluated together (cache-sized)


class MLPMongeMetric:
    """g = I + ∇L∇Lᵀ for L = s·Σ CE(f(x; θ), y) + (τ/2)‖θ − μ‖², f an MLP, without autograd.

    The geodesic needs ∇L and the scalar θ̇ᵀ∇²Lθ̇, never the vector ∇²Lθ̇. Both come from one
    forward pass that carries each layer's value, first and second directional derivative along
    θ̇ (Taylor mode: ȧ = żWᵀ + zVᵀ + c, ä = z̈Wᵀ + 2żVᵀ) and one reverse pass for the gradient,
    all as batched matrix products over the K geodesics. This skips autograd's graph building and
    the second reverse pass that `MongeMetric` needs for its Hessian-vector product; on banana's
    MLP it is several times cheaper per evaluation (docs/riemannian.md).

    Supported: `module` an `nn.Linear` or an `nn.Sequential` of `nn.Linear` layers separated by
    `nn.Tanh`, `nn.ReLU` or `nn.Identity` (ReLU: second derivative zero almost everywhere, as
    autograd gives), every parameter varied, multiclass cross-entropy. Use
    `MLPMongeMetric.supports(module, names)` before building one.
    """

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        prior_precision: float | torch.Tensor,
        *,
        data_scale: float = 1.0,
        prior_mean: torch.Tensor | None = None,
        per_geodesic_batches: bool = False,
    ):
        layers = self._layers(module)
        if layers is None:
            raise ValueError("MLPMongeMetric needs nn.Linear or nn.Sequential(Linear, act, ...)")
        self.layers = layers  # [(out, in, has_bias, activation after it or None)]
        self.x, self.y = x, y
        classes = layers[-1][0]
        self.onehot = nn.functional.one_hot(y, classes).to(x.dtype)
        self.tau = prior_precision
        self.mu = prior_mean
        self.scale = float(data_scale)
        self.per_geodesic_batches = per_geodesic_batches

    @staticmethod
    def _layers(module: nn.Module) -> list[tuple[int, int, bool, str | None]] | None:
        mods = [module] if isinstance(module, nn.Linear) else list(module.children())
        if not isinstance(module, (nn.Linear, nn.Sequential)) or not mods:
            return None
        out: list[tuple[int, int, bool, str | None]] = []
        for m in mods:
            if isinstance(m, nn.Linear):
                if out and out[-1][3] is None:
                    # two Linear layers in a row: treat as identity activation between them
                    o, i, b, _ = out[-1]
                    out[-1] = (o, i, b, "identity")
                out.append((m.out_features, m.in_features, m.bias is not None, None))
            elif type(m) in _ACTIVATIONS and out and out[-1][3] is None:
                out[-1] = (*out[-1][:3], _ACTIVATIONS[type(m)])
            else:
                return None
        if not out or out[-1][3] not in (None, "identity"):
            return None  # the network must end in a Linear layer (logits)
        out[-1] = (*out[-1][:3], None)
        return out

    @classmethod
    def supports(cls, module: nn.Module, names: Sequence[str] | None = None) -> bool:
        """True when `module` is an MLP this class handles and `names` are all its parameters,
        in `named_parameters` order (the flat layout `ParameterView(module)` uses)."""
        if cls._layers(module) is None:
            return False
        return names is None or list(names) == [n for n, _ in module.named_parameters()]

    def gradient_and_curvature(
        self, theta: torch.Tensor, velocity: torch.Tensor, data: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """∇L(θ_k) [K, P] and θ̇_kᵀ∇²L(θ_k)θ̇_k [K] for every row k."""
        k = theta.shape[0]
        if self.per_geodesic_batches:
            index = data[0]
            z, onehot = self.x[index], self.onehot[index]  # [K, B, D], [K, B, C]
        else:
            z, onehot = self.x, self.onehot  # shared by all rows: broadcast in the products
        zd: torch.Tensor | None = None  # dz/dε along θ̇ (zero for the input)
        zdd: torch.Tensor | None = None  # d²z/dε²
        inputs, weights, slopes = [], [], []
        offset = 0
        for out_f, in_f, has_bias, act in self.layers:
            nw = out_f * in_f
            w = theta[:, offset : offset + nw].view(k, out_f, in_f)
            vw = velocity[:, offset : offset + nw].view(k, out_f, in_f)
            offset += nw
            # Fused products (baddbmm) and in-place updates: at these sizes the cost is memory
            # traffic and kernel launches, not multiply-adds.
            if z.ndim == 2 and in_f < out_f:
                # narrow shared input (banana's 2-D points): a GEMM with an inner dimension of 2
                # is slow (0.46 ms measured), batched products over the expanded input are not
                z = z.expand(k, *z.shape)
            if z.ndim == 2:
                # Wide input shared by all rows (cached features): one GEMM for every row's W
                # and V at once.
                wv = torch.cat([w, vw], dim=1).reshape(k * 2 * out_f, in_f)
                both = (z @ wv.T).view(z.shape[0], k, 2, out_f).permute(1, 2, 0, 3)
                # Contiguous [K, N, out] from here on: elementwise ops mixing this permuted
                # layout with contiguous tensors ran ~10× slower than contiguous ones.
                a, ad = both[:, 0].contiguous(), both[:, 1].contiguous()
                if has_bias:
                    a += theta[:, None, offset : offset + out_f]
                    ad += velocity[:, None, offset : offset + out_f]
                    offset += out_f
            elif has_bias:
                a = torch.baddbmm(theta[:, None, offset : offset + out_f], z, w.mT)
                ad = torch.baddbmm(velocity[:, None, offset : offset + out_f], z, vw.mT)
                offset += out_f
            else:
                a, ad = torch.bmm(z, w.mT), torch.bmm(z, vw.mT)
            add = None
            if zd is not None:
                ad.baddbmm_(zd, w.mT)
                if zdd is None:
                    add = torch.bmm(zd, vw.mT).mul_(2.0)
                else:
                    add = torch.bmm(zdd, w.mT).baddbmm_(zd, vw.mT, alpha=2.0)
            inputs.append(z)
            weights.append(w)
            if act is None:
                f, fd, fdd = a, ad, add
                break
            if act == "tanh":
                z = torch.tanh(a)
                slope = torch.mul(z, z).neg_().add_(1.0)  # tanh' = 1 − tanh²
                zd = slope * ad
                # tanh'' ȧ² = −2 tanh · tanh' · ȧ² = −2 z · ż · ȧ
                curv = torch.mul(z, zd).mul_(ad)
                zdd = curv.mul_(-2.0) if add is None else curv.mul_(-2.0).addcmul_(slope, add)
            elif act == "relu":
                slope = (a > 0).to(a.dtype)
                z, zd = a.mul_(slope), ad.mul_(slope)
                zdd = None if add is None else add.mul_(slope)
            else:  # identity
                slope = torch.ones_like(a)
                z, zd, zdd = a, ad, add
            slopes.append(slope)

        # softmax by hand: torch's kernel is slow for a last dimension of 2 (150 µs for 10K
        # logits, measured), and a one-hot target turns the residual into one subtraction.
        p = (f - f.amax(-1, keepdim=True)).exp_()
        p = p.div_(p.sum(-1, keepdim=True))
        residual = p - onehot
        pfd = (p * fd).sum(-1)
        second = (p * fd * fd).sum(-1) - pfd * pfd
        if fdd is not None:
            second = second + (residual * fdd).sum(-1)
        curvature = self.scale * second.sum(-1)

        # Reverse pass for the gradient, layer by layer from the logits.
        delta = self.scale * residual
        grads: list[torch.Tensor] = []
        for li in range(len(weights) - 1, -1, -1):
            _, _, has_bias, _ = self.layers[li]
            if has_bias:
                grads.append(delta.sum(-2))
            zin = inputs[li]
            if zin.ndim == 2:  # wide shared input (cached features): one GEMM for all rows
                gw = delta.transpose(1, 2).reshape(-1, zin.shape[0]) @ zin
            else:
                gw = delta.mT @ zin
            grads.append(gw.reshape(k, -1))
            if li > 0:
                delta = (delta @ weights[li]) * slopes[li - 1]
        gradient = torch.cat(grads[::-1], dim=1)

        d = theta if self.mu is None else theta - self.mu
        gradient = gradient + self.tau * d
        curvature = curvature + (self.tau * velocity * velocity).sum(-1)
        return gradient, curvature

    def acceleration(
        self, theta: torch.Tensor, velocity: torch.Tensor, data: Sequence[torch.Tensor] = ()
    ) -> torch.Tensor:
        """θ̈ [K, P] of the Monge metric in closed form for the MLP, in cache-sized row chunks."""
        # Rows in chunks whose per-row activations stay cache-sized: on banana's MLP 16–32 rows
        # per call cost 0.09 ms per row against 0.15 ms with all 200 rows in one call.
        width = max(max(o for o, _, _, _ in self.layers), self.x.shape[-1] if data else 0)
        points = data[0].shape[1] if data else self.x.shape[0]
        rows = max(1, ROW_CHUNK_BYTES // (points * width * theta.element_size()))
        out = []
        for i in range(0, theta.shape[0], rows):
            part = [d[i : i + rows] for d in data]
            g, c = self.gradient_and_curvature(theta[i : i + rows], velocity[i : i + rows], part)
            out.append(-g * c[:, None] / (1.0 + (g * g).sum(1, keepdim=True)))
        return out[0] if len(out) == 1 else torch.cat(out)


class LinearizedMLPMongeMetric(MLPMongeMetric):
    """`MLPMongeMetric` for the linearized network f(x; θ*) + J(x)(θ − θ*), without autograd.

    The logits are linear in θ, so f̈ = 0 and θ̇ᵀ∇²Lθ̇ = s·Σ ḟᵀ(diag p − ppᵀ)ḟ + τ‖θ̇‖² (the
    GGN's quadratic form). J(θ − θ*) and Jθ̇ are one forward-mode pass at the fixed θ* for the 2K
    tangents; ∇L = s·Jᵀ(p − y) + τ(θ − μ) is one reverse pass through the fixed θ* weights. The
    activations at θ* are computed once, so every product with a weight matrix is shared by all
    rows. Same support as `MLPMongeMetric`.
    """

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        theta_star: torch.Tensor,
        prior_precision: float | torch.Tensor,
        *,
        data_scale: float = 1.0,
        prior_mean: torch.Tensor | None = None,
        per_geodesic_batches: bool = False,
    ):
        super().__init__(
            module,
            x,
            y,
            prior_precision,
            data_scale=data_scale,
            prior_mean=prior_mean,
            per_geodesic_batches=per_geodesic_batches,
        )
        self.theta_star = theta_star.detach()
        self.star_weights: list[torch.Tensor] = []
        self.star_inputs: list[torch.Tensor] = []  # each layer's input at θ*, [N, in]
        self.star_slopes: list[torch.Tensor] = []  # σ′(a*) after each hidden layer, [N, out]
        offset = 0
        z = x
        with torch.no_grad():
            for out_f, in_f, has_bias, act in self.layers:
                w = self.theta_star[offset : offset + out_f * in_f].view(out_f, in_f)
                offset += out_f * in_f
                a = z @ w.T
                if has_bias:
                    a = a + self.theta_star[offset : offset + out_f]
                    offset += out_f
                self.star_weights.append(w)
                self.star_inputs.append(z)
                if act is None:
                    self.f_star = a
                    break
                if act == "tanh":
                    z = torch.tanh(a)
                    self.star_slopes.append(1.0 - z * z)
                elif act == "relu":
                    slope = (a > 0).to(a.dtype)
                    z = a * slope
                    self.star_slopes.append(slope)
                else:
                    z = a
                    self.star_slopes.append(torch.ones_like(a))

    def _tangent_logits(
        self, u: torch.Tensor, inputs: list[torch.Tensor], slopes: list[torch.Tensor]
    ) -> torch.Tensor:
        """J(θ*)·u for every row of u [R, P] on the points whose θ* activations are given."""
        rows = u.shape[0]
        zd = None
        offset = 0
        for li, (out_f, in_f, has_bias, act) in enumerate(self.layers):
            uw = u[:, offset : offset + out_f * in_f].view(rows, out_f, in_f)
            offset += out_f * in_f
            zin = inputs[li]
            if zin.ndim == 2 and in_f >= out_f:  # wide shared input: one GEMM for all rows
                ad = (zin @ uw.reshape(rows * out_f, in_f).T).view(zin.shape[0], rows, out_f)
                ad = ad.transpose(0, 1).contiguous()
            else:
                zb = zin.expand(rows, *zin.shape) if zin.ndim == 2 else zin
                ad = torch.bmm(zb, uw.mT)
            if has_bias:
                ad += u[:, None, offset : offset + out_f]
                offset += out_f
            if zd is not None:
                ad += zd @ self.star_weights[li].T  # fixed weights: one GEMM for all rows
            if act is None:
                return ad
            zd = ad * slopes[li]
        raise AssertionError("unreachable: the last layer has no activation")

    def gradient_and_curvature(
        self, theta: torch.Tensor, velocity: torch.Tensor, data: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """∇L and the curvature term θ̇ᵀ∇²L θ̇ of the linearized network's loss, per row."""
        k = theta.shape[0]
        tangents = torch.cat([theta - self.theta_star, velocity])
        if self.per_geodesic_batches:
            index = data[0]
            inputs = [z[index] for z in self.star_inputs]
            slopes = [s[index] for s in self.star_slopes]
            f_star, onehot = self.f_star[index], self.onehot[index]
            both = self._tangent_logits(
                tangents,
                [torch.cat([z, z]) for z in inputs],
                [torch.cat([s, s]) for s in slopes],
            )
        else:
            inputs, slopes = self.star_inputs, self.star_slopes
            f_star, onehot = self.f_star, self.onehot
            both = self._tangent_logits(tangents, inputs, slopes)
        f, fd = f_star + both[:k], both[k:]
        p = (f - f.amax(-1, keepdim=True)).exp_()
        p = p.div_(p.sum(-1, keepdim=True))
        pfd = (p * fd).sum(-1)
        curvature = self.scale * ((p * fd * fd).sum(-1) - pfd * pfd).sum(-1)

        delta = self.scale * (p - onehot)
        grads: list[torch.Tensor] = []
        for li in range(len(self.star_weights) - 1, -1, -1):
            _, _, has_bias, _ = self.layers[li]
            if has_bias:
                grads.append(delta.sum(-2))
            zin = inputs[li]
            if zin.ndim == 2:
                gw = (delta.transpose(1, 2).reshape(-1, zin.shape[0]) @ zin).view(k, -1)
            else:
                gw = (delta.mT @ zin).reshape(k, -1)
            grads.append(gw)
            if li > 0:
                delta = (delta @ self.star_weights[li]) * slopes[li - 1]
        gradient = torch.cat(grads[::-1], dim=1)
        d = theta if self.mu is None else theta - self.mu
        gradient = gradient + self.tau * d
        curvature = curvature + (self.tau * velocity * velocity).sum(-1)
        return gradient, curvature
