"""Geodesic exponential map: against scipy, straight lines, batching, linearization, failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch import nn

from rashomon.ode import MAX_NFEV, SUCCESS, solve_batched
from rashomon.sets.flat import ParameterView, flat_loss, minimize_flat
from rashomon.sets.geodesic import MongeMetric
from rashomon.sets.riemannian import exp_map

DT = torch.float64


@pytest.fixture(scope="module")
def logistic():
    """2-D logistic regression (weights + bias) with a Gaussian prior, at its MAP."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=gen, dtype=DT)
    y = (
        torch.rand(60, generator=gen, dtype=DT)
        < torch.sigmoid(x @ torch.tensor([2.0, -1.5], dtype=DT))
    ).long()
    model = nn.Linear(2, 2).to(DT)
    view = ParameterView(model)
    loss = flat_loss(view, x, y, prior_precision=1.0)
    theta, _ = minimize_flat(
        loss,
        torch.zeros(view.size, dtype=DT),
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-9,
        history_size=100,
    )
    return {"view": view, "loss": loss, "theta": theta.detach(), "x": x, "y": y}


def scipy_geodesic(loss, theta: torch.Tensor, v: torch.Tensor) -> np.ndarray:
    """The same ODE with an explicit Hessian, solved by scipy at tight tolerances."""
    p = theta.numel()

    def rhs(_t, state):
        th, vel = torch.from_numpy(state[:p]), torch.from_numpy(state[p:])
        g = torch.func.grad(loss)(th)
        h = torch.func.hessian(loss)(th)
        acc = -g * (vel @ h @ vel) / (1 + g @ g)
        return np.concatenate([state[p:], acc.numpy()])

    y0 = np.concatenate([theta.numpy(), v.numpy()])
    sol = solve_ivp(rhs, (0.0, 1.0), y0, rtol=1e-10, atol=1e-12)
    assert sol.success
    return sol.y[:p, -1]


def test_end_point_matches_scipy(logistic):
    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.tensor([1.2, -0.8, 0.5, -1.0, 0.3, 0.7], dtype=DT)
    end, info = exp_map(loss, theta, v, rtol=1e-7, atol=1e-8, return_info=True)
    expected = scipy_geodesic(loss, theta, v)
    assert info.ok.all()
    np.testing.assert_allclose(end.numpy(), expected, atol=1e-4)
    # The geodesic really bends: the straight line θ + v is far from its end point.
    assert np.abs((theta + v).numpy() - expected).max() > 0.1
    assert info.nfev.item() > 10


def test_tight_tolerances_agree_closer(logistic):
    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.tensor([-0.5, 1.0, 0.2, 0.4, -0.9, 0.1], dtype=DT)
    end = exp_map(loss, theta, v, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(end.numpy(), scipy_geodesic(loss, theta, v), atol=1e-7)


def test_constant_loss_gives_straight_line():
    theta = torch.tensor([0.3, -1.0, 2.0], dtype=DT)
    v = torch.tensor([[1.0, 2.0, -3.0], [0.1, 0.0, 0.5]], dtype=DT)

    def constant(th):
        return 0.0 * th.sum() + 4.0

    end, info = exp_map(constant, theta, v, t=0.5, return_info=True)
    np.testing.assert_allclose(end.numpy(), (theta + 0.5 * v).numpy(), atol=1e-12)
    assert info.ok.all()


def test_tiny_velocity_returned_unsolved(logistic):
    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.full((6,), 1e-7, dtype=DT)
    end, info = exp_map(loss, theta, v, return_info=True)
    np.testing.assert_allclose(end.numpy(), (theta + v).numpy(), atol=0)
    assert info.nfev.item() == 0


def test_batched_equals_single_solves(logistic):
    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.randn(7, 6, generator=torch.Generator().manual_seed(1), dtype=DT) * 1.5
    batched, info = exp_map(loss, theta, v, return_info=True)
    singles = torch.stack([exp_map(loss, theta, v[i]) for i in range(7)])
    # Per-geodesic step control: each row takes exactly the steps it would alone.
    np.testing.assert_allclose(batched.numpy(), singles.numpy(), atol=1e-12)
    assert len(set(info.nfev.tolist())) > 1
    chunked = exp_map(loss, theta, v, batch_size=3)
    np.testing.assert_allclose(chunked.numpy(), singles.numpy(), atol=1e-12)


def test_time_scales_velocity(logistic):
    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.tensor([1.0, 0.5, -0.5, 0.0, 1.0, -1.0], dtype=DT)
    a = exp_map(loss, theta, v, t=0.4, rtol=1e-9, atol=1e-11)
    b = exp_map(loss, theta, 0.4 * v, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-9)


def test_linearized_equals_exact_on_linear_model(logistic):
    view, x, y, theta = logistic["view"], logistic["x"], logistic["y"], logistic["theta"]
    exact = flat_loss(view, x, y, prior_precision=1.0)
    linear = flat_loss(view, x, y, prior_precision=1.0, theta_star=theta)
    v = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=DT)
    a = exp_map(exact, theta, v)
    b = exp_map(linear, theta, v)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-10)


