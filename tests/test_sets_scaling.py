"""Gaussian sets scaled to the Rashomon set: ε-targeted scale and boundary sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rashomon as rs
from rashomon.predict import model_probs
from rashomon.sets.rashomon import model_scores
from rashomon.sets.registry import BuildContext, build_model_set


@pytest.fixture(scope="module")
def net(tiny_task):
    return rs.train(
        tiny_task, "cnn", epochs=2, seed=0, arch_options={"width": 0.25}, progress=False
    )


def _relative_val_loss(mset, task):
    y = task.val.y.numpy()
    loss = model_scores(mset.predict(task.val.x).numpy(), y)["loss"]
    ref = model_scores(model_probs(mset.base, task.val.x).numpy()[None], y)["loss"][0]
    return loss / ref - 1


def _build(net, task, models, **options):
    ctx = BuildContext(seed=0, models=models, epsilon=0.05)
    return build_model_set("laplace", net, task, {"prior": 1.0, **options}, ctx)


@pytest.mark.parametrize("share", [0.3, 0.7])
def test_epsilon_scale_puts_the_target_share_within_epsilon(net, tiny_task, share):
    mset = _build(net, tiny_task, 200, scale="epsilon", target_share=share)
    rel = _relative_val_loss(mset, tiny_task)
    assert abs(float((rel <= 0.05 + 1e-9).mean()) - share) <= 0.03
    info = mset.meta["scaling"]["epsilon"]
    assert info["scale"] > 0 and abs(info["share_within_epsilon"] - share) <= 0.03


def test_boundary_samples_sit_on_the_level_set(net, tiny_task):
    mset = _build(net, tiny_task, 60, scale="boundary")
    rel = _relative_val_loss(mset, tiny_task)
    info = mset.meta["scaling"]["boundary"]
    assert info["unbounded_directions"] == 0
    # within the set, and at its edge to the bisection's tolerance (relative margin 1e-3)
    assert np.all(rel <= 0.05 + 1e-6)
    assert np.all(rel >= 0.05 * (1 - 2e-3) - 1e-4), np.sort(rel)[:5]
    # the same directions as the posterior's own samples, only longer or shorter
    plain = _build(net, tiny_task, 60)
    cos = (mset.deviations() * plain.deviations()).sum(1) / (
        mset.deviations().norm(dim=1) * plain.deviations().norm(dim=1)
    )
    assert float(cos.min()) > 0.9999


@pytest.mark.parametrize("kind", ["nn", "glm"])
def test_scaling_works_over_all_weights(net, tiny_task, kind):
    mset = _build(net, tiny_task, 12, subset="all", hessian="diag", kind=kind, scale="boundary")
    rel = _relative_val_loss(mset, tiny_task)
    assert np.all(rel <= 0.05 + 1e-6) and np.all(rel >= 0.05 * (1 - 2e-3) - 1e-4)
    assert mset.kind == kind and len(mset) == 12


def test_multimode_set_holds_the_map_and_retrained_modes(net, tiny_task, tmp_path):
    """K modes: the MAP model (mode 0) and retrained seeds within ε from the retrain cache,
    a Laplace set around each; predictions equal each mode's own set's."""
    from rashomon.sets.retrain import trained_networks

    train = {"arch": "cnn", "epochs": 2, "fit_options": {"arch_options": {"width": 0.25}}}
    ctx = BuildContext(seed=0, models=30, epsilon=0.5, train=train)
    opts = {"modes": 3, "prior": 1.0, "cache_dir": str(tmp_path)}
    mset = build_model_set("multimode", net, tiny_task, opts, ctx)
    assert mset.num_modes == 3 and len(mset) == 30 and mset.source == "multimode"
    assert np.bincount(mset.modes.numpy()).tolist() == [10, 10, 10]
    seeds = mset.meta["mode_seeds"]
    assert seeds[0] == 0 and len(set(seeds)) == 3
    # mode k's base is the cached retrained network of its seed (not trained again)
    nets, meta = trained_networks(
        tiny_task, seeds[1:], "cnn", 2, cache_dir=tmp_path, arch_options={"width": 0.25}
    )
    assert meta["reused"] == 2
    for k, other in enumerate(nets, start=1):
        mine, theirs = mset.bases[k].state_dict(), other.state_dict()
        assert all(torch.equal(mine[n], theirs[n]) for n in theirs)
    x = tiny_task.test.x
    p = mset.predict(x)
    sub = mset.subset((mset.modes == 2).numpy())
    torch.testing.assert_close(p[mset.modes == 2], sub.predict(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("subset", ["last_layer", "all"])
def test_swag_set_is_gaussian_around_the_swa_mean(net, tiny_task, subset):
    train = {"fit_options": {"lr": 1e-2, "weight_decay": 1e-4}}
    ctx = BuildContext(seed=0, models=400, train=train)
    opts = {"subset": subset, "epochs": 6, "rank": 4}
    mset = build_model_set("swag", net, tiny_task, opts, ctx)
    assert mset.source == "swag" and len(mset) == 400 and mset.head_only == (subset == "last_layer")
    assert mset.meta["swa_distance"] > 0  # SGD moved away from θ*
    # the same seed draws the same set
    again = build_model_set("swag", net, tiny_task, opts, ctx)
    assert torch.equal(again.samples, mset.samples)
    p = mset.predict(tiny_task.val.x)
    assert p.shape == (400, len(tiny_task.val), 2) and torch.isfinite(p).all()


def test_mean_pairwise_disagreement_by_hand():
    from rashomon.sets.scaling import mean_pairwise_disagreement

    # 3 models, 2 patients: patient 0 labels (0, 0, 1) → 2 of 3 pairs differ; patient 1 agrees
    labels = np.array([[0, 1], [0, 1], [1, 1]])
    assert mean_pairwise_disagreement(labels) == pytest.approx((2 / 3 + 0) / 2)
    # two models: the share of patients they differ on
    assert mean_pairwise_disagreement(np.array([[0, 1, 2, 2], [0, 2, 2, 1]])) == 0.5


def test_disagreement_scale_hits_the_validation_error(net, tiny_task):
    """Jiang et al.'s target: the set's models disagree pairwise on validation as often as the
    trained model errs there."""
    from rashomon.sets.laplace import laplace
    from rashomon.sets.scaling import disagreement_scale, mean_pairwise_disagreement

    post = laplace(net, tiny_task, prior=1.0)
    dev = post.sample_deviations(200, seed=0)
    s, info = disagreement_scale(post, dev, tiny_task)
    error = float(
        (model_probs(net, tiny_task.val.x).numpy().argmax(-1) != tiny_task.val.y.numpy()).mean()
    )
    assert info["target_disagreement"] == pytest.approx(error)
    labels = post.to_set(post.mean[None] + s * dev).predict(tiny_task.val.x).numpy().argmax(-1)
    # the bisection stops on the last scale below the target: within a few patients of it
    assert info["disagreement"] == pytest.approx(mean_pairwise_disagreement(labels))
    assert error - 0.05 <= info["disagreement"] <= error + 1e-9
