"""Multilabel last-layer Laplace: curvlinops' BCE GGN, the evidence-optimal prior, the set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rashomon as rs
from rashomon.errors import RashomonError
from rashomon.sets.bernoulli import head_ggn, log_evidence, marglik_prior
from tests.conftest import synthetic_npz


def test_head_ggn_equals_the_autograd_hessian_of_summed_bce():
    torch.manual_seed(0)
    head = nn.Linear(4, 3).double()
    phi = torch.randn(25, 4, dtype=torch.float64)
    y = (torch.rand(25, 3) < 0.4).double()

    def loss(flat):
        w, b = flat[:12].reshape(3, 4), flat[12:]
        return nn.functional.binary_cross_entropy_with_logits(phi @ w.T + b, y, reduction="sum")

    theta = torch.cat([head.weight.flatten(), head.bias]).detach()
    hess = torch.autograd.functional.hessian(loss, theta)
    ggn = head_ggn(head, phi, y)
    torch.testing.assert_close(ggn, hess, rtol=1e-10, atol=1e-10)
    # BCE couples no two labels: the weight-weight blocks of different labels are zero
    assert torch.count_nonzero(ggn[:4, 4:8]) == 0


def test_marglik_prior_maximises_the_evidence():
    rng = np.random.default_rng(1)
    eig = torch.tensor(rng.gamma(2.0, 3.0, size=20), dtype=torch.float64)
    best = marglik_prior(eig, theta_norm2=7.5, nll=30.0)
    grid = torch.logspace(-8, 8, 20001, dtype=torch.float64)
    values = log_evidence(eig, 7.5, 30.0, grid)
    brute = float(grid[values.argmax()])
    assert best == pytest.approx(brute, rel=2e-3)
    # at the optimum the derivative in δ vanishes: P/δ = ‖θ‖² + Σ 1/(λ+δ)
    assert 20 / best == pytest.approx(7.5 + float((1 / (eig + best)).sum()), rel=1e-6)


def test_multilabel_laplace_set_predicts_sigmoid_heads(tmp_path):
    synthetic_npz(tmp_path / "chestmnist.npz", sizes=(200, 60, 60), n_labels=14, seed=3)
    task = rs.load_task("chestmnist", root=tmp_path)
    assert task.kind == "multilabel" and task.num_classes == 14
    net = rs.train(task, "cnn", epochs=2, seed=0, arch_options={"width": 0.25}, progress=False)
    post = rs.laplace(net, task, prior="marglik")
    assert post.prior_precision > 0 and post.meta["likelihood"] == "bernoulli"
    mset = post.sample(50, seed=0)
    assert mset.multilabel and mset.head_only and len(mset) == 50
    p = mset.predict(task.test.x)
    assert p.shape == (50, len(task.test), 14)
    # model m is the network with sampled head m, through a sigmoid per label
    torch.testing.assert_close(p[3], torch.sigmoid(mset.model(3)(task.test.x)), atol=1e-5, rtol=0)
    # the draws have the posterior covariance
    dev = post.sample_deviations(20000, seed=2).double()
    cov = torch.cov(dev.T)
    ref = post.covariance().double()
    assert float((cov - ref).abs().max() / ref.diagonal().max()) < 0.05
    with pytest.raises(RashomonError, match="multilabel tasks have a last-layer Laplace only"):
        rs.laplace(net, task, subset="all")
