"""Failed geodesics are resumed with a tighter step before they are dropped, so a geodesic that
the former behaviour (no retry) returned as a NaN row now succeeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rashomon.ode import MAX_NFEV, NON_FINITE, SUCCESS, solve_batched
from rashomon.sets.flat import ParameterView, flat_loss
from rashomon.sets.geodesic import MLPMongeMetric
from rashomon.sets.riemannian import ATOL, ERROR_NORM, ERROR_SCALE, RTOL, exp_map

DT = torch.float64


@pytest.fixture(scope="module")
def mlp():
    """A small tanh MLP on 2-D points with a long Laplace-like velocity (banana in miniature)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).to(DT)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(60, 2, generator=gen, dtype=DT)
    y = (x[:, 0] * x[:, 1] > 0).long()
    view = ParameterView(model)
    v = 6.0 * torch.randn(view.size, generator=gen, dtype=DT)
    return {
        "metric": MLPMongeMetric(model, x, y, 0.1),
        "theta": view.flatten(),
        "v": v,
        "loss": flat_loss(view, x, y, 0.1),
    }


def test_resumed_geodesic_reaches_the_same_end_point(mlp):
    theta, v, metric = mlp["theta"], mlp["v"], mlp["metric"]
    kw = {
        "rtol": 1e-8,
        "atol": 1e-9,
        "error_scale": "absolute",
        "error_norm": "rms",
        "metric": metric,
        "return_info": True,
    }
    free, info = exp_map(None, theta, v, max_nfev=100_000, **kw)
    needed = int(info.nfev)
    assert info.ok.all() and needed > 200
    cap = int(0.6 * needed)  # the first attempt runs out of evaluations...
    lost, lost_info = exp_map(None, theta, v, max_nfev=cap, retries=0, **kw)
    assert lost_info.status.tolist() == [MAX_NFEV] and torch.isnan(lost).all()
    # ... and is resumed from its last accepted point with a fresh budget and a tighter step.
    ends, retry_info = exp_map(None, theta, v, max_nfev=cap, **kw)
    assert retry_info.status.tolist() == [SUCCESS]
    assert retry_info.retries.tolist() == [1] and retry_info.retried == retry_info.recovered == 1
    assert int(retry_info.nfev) > cap
    np.testing.assert_allclose(ends.numpy(), free.numpy(), atol=1e-5)


def test_transient_non_finite_start_is_retried():
    calls = {"n": 0}

    class FlakyMetric:
        """NaN on its first two calls (e.g. an overflow at a bad first step), then −θ."""

        def acceleration(self, theta, velocity, data=()):
            calls["n"] += 1
            return torch.full_like(theta, torch.nan) if calls["n"] <= 2 else -theta

    theta = torch.tensor([1.0, -0.5], dtype=DT)
    v = torch.tensor([[0.5, 1.0]], dtype=DT)
    no_retry = exp_map(None, theta, v, metric=FlakyMetric(), retries=0, return_info=True)[1]
    assert no_retry.status.tolist() == [NON_FINITE] and no_retry.retried == 0
    calls["n"] = 0
    end, info = exp_map(
        None, theta, v, rtol=1e-10, atol=1e-12, metric=FlakyMetric(), return_info=True
    )
    assert info.ok.all() and info.retried == 1 and info.recovered == 1
    # θ̈ = −θ: θ(1) = θ0 cos 1 + v sin 1.
    expected = theta * np.cos(1.0) + v[0] * np.sin(1.0)
    np.testing.assert_allclose(end[0].numpy(), expected.numpy(), atol=1e-8)


def test_default_retry_keeps_what_no_retry_lost(mlp):
    # At the default tolerances, under a budget the first attempt runs past (as one of banana's
    # 50 geodesics ran past 20,000), the geodesic is kept instead of returned as a NaN row.
    theta, v, metric = mlp["theta"], mlp["v"], mlp["metric"]
    assert (RTOL, ATOL, ERROR_SCALE, ERROR_NORM) == (1e-6, 1e-3, "velocity", "max")
    free = exp_map(None, theta, v, metric=metric, max_nfev=10**6, return_info=True)
    cap = int(0.7 * int(free[1].nfev))
    lost, lost_info = exp_map(
        None, theta, v, metric=metric, max_nfev=cap, retries=0, return_info=True
    )
    assert lost_info.status.tolist() == [MAX_NFEV] and torch.isnan(lost).all()
    kept, info = exp_map(None, theta, v, metric=metric, max_nfev=cap, return_info=True)
    assert info.status.tolist() == [SUCCESS] and info.retried == info.recovered == 1
    assert torch.isfinite(kept).all()
    # The resumed solve follows the same geodesic to the solver's accuracy (here the free solve
    # itself is 15 % of its displacement off a tight one: the geodesic is sensitive).
    moved = float((free[0] - theta).norm())
    assert float((kept - free[0]).norm()) < 0.02 * moved


def test_solver_resumes_from_a_given_time_and_caps_steps():
    def decay(y, rows):
        return -y

    y_half = torch.full((1, 1), float(np.exp(-0.5)), dtype=DT)
    sol = solve_batched(
        decay, y_half, t0=torch.tensor([0.5], dtype=DT), max_step=0.01, rtol=1e-10, atol=1e-12
    )
    assert sol.ok.all() and int(sol.steps) >= 50  # 0.5 of time in steps of at most 0.01
    assert float(sol.h_max) <= 0.01 + 1e-15 and float(sol.t) == pytest.approx(1.0)
    np.testing.assert_allclose(sol.y.item(), np.exp(-1.0), rtol=1e-9)
