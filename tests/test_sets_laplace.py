"""Laplace sets: samples follow laplace-torch's posterior; options and bad inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import rashomon as rs
from rashomon.errors import RashomonError
from rashomon.models.registry import build_model
from rashomon.sets.base import ModelSet


@pytest.fixture(scope="module")
def model(tiny_task):
    return rs.train(
        tiny_task, "cnn", epochs=1, seed=0, arch_options={"width": 0.25}, progress=False
    )


@pytest.fixture(scope="module")
def post_ll(model, tiny_task):
    return rs.laplace(model, tiny_task, subset="last_layer", hessian="kron", prior=2.0)


def test_last_layer_samples_match_posterior(post_ll, model):
    head = torch.cat([model.head.weight.detach().flatten(), model.head.bias.detach()])
    torch.testing.assert_close(post_ll.mean, head)
    assert post_ll.param_names == ["head.weight", "head.bias"]
    n = 20_000
    dev = post_ll.sample_deviations(n, seed=0).double()
    cov = post_ll.la.posterior_precision.to_matrix(exponent=-1).double()
    sd = cov.diagonal().sqrt()
    # mean of n draws: within 5 standard errors of 0 for every coordinate
    assert (dev.mean(0).abs() / (sd / n**0.5)).max() < 5
    emp = torch.cov(dev.T)
    rel = (emp - cov).norm() / cov.norm()
    # sampling error of a covariance estimate: about sqrt(P / n) in relative Frobenius norm
    assert rel < 2 * (len(cov) / n) ** 0.5, rel
    assert ((emp.diagonal() / cov.diagonal()) - 1).abs().max() < 0.1
    # against the precision too: Σ̂ P ≈ I
    prec = post_ll.la.posterior_precision.to_matrix(exponent=1).double()
    eye = torch.eye(len(cov), dtype=torch.float64)
    assert ((emp @ prec - eye).abs().max()) < 0.15
    assert post_ll.prior_precision == pytest.approx(2.0)


def test_sample_is_seeded_and_fixed(post_ll, tiny_task):
    a = post_ll.sample(6, seed=3)
    b = post_ll.sample(6, seed=3)
    c = post_ll.sample(6, seed=4)
    assert torch.equal(a.samples, b.samples)
    assert not torch.equal(a.samples, c.samples)
    # The same model gives the same probabilities on the same inputs, call after call.
    x = tiny_task.test.x[:10]
    torch.testing.assert_close(a.predict(x), a.predict(x), rtol=0, atol=0)
    torch.testing.assert_close(a.subset([2]).predict(x)[0], a.predict(x)[2])
    assert a.source == "laplace" and a.meta["hessian"] == "kron"


def test_diag_and_full_last_layer(model, tiny_task):
    for hessian in ("diag", "full"):
        post = rs.laplace(model, tiny_task, hessian=hessian, prior=1.0)
        dev = post.sample_deviations(8000, seed=1).double()
        var = post.covariance().diagonal().double()
        ratio = dev.var(0) / var
        assert (ratio - 1).abs().max() < 0.15, (hessian, ratio)


def test_full_hessian_samples_have_the_posterior_covariance(model, tiny_task):
    """laplace-torch 0.3 draws a full-covariance sample as L z with Σ = L Lᵀ; 0.2.x drew Lᵀ z,
    of covariance LᵀL (laplace-torch issue 268), hence the floor laplace-torch>=0.3."""
    post = rs.laplace(model, tiny_task, hessian="full", prior=1.0)
    n = 20_000
    dev = post.sample_deviations(n, seed=0).double()
    cov = post.la.posterior_covariance.detach().double()
    # Whitened by the precision's Cholesky factor C (Σ⁻¹ = C Cᵀ, so Cᵀ Σ C = I), every
    # direction counts alike, however small its variance: W = Cᵀ Σ̂ C estimates I.
    chol = torch.linalg.cholesky(post.la.posterior_precision.detach().double())
    P = len(cov)

    def whitened_error(sigma: torch.Tensor) -> float:
        return float((chol.T @ sigma @ chol - torch.eye(P, dtype=torch.float64)).norm())

    # For Gaussian draws Var(W_ij) = (δ_ij + 1) / n, so E‖W − I‖² = (P² + P) / n; the error
    # concentrates around its root (measured here: 1.0 of it), 1.5 of it is the tolerance.
    rms = ((P * P + P) / n) ** 0.5
    assert whitened_error(torch.cov(dev.T)) < 1.5 * rms
    # ... and it tells the 0.2.x covariance apart (measured: 66 times the root)
    scale = post.la.posterior_scale.detach().double()
    assert whitened_error(scale.T @ scale) > 10 * rms


def test_prior_marglik_and_grid(model, tiny_task):
    post = rs.laplace(model, tiny_task, prior="marglik")
    assert post.prior_precision > 0 and post.meta["prior"] == "marglik"
    grid = (1e-3, 1.0, 1e3)
    post = rs.laplace(model, tiny_task, prior="grid", grid=grid, grid_models=8)
    nll = post.meta["grid_nll"]
    assert len(nll) == 3
    best = min(nll, key=nll.get)
    assert post.prior_precision == pytest.approx(float(best))


def test_all_weights_kron_and_glm(model, tiny_task):
    post = rs.laplace(model, tiny_task, subset="all", hessian="kron", prior=10.0)
    assert post.param_names == [n for n, _ in model.named_parameters()]
    nn = post.sample(3, seed=0, kind="nn")
    glm = post.sample(3, seed=0, kind="glm")
    assert torch.equal(nn.samples, glm.samples)
    x = tiny_task.test.x[:5]
    p_nn, p_glm = nn.predict(x), glm.predict(x)
    assert p_nn.shape == p_glm.shape == (3, 5, 2)
    assert torch.allclose(p_glm.sum(-1), torch.ones(3, 5))


def test_subnetworks(model, tiny_task):
    post = rs.laplace(
        model,
        tiny_task,
        subset="subnetwork",
        hessian="kron",
        prior=5.0,
        subnetwork=["body.10", "head"],
    )
    assert post.param_names == ["body.10.weight", "body.10.bias", "head.weight", "head.bias"]
    mset = post.sample(4, seed=0)
    assert mset.samples.shape[1] == sum(
        p.numel() for n, p in model.named_parameters() if n in post.param_names
    )


@pytest.mark.slow  # fits a diagonal Laplace over all weights to rank them (about 20 s here)
def test_largest_variance_subnetwork(model, tiny_task):
    post = rs.laplace(
        model, tiny_task, subset="subnetwork", hessian="diag", prior=5.0, subnetwork=40
    )
    mset = post.sample(4, seed=0)
    moved = (mset.samples != mset.theta_map[None]).any(0).sum()
    assert 0 < int(moved) <= 40


def test_bad_inputs(model, tiny_task, post_ll):
    for n in (0, -3):
        with pytest.raises(RashomonError, match="positive"):
            post_ll.sample(n)
    with pytest.raises(RashomonError, match="last_layer, all, subnetwork"):
        rs.laplace(model, tiny_task, subset="first_layer")
    with pytest.raises(RashomonError, match="diag, kron, full, lowrank"):
        rs.laplace(model, tiny_task, hessian="block")
    with pytest.raises(RashomonError, match="marglik, grid"):
        rs.laplace(model, tiny_task, prior="best")
    with pytest.raises(RashomonError, match=r"needs \d+\.\d [KMG]B"):
        rs.laplace(model, tiny_task, subset="all", hessian="full", max_memory="1MB")
    with pytest.raises(RashomonError, match="kind"):
        post_ll.sample(3, kind="linear")
    multilabel = dataclasses.replace(tiny_task, kind="multilabel")
    with pytest.raises(RashomonError, match="multilabel"):
        rs.laplace(model, multilabel)
    resnet = build_model("resnet18", 1, 2)
    with pytest.raises(RashomonError, match="subset='last_layer'"):
        rs.laplace(resnet, tiny_task, subset="all", hessian="kron")
    from importlib.util import find_spec

    if find_spec("asdfghjkl") is None:  # PyPI's asdfghjkl installs `asdl`, not this module
        with pytest.raises(RashomonError, match="asdfghjkl backend .*use kron, diag or full"):
            rs.laplace(model, tiny_task, subset="all", hessian="lowrank")


def test_set_of_another_architecture_or_task(post_ll, tiny_task, task_pneumonia, tmp_path):
    mset = post_ll.sample(3, seed=0)
    other = build_model("cnn-small", 1, 2)
    with pytest.raises(RashomonError, match="architecture"):
        mset.validate(model=other)
    mset.save(tmp_path / "set.pt")
    with pytest.raises(RashomonError, match="task"):
        ModelSet.load(tmp_path / "set.pt", task=task_pneumonia)
    three = dataclasses.replace(tiny_task, num_classes=3)
    with pytest.raises(RashomonError, match="classes"):
        mset.validate(task=three)
    loaded = ModelSet.load(tmp_path / "set.pt", task=tiny_task)
    x = tiny_task.val.x[:7]
    torch.testing.assert_close(loaded.predict(x), mset.predict(x))
