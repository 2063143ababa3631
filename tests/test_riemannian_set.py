"""rs.riemannian: Riemannian Laplace sets on a small real task (last layer and all weights)."""

from __future__ import annotations

import pytest
import torch

import rashomon as rs
from rashomon.errors import RashomonError
from rashomon.sets.base import ModelSet
from rashomon.sets.flat import ParameterView, flat_loss
from rashomon.sets.riemannian import exp_map


@pytest.fixture(scope="module")
def model(tiny_tanh_cnn):
    return tiny_tanh_cnn


@pytest.fixture(scope="module")
def post_ll(model, tiny_task):
    return rs.riemannian(model, tiny_task, subset="last_layer", hessian="kron", prior=2.0)


def test_last_layer_set(post_ll, model, tiny_task):
    mset = post_ll.sample(6, seed=0)
    assert isinstance(mset, ModelSet) and mset.source == "riemannian" and mset.kind == "nn"
    assert mset.param_names == ["head.weight", "head.bias"]
    assert len(mset) + mset.meta["failed"] == 6 and len(mset) >= 5
    assert len(mset.meta["nfev"]) == len(mset) and min(mset.meta["nfev"]) > 0
    # The end points are the exp map of the Laplace velocities under the cached-feature loss.
    v = post_ll.velocities(6, seed=0)
    feats = model.features(tiny_task.train.x).detach()
    head = torch.nn.Linear(feats.shape[1], 2)
    head.load_state_dict(model.head.state_dict())
    loss = flat_loss(ParameterView(head), feats, tiny_task.train.y, 2.0)
    theta = torch.cat([model.head.weight.detach().flatten(), model.head.bias.detach()])
    ends = exp_map(loss, theta, v)
    ok = ~torch.isnan(ends).any(1)
    torch.testing.assert_close(mset.samples, ends[ok], atol=1e-4, rtol=1e-4)
    # Seeded: the same call gives the same set.
    again = post_ll.sample(6, seed=0)
    torch.testing.assert_close(again.samples, mset.samples)
    probs = mset.predict(tiny_task.test.x[:7])
    assert probs.shape == (len(mset), 7, 2)
    assert torch.allclose(probs.sum(-1), torch.ones(len(mset), 7))


def test_geodesics_stay_lower_than_straight_lines(post_ll):
    v = post_ll.velocities(8, seed=1) * 3.0  # long velocities: where the geometry matters
    ends, info = post_ll.end_points(v)
    straight = post_ll.theta_star[None] + v
    loss = post_ll.loss
    riem = torch.stack([loss(e) for e in ends[info.ok]])
    eucl = torch.stack([loss(s) for s in straight[info.ok]])
    assert info.ok.sum() >= 6
    assert riem.mean() < eucl.mean()


def test_all_weights_minibatch_and_linearized(model, tiny_task):
    post = rs.riemannian(
        model,
        tiny_task,
        subset="all",
        hessian="kron",
        prior=50.0,
        batch_size=32,
        rtol=1e-3,
        atol=1e-3,
        max_nfev=400,
    )
    assert post.meta["data_scale"] == pytest.approx(len(tiny_task.train.y) / 32)
    mset = post.sample(2, seed=0)
    assert mset.kind == "nn" and mset.num_varied == sum(p.numel() for p in model.parameters())
    assert len(mset) + mset.meta["failed"] == 2
    lin = rs.riemannian(
        model,
        tiny_task,
        subset="all",
        linearized=True,
        hessian="kron",
        prior=50.0,
        batch_size=32,
        rtol=1e-3,
        atol=1e-3,
        max_nfev=400,
    )
    lset = lin.sample(2, seed=0)
    assert lset.kind == "glm" and lset.source == "riemannian"


def test_bad_inputs(model, tiny_task, post_ll):
    with pytest.raises(RashomonError, match="subset"):
        rs.riemannian(model, tiny_task, subset="conv")
    with pytest.raises(RashomonError, match="batch_size"):
        rs.riemannian(model, tiny_task, batch_size=10**6)
    with pytest.raises(RashomonError, match="kind"):
        post_ll.sample(2, kind="glm")


def test_fisher_last_layer_set(model, tiny_task):
    from rashomon.sets.fisher import MLPFisherMetric

    post = rs.riemannian(model, tiny_task, subset="last_layer", prior=2.0, metric="fisher")
    assert post.meta["metric"] == "fisher" and post.meta["right_hand_side"] == "closed_form"
    assert isinstance(post.metric, MLPFisherMetric)
    mset = post.sample(6, seed=0)
    assert mset.source == "riemannian" and len(mset) == 6 and mset.meta["failed"] == 0
    # The Laplace-covariance preconditioner changes the CG iterations, not the geodesics.
    v = post.velocities(6, seed=0)
    feats = model.features(tiny_task.train.x).detach()
    plain = MLPFisherMetric(post.laplace.model.head, feats, 2.0, cg_tol=1e-6)
    ends = exp_map(None, post.theta_star, v, metric=plain)
    torch.testing.assert_close(mset.samples, ends, atol=1e-3, rtol=1e-3)
    assert post.metric.cg_iterations_mean < plain.cg_iterations_mean
    # The Fisher metric ignores the labels: its geodesics need not lower the loss (unlike
    # Monge's); what they keep is their Fisher speed (tests/test_riemannian_fisher.py).
    probs = mset.predict(tiny_task.test.x[:5])
    assert torch.isfinite(probs).all() and probs.shape == (6, 5, 2)


