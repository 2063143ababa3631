"""Closed-form Monge metric for MLPs agrees with the autograd one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rashomon.sets.geodesic as geodesic
from rashomon.sets.flat import ParameterView, flat_loss
from rashomon.sets.geodesic import (
    LinearizedMLPMongeMetric,
    MLPMongeMetric,
    MongeMetric,
)
from rashomon.sets.riemannian import exp_map

DT = torch.float64


def _mlp(act: type[nn.Module], classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 6), act(), nn.Linear(6, 5), act(), nn.Linear(5, classes)).to(
        DT
    )


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU, nn.Identity])
@pytest.mark.parametrize("batches", [False, True])
def test_matches_autograd(act, batches):
    model = _mlp(act)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (40,), generator=gen)
    view = ParameterView(model)
    p = view.size
    tau = torch.rand(p, generator=gen, dtype=DT)
    mu = torch.randn(p, generator=gen, dtype=DT)
    kw = {"data_scale": 1.7, "prior_mean": mu, "per_geodesic_batches": batches}
    ref = MongeMetric(flat_loss(view, x, y, tau, **kw))
    fast = MLPMongeMetric(model, x, y, tau, **kw)
    theta = torch.randn(4, p, generator=gen, dtype=DT)
    vel = torch.randn(4, p, generator=gen, dtype=DT)
    data = [torch.randint(0, 40, (4, 15), generator=gen)] if batches else []
    expected = ref.acceleration(theta, vel, data)
    assert expected.abs().max() > 1e-3
    np.testing.assert_allclose(fast.acceleration(theta, vel, data), expected, atol=1e-12)


def test_linear_head_and_row_chunks(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    head = nn.Linear(7, 2).to(DT)
    x = torch.randn(30, 7, generator=gen, dtype=DT)
    y = torch.randint(0, 2, (30,), generator=gen)
    view = ParameterView(head)
    theta = torch.randn(9, view.size, generator=gen, dtype=DT)
    vel = torch.randn(9, view.size, generator=gen, dtype=DT)
    expected = MongeMetric(flat_loss(view, x, y, 0.5)).acceleration(theta, vel)
    fast = MLPMongeMetric(head, x, y, 0.5)
    np.testing.assert_allclose(fast.acceleration(theta, vel), expected, atol=1e-12)
    monkeypatch.setattr(geodesic, "ROW_CHUNK_BYTES", 1)  # one row per chunk
    np.testing.assert_allclose(fast.acceleration(theta, vel), expected, atol=1e-12)


def test_exp_map_end_points_agree():
    model = _mlp(nn.Tanh, classes=2)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(50, 2, generator=gen, dtype=DT)
    y = (x[:, 0] * x[:, 1] > 0).long()
    view = ParameterView(model)
    theta = view.flatten()
    v = torch.randn(3, view.size, generator=gen, dtype=DT)
    a = exp_map(flat_loss(view, x, y, 0.1), theta, v, rtol=1e-8, atol=1e-9)
    b = exp_map(None, theta, v, rtol=1e-8, atol=1e-9, metric=MLPMongeMetric(model, x, y, 0.1))
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6)


def test_supports():
    assert MLPMongeMetric.supports(nn.Linear(3, 2))
    assert MLPMongeMetric.supports(_mlp(nn.Tanh))
    assert not MLPMongeMetric.supports(nn.Sequential(nn.Linear(2, 3), nn.Sigmoid()))
    assert not MLPMongeMetric.supports(nn.Sequential(nn.Conv1d(1, 1, 1), nn.Linear(2, 2)))
    assert not MLPMongeMetric.supports(nn.Sequential(nn.Linear(2, 3), nn.Tanh()))
    assert not MLPMongeMetric.supports(_mlp(nn.Tanh), ["0.weight"])


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("batches", [False, True])
def test_linearized_matches_autograd(act, batches):
    model = _mlp(act)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(40, 2, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (40,), generator=gen)
    view = ParameterView(model)
    p = view.size
    star = view.flatten()
    tau = torch.rand(p, generator=gen, dtype=DT)
    kw = {"data_scale": 1.3, "per_geodesic_batches": batches}
    ref = MongeMetric(flat_loss(view, x, y, tau, theta_star=star, **kw))
    fast = LinearizedMLPMongeMetric(model, x, y, star, tau, **kw)
    theta = star + torch.randn(5, p, generator=gen, dtype=DT)
    vel = torch.randn(5, p, generator=gen, dtype=DT)
    data = [torch.randint(0, 40, (5, 15), generator=gen)] if batches else []
    expected = ref.acceleration(theta, vel, data)
    assert expected.abs().max() > 1e-3
    np.testing.assert_allclose(fast.acceleration(theta, vel, data), expected, atol=1e-12)
