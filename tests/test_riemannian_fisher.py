"""Fisher-metric geodesics against a dense reference: dense G, autograd Christoffel terms,
torch.linalg.solve; conjugate gradients against the dense solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch import nn

from rashomon.sets.fisher import (
    FisherMetric,
    MLPFisherMetric,
    christoffel_residual,
    conjugate_gradient,
)
from rashomon.sets.flat import ParameterView
from rashomon.sets.riemannian import exp_map

DT = torch.float64


def dense_metric(logits, theta: torch.Tensor, tau, scale: float) -> torch.Tensor:
    """G(θ) = s·Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i + diag(τ), from the full Jacobian."""
    jac = torch.func.jacrev(logits)(theta)  # [N, C, P]
    p = torch.softmax(logits(theta), dim=-1)
    h = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    g = scale * torch.einsum("ncp,ncd,ndq->pq", jac, h, jac)
    return g + torch.diag(torch.as_tensor(tau, dtype=theta.dtype).expand(theta.numel()))


def dense_acceleration(logits, theta, v, tau, scale) -> torch.Tensor:
    """θ̈^k = −G^{kl} (∂_i G_lj − ½ ∂_l G_ij) v^i v^j, every derivative by autograd."""

    def g_of(t):
        return dense_metric(logits, t, tau, scale)

    _, dg_v = torch.func.jvp(lambda t: g_of(t) @ v, (theta,), (v,))  # (∂_i G_lj v^i) v^j
    half = 0.5 * torch.func.grad(lambda t: v @ g_of(t) @ v)(theta)
    return -torch.linalg.solve(g_of(theta), dg_v - half)


def _mlp(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, classes)
    ).to(DT)


@pytest.fixture(scope="module")
def mlp_setup():
    model = _mlp()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(25, 2, generator=gen, dtype=DT)
    view = ParameterView(model)
    p = view.size
    tau = torch.rand(p, generator=gen, dtype=DT) + 0.5
    theta = view.flatten() + 0.3 * torch.randn(3, p, generator=gen, dtype=DT)
    vel = torch.randn(3, p, generator=gen, dtype=DT)
    return {"model": model, "x": x, "view": view, "tau": tau, "theta": theta, "vel": vel}


def test_residual_is_half_the_sphere_embedding_acceleration():
    # r = J_gᵀ z̈ for z = 2√softmax(f) along f(ε) = f + εḟ + ε²f̈/2, by autograd.
    gen = torch.Generator().manual_seed(2)
    f, fd, fdd = (torch.randn(4, generator=gen, dtype=DT) for _ in range(3))

    def z(e):
        return 2.0 * torch.sqrt(torch.softmax(f + e * fd + 0.5 * e * e * fdd, dim=0))

    e0 = torch.zeros((), dtype=DT)
    zdd = torch.func.jacfwd(torch.func.jacfwd(z))(e0)
    jg = torch.func.jacrev(lambda g: 2.0 * torch.sqrt(torch.softmax(g, dim=0)))(f)
    expected = jg.T @ zdd
    got = christoffel_residual(torch.softmax(f, 0)[None], fd[None], fdd[None])[0]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-12)


@pytest.mark.parametrize("closed", [True, False])
def test_acceleration_matches_dense_reference(mlp_setup, closed):
    s = mlp_setup
    scale = 1.7
    view, x, tau = s["view"], s["x"], s["tau"]

    def logits(t):
        return view.forward(t, x)

    if closed:
        metric = MLPFisherMetric(s["model"], x, tau, data_scale=scale, cg_tol=1e-13)
    else:
        metric = FisherMetric(logits, tau, data_scale=scale, cg_tol=1e-13)
    got = metric.acceleration(s["theta"], s["vel"])
    for k in range(3):
        expected = dense_acceleration(logits, s["theta"][k], s["vel"][k], tau, scale)
        assert expected.abs().max() > 1e-2
        np.testing.assert_allclose(got[k].numpy(), expected.numpy(), rtol=1e-8, atol=1e-9)


def test_linear_head_on_shared_and_per_geodesic_features():
    gen = torch.Generator().manual_seed(3)
    head = nn.Linear(6, 3).to(DT)
    feats = torch.randn(40, 6, generator=gen, dtype=DT)
    view = ParameterView(head)
    theta = view.flatten() + torch.randn(4, view.size, generator=gen, dtype=DT)
    vel = torch.randn(4, view.size, generator=gen, dtype=DT)
    shared = MLPFisherMetric(head, feats, 0.8, data_scale=2.0, cg_tol=1e-13)
    got = shared.acceleration(theta, vel)
    index = torch.randint(0, 40, (4, 15), generator=gen)
    batched = MLPFisherMetric(
        head, feats, 0.8, data_scale=2.0, per_geodesic_batches=True, cg_tol=1e-13
    )
    got_b = batched.acceleration(theta, vel, [index])
    for k in range(4):
        expected = dense_acceleration(lambda t: view.forward(t, feats), theta[k], vel[k], 0.8, 2.0)
        np.testing.assert_allclose(got[k].numpy(), expected.numpy(), rtol=1e-8, atol=1e-10)
        xb = feats[index[k]]
        expected_b = dense_acceleration(
            lambda t, xb=xb: view.forward(t, xb), theta[k], vel[k], 0.8, 2.0
        )
        np.testing.assert_allclose(got_b[k].numpy(), expected_b.numpy(), rtol=1e-8, atol=1e-10)


def test_conjugate_gradient_equals_dense_solve():
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(5, 30, 30, generator=gen, dtype=DT)
    mats = a @ a.mT + 0.1 * torch.eye(30, dtype=DT)  # one SPD matrix per row, κ ≈ 1e3
    b = torch.randn(5, 30, generator=gen, dtype=DT)
    expected = torch.linalg.solve(mats, b)

    def matvec(u, rows):
        return torch.einsum("kpq,kq->kp", mats[rows], u)

    x, iters = conjugate_gradient(matvec, b, tol=1e-12, max_iter=1000)
    np.testing.assert_allclose(x.numpy(), expected.numpy(), rtol=1e-8, atol=1e-9)
    # An exact preconditioner for row 0 (its inverse) converges there in one iteration.
    inv0 = torch.linalg.inv(mats[0])
    xp, iters_p = conjugate_gradient(
        lambda u, rows: matvec(u, rows[:1]), b[:1], precondition=lambda r: r @ inv0.T, tol=1e-10
    )
    np.testing.assert_allclose(xp.numpy(), expected[:1].numpy(), rtol=1e-8, atol=1e-9)
    assert int(iters_p[0]) == 1 < int(iters[0])


@pytest.fixture(scope="module")
def tiny_setup():
    """A 2-3-3 tanh MLP on 12 points: small enough for a dense right-hand side in an ODE."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3)).to(DT)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(12, 2, generator=gen, dtype=DT)
    view = ParameterView(model)
    v = 1.5 * torch.randn(view.size, generator=gen, dtype=DT)
    return {"model": model, "x": x, "view": view, "tau": 0.7, "v": v}