def test_linearized_differs_on_nonlinear_model():
    torch.manual_seed(0)
    x = torch.randn(30, 2, dtype=DT)
    y = (x[:, 0] * x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    view = ParameterView(model)
    theta = view.flatten()
    v = torch.randn(view.size, dtype=DT)
    a = exp_map(flat_loss(view, x, y, 1.0), theta, v)
    b = exp_map(flat_loss(view, x, y, 1.0, theta_star=theta), theta, v)
    assert (a - b).abs().max() > 1e-3


def test_per_geodesic_minibatch_scales_data_term(logistic):
    view, x, y, theta = logistic["view"], logistic["x"], logistic["y"], logistic["theta"]
    full = flat_loss(view, x, y, 1.0)
    # A "mini-batch" that is the whole set twice over with scale 1/2 is the full loss.
    doubled = torch.cat([torch.arange(60), torch.arange(60)])
    batched = flat_loss(view, x, y, 1.0, data_scale=0.5, per_geodesic_batches=True)
    assert torch.allclose(full(theta), batched(theta, doubled))
    v = torch.randn(3, 6, generator=torch.Generator().manual_seed(3), dtype=DT)
    index = doubled[None].expand(3, -1)
    a = exp_map(batched, theta, v, data=[index])
    np.testing.assert_allclose(a.numpy(), exp_map(full, theta, v).numpy(), atol=1e-10)


def test_nfev_cap_reports_and_drops(logistic):
    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.tensor([[3.0, -2.0, 1.0, 1.0, -1.0, 2.0], [1e-3, 0, 0, 0, 0, 0]], dtype=DT)
    end, info = exp_map(loss, theta, v, max_nfev=20, return_info=True)
    assert info.status.tolist()[0] == MAX_NFEV
    assert torch.isnan(end[0]).all() and not info.ok[0]
    assert info.counts["max_nfev"] >= 1
    with pytest.warns(RuntimeWarning, match="geodesics failed"):
        exp_map(loss, theta, v, max_nfev=20)


def test_non_finite_right_hand_side_fails():
    def f(y, rows):
        out = -y.clone()
        out[rows == 1] = torch.nan
        return out

    sol = solve_batched(f, torch.ones(3, 2, dtype=DT))
    assert sol.status.tolist()[0] == SUCCESS and sol.status.tolist()[1] != SUCCESS
    np.testing.assert_allclose(sol.y[0].numpy(), np.exp(-1.0), rtol=1e-5)


def test_solver_matches_exponential_decay_per_row():
    rates = torch.tensor([0.5, 5.0, 50.0], dtype=DT)

    def f(y, rows):
        return -rates[rows, None] * y

    sol = solve_batched(f, torch.ones(3, 1, dtype=DT), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(sol.y[:, 0].numpy(), np.exp(-rates.numpy()), rtol=1e-6, atol=1e-9)
    # The stiffer rows need more evaluations; the easy one is not dragged along.
    assert sol.nfev[0] < sol.nfev[1] < sol.nfev[2]


def test_monge_acceleration_formula():
    a = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=DT)

    def quad(th):
        return 0.5 * th @ a.T @ a @ th

    theta = torch.tensor([[0.3, -0.2]], dtype=DT)
    v = torch.tensor([[1.0, 0.5]], dtype=DT)
    h = a.T @ a
    g = h @ theta[0]
    expected = -g * (v[0] @ h @ v[0]) / (1 + g @ g)
    got = MongeMetric(quad).acceleration(theta, v)
    np.testing.assert_allclose(got[0].numpy(), expected.numpy(), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(logistic):
    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.randn(3, 6, generator=torch.Generator().manual_seed(4), dtype=DT)
    cpu = exp_map(loss, theta, v)
    view = ParameterView(logistic["view"].module.to("cuda"))
    loss_gpu = flat_loss(view, logistic["x"].cuda(), logistic["y"].cuda(), 1.0)
    gpu = exp_map(loss_gpu, theta.cuda(), v.cuda())
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-8)
    logistic["view"].module.to("cpu")


def test_per_row_tolerance_equals_separate_solves():
    rates = torch.tensor([0.5, 5.0, 50.0], dtype=DT)
    atol = torch.tensor([1e-3, 1e-6, 1e-9], dtype=DT)

    def f(y, rows):
        return -rates[rows, None] * y

    together = solve_batched(f, torch.ones(3, 2, dtype=DT), rtol=1e-6, atol=atol)
    for k in range(3):

        def alone(y, rows, k=k):
            return -rates[k] * y

        sol = solve_batched(alone, torch.ones(1, 2, dtype=DT), rtol=1e-6, atol=float(atol[k]))
        assert int(sol.nfev) == int(together.nfev[k])
        np.testing.assert_allclose(together.y[k].numpy(), sol.y[0].numpy(), rtol=1e-14)


def test_max_norm_controls_the_largest_component():
    # Only the first of four components moves: the max norm sees its error undiluted (the steps
    # of the one-component problem), the RMS norm sees half of it (√4 = 2) and steps further.
    def moving(y, rows):
        out = torch.zeros_like(y)
        out[:, 0] = -3.0 * y[:, 0]
        return out

    def one(y, rows):
        return -3.0 * y

    kw = {"rtol": 1e-9, "atol": 1e-9}
    y0 = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=DT)
    by_max = solve_batched(moving, y0, error_norm="max", **kw)
    single = solve_batched(one, y0[:, :1], **kw)
    by_rms = solve_batched(moving, y0, error_norm="rms", **kw)
    assert int(by_max.nfev) == int(single.nfev) and int(by_max.steps) == int(single.steps)
    np.testing.assert_allclose(by_max.y[0, 0].item(), single.y[0, 0].item(), rtol=1e-14)
    assert int(by_rms.steps) < int(by_max.steps)
    with pytest.raises(ValueError, match="error_norm"):
        solve_batched(one, y0, error_norm="l1")


