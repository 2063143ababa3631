"""rs.riemannian(refine_map=True): the geodesics start from a stationary point of their loss."""

from __future__ import annotations

import pytest
import torch

import rashomon as rs
from rashomon.errors import RashomonError


@pytest.fixture(scope="module")
def model(tiny_tanh_cnn):
    return tiny_tanh_cnn


def test_refined_map_is_stationary(model, tiny_task):
    plain = rs.riemannian(model, tiny_task, subset="last_layer", prior=2.0)
    post = rs.riemannian(model, tiny_task, subset="last_layer", prior=2.0, refine_map=True)
    info = post.meta["refine"]
    assert plain.meta["refine"] is None
    assert info["grad_norm_after"] < 1e-3 * max(info["grad_norm_before"], 1.0)
    assert info["loss_after"] <= info["loss_before"]
    # The Laplace fit (velocities, to_set) and the geodesics use the refined head.
    head = torch.cat([p.detach().flatten() for p in post.laplace.model.head.parameters()])
    torch.testing.assert_close(post.theta_star.cpu(), head)
    theta = post.theta_star.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(post.loss(theta), theta)
    assert float(g.norm()) < 1e-2 * max(info["grad_norm_before"], 1.0)
    assert post.meta["right_hand_side"] == "closed_form"
    mset = post.sample(3, seed=0)
    assert len(mset) + mset.meta["failed"] == 3
    # The caller's model is untouched.
    assert not torch.equal(model.head.weight.detach(), post.laplace.model.head.weight.detach())


def test_refine_needs_last_layer(model, tiny_task):
    with pytest.raises(RashomonError, match="last_layer"):
        rs.riemannian(model, tiny_task, subset="all", prior=2.0, refine_map=True)
