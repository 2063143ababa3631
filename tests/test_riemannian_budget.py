"""Wall-clock budget of a batched solve: unfinished rows stop with status "timeout"."""

from __future__ import annotations

import time

import torch

from rashomon.ode import SUCCESS, TIMEOUT, solve_batched
from rashomon.sets.riemannian import exp_map


def test_solver_timeout_marks_running_rows():
    def slow(y, rows):
        time.sleep(0.002)
        return -y

    sol = solve_batched(slow, torch.ones(2, 1, dtype=torch.float64), max_seconds=0.02, rtol=1e-12)
    assert sol.status.tolist() == [TIMEOUT, TIMEOUT]
    assert sol.seconds < 1.0
    assert sol.status_counts()["timeout"] == 2
    quick = solve_batched(slow, torch.ones(1, 1, dtype=torch.float64), max_seconds=60.0)
    assert quick.status.tolist() == [SUCCESS]


def test_exp_map_timeout_reports_nan_rows():
    def loss(theta):
        return (theta**4).sum()

    theta = torch.zeros(3, dtype=torch.float64)
    v = torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ends, info = exp_map(loss, theta, v, rtol=1e-12, atol=1e-14, max_seconds=0.0, return_info=True)
    assert info.counts["timeout"] == 2 and not info.ok.any()
    assert torch.isnan(ends).all()