def test_velocity_error_scale_is_atol_times_rms_velocity(logistic):
    from rashomon.sets.riemannian import GeodesicSolver

    theta, loss = logistic["theta"], logistic["loss"]
    v = torch.tensor([[1.2, -0.8, 0.5, -1.0, 0.3, 0.7], [0.1, 0.2, 0.0, 0.0, -0.1, 0.4]], dtype=DT)
    solver = GeodesicSolver(rtol=1e-6, atol=1e-3, error_scale="velocity", error_norm="max")
    rms = (v * v).mean(1, keepdim=True).sqrt()  # 0.8165..., 0.2160...
    np.testing.assert_allclose(solver.absolute_tolerance(v).numpy(), 1e-3 * rms.numpy())
    scaled, info = exp_map(loss, theta, v, solver=solver, return_info=True)
    for k in range(2):
        absolute, one = exp_map(
            loss,
            theta,
            v[k],
            solver=solver,
            error_scale="absolute",
            atol=float(1e-3 * rms[k]),
            return_info=True,
        )
        assert int(one.nfev) == int(info.nfev[k])
        np.testing.assert_allclose(scaled[k].numpy(), absolute.numpy(), rtol=1e-12)


def test_solver_settings_are_checked(logistic):
    from rashomon.errors import RashomonError
    from rashomon.sets.riemannian import GeodesicSolver

    with pytest.raises(RashomonError, match="error_norm"):
        GeodesicSolver(error_norm="l1")
    with pytest.raises(RashomonError, match="error_scale"):
        GeodesicSolver(error_scale="relative")
    with pytest.raises(RashomonError, match="positive"):
        GeodesicSolver(atol=0.0)
    with pytest.raises(RashomonError, match="unknown solver setting"):
        exp_map(logistic["loss"], logistic["theta"], logistic["theta"], tolerance=1e-3)
    # exp_map's older name for the geodesics per solve still works.
    assert GeodesicSolver().with_options(batch_size=3).geodesic_batch == 3