def test_fisher_all_weights_uses_torch_func_products(model, tiny_task):
    from rashomon.sets.fisher import FisherMetric

    post = rs.riemannian(
        model,
        tiny_task,
        subset="all",
        prior=50.0,
        batch_size=32,
        rtol=1e-3,
        atol=1e-3,
        max_nfev=400,
        metric="fisher",
    )
    assert isinstance(post.metric, FisherMetric) and post.meta["right_hand_side"] == "autograd"
    mset = post.sample(2, seed=0)
    assert len(mset) + mset.meta["failed"] == 2 and "retried" in mset.meta


def test_fisher_refuses_multilabel(model, tiny_task):
    import dataclasses

    multilabel = dataclasses.replace(tiny_task, kind="multilabel")
    with pytest.raises(RashomonError, match="fisher"):
        rs.riemannian(model, multilabel, metric="fisher")


def test_settings_reach_the_solver_and_the_metric(model, tiny_task):
    from rashomon.sets.riemannian import GeodesicSolver

    post = rs.riemannian(
        model,
        tiny_task,
        prior=2.0,
        metric="fisher",
        rtol=1e-4,
        atol=1e-5,
        max_nfev=123,
        error_norm="rms",
        retries=0,
        cg_tol=1e-5,
        cg_max_iter=77,
    )
    assert post.solver == GeodesicSolver(
        rtol=1e-4, atol=1e-5, max_nfev=123, error_norm="rms", retries=0
    )
    assert (post.metric.cg_tol, post.metric.cg_max_iter) == (1e-5, 77)
    assert post.meta["rtol"] == 1e-4 and post.meta["error_scale"] == "velocity"
    # A solver object, with a loose setting on top of it.
    given = GeodesicSolver(atol=1e-2, error_scale="absolute")
    post2 = rs.riemannian(model, tiny_task, prior=2.0, solver=given, max_nfev=50)
    assert post2.solver == GeodesicSolver(atol=1e-2, error_scale="absolute", max_nfev=50)
    with pytest.raises(RashomonError, match="unknown setting"):
        rs.riemannian(model, tiny_task, prior=2.0, tolerance=1e-3)


def test_kron_preconditioner_is_the_laplace_covariance(model, tiny_task):
    from rashomon.sets.riemannian import _covariance_operator

    post = rs.laplace(model, tiny_task, subset="last_layer", hessian="kron", prior=2.0)
    precision = post.la.posterior_precision
    dense = precision.to_matrix().double()
    u = torch.randn(3, dense.shape[0], generator=torch.Generator().manual_seed(0))
    got = _covariance_operator(post)(u)
    # laplace-torch's own product P⁻¹u, and the dense inverse (float32 factors: ~1e-6 relative)
    torch.testing.assert_close(got, precision.bmm(u[:, None], exponent=-1)[:, 0])
    expected = torch.linalg.solve(dense, u.double().T).T.float()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("metric", ["monge", "fisher"])
def test_linearized_subspace_geodesics_are_the_full_space_ones(model, tiny_task, metric):
    import dataclasses

    from rashomon.sets.riemannian import RiemannianPosterior

    post = rs.riemannian(
        model,
        tiny_task,
        subset="all",
        linearized=True,
        prior=50.0,
        batch_size=16,
        metric=metric,
        rtol=1e-6,
        atol=1e-6,
        error_scale="absolute",
    )
    assert post.meta["right_hand_side"] == "subspace"
    full = RiemannianPosterior(
        post.laplace,
        dataclasses.replace(post.problem, subspace=None, reduced_metric=None),
        post.solver,
        subset="all",
        linearized=True,
        meta=post.meta,
    )
    v = post.velocities(2, seed=0)
    reduced, info = post.end_points(v, seed=0)
    expected, full_info = full.end_points(v, seed=0)
    assert info.ok.all() and full_info.ok.all()
    moved = (expected - post.theta_star).norm(dim=1)
    assert (moved > 0.1 * v.norm(dim=1)).all()  # geodesics that go somewhere
    # The subspace solve integrates 2·(16·2 + 2) instead of 2·P coordinates: same end points.
    error = (reduced - expected).norm(dim=1) / moved
    assert float(error.max()) < 1e-3
    mset = post.sample(2, seed=0)
    assert mset.kind == "glm" and len(mset) == 2