def test_end_points_match_dense_ode(tiny_setup):
    s = tiny_setup
    view, x, tau, v = s["view"], s["x"], s["tau"], s["v"]
    theta0 = view.flatten()
    p = theta0.numel()

    def logits(t):
        return view.forward(t, x)

    metric = MLPFisherMetric(s["model"], x, tau, cg_tol=1e-12)
    end, info = exp_map(None, theta0, v, rtol=1e-8, atol=1e-9, metric=metric, return_info=True)
    assert info.ok.all()

    def rhs(_t, state):
        th, vel = torch.from_numpy(state[:p]), torch.from_numpy(state[p:])
        acc = dense_acceleration(logits, th, vel, tau, 1.0)
        return np.concatenate([state[p:], acc.numpy()])

    y0 = np.concatenate([theta0.numpy(), v.numpy()])
    ref = solve_ivp(rhs, (0.0, 1.0), y0, method="DOP853", rtol=1e-8, atol=1e-9)
    assert ref.success
    np.testing.assert_allclose(end.numpy(), ref.y[:p, -1], atol=1e-5)
    assert np.abs(ref.y[:p, -1] - (theta0 + v).numpy()).max() > 1e-2  # the geodesic bends


def test_geodesic_keeps_its_fisher_speed(tiny_setup):
    # Geodesics have constant speed: θ̇ᵀG(θ)θ̇ at t = 1 equals vᵀG(θ*)v.
    from rashomon.ode import solve_batched

    s = tiny_setup
    view, x, tau, v = s["view"], s["x"], s["tau"], s["v"]
    theta0 = view.flatten()
    p = theta0.numel()
    metric = MLPFisherMetric(s["model"], x, tau, cg_tol=1e-12)

    def rhs(state, _rows):
        return torch.cat([state[:, p:], metric.acceleration(state[:, :p], state[:, p:])], dim=1)

    sol = solve_batched(rhs, torch.cat([theta0, v])[None], rtol=1e-9, atol=1e-10)
    th1, v1 = sol.y[0, :p], sol.y[0, p:]

    def logits(t):
        return view.forward(t, x)

    start = v @ dense_metric(logits, theta0, tau, 1.0) @ v
    end = v1 @ dense_metric(logits, th1, tau, 1.0) @ v1
    assert float(end) == pytest.approx(float(start), rel=1e-7)
    assert float((v1 - v).abs().max()) > 1e-2  # the velocity did change
