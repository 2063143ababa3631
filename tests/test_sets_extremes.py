"""Exact last-layer extremes: equal to scipy's constrained optimiser on small problems, and a
bound on every sampled last-layer set within the same loss bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import NonlinearConstraint, minimize

import rashomon as rs
from rashomon.sets.extremes import binary_head_extremes, last_layer_extremes


def _problem(seed, n_train=60, n_val=30, d=3):
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=d)

    def draw(n):
        x = rng.normal(size=(n, d))
        y = (rng.random(n) < 1 / (1 + np.exp(-x @ w_true))).astype(int)
        return np.c_[x, np.ones(n)], y

    (pt, yt), (pv, yv), (pe, _) = draw(n_train), draw(n_val), draw(6)
    return pt, yt, pv, yv, pe


def _scipy_extremes(pt, yt, pv, yv, pe, delta_map, eps, prior):
    st, sv = 2 * yt - 1, 2 * yv - 1

    def lval(d):
        return np.logaddexp(0, -sv * (pv @ d)).mean()

    def jtrain(d):
        return np.logaddexp(0, -st * (pt @ d)).sum() + 0.25 * prior * d @ d

    cons = [
        NonlinearConstraint(lval, -np.inf, lval(delta_map) * (1 + eps)),
        NonlinearConstraint(jtrain, -np.inf, jtrain(delta_map) * (1 + eps)),
    ]
    lo, hi = [], []
    for a in pe:
        for sign, out in ((1, hi), (-1, lo)):
            res = minimize(
                lambda d, a=a, sign=sign: -sign * a @ d,
                delta_map,
                jac=lambda d, a=a, sign=sign: -sign * a,
                constraints=cons,
                method="trust-constr",
                options={"xtol": 1e-12, "gtol": 1e-12, "maxiter": 5000},
            )
            out.append(a @ res.x)
    return np.array(lo), np.array(hi)


@pytest.mark.parametrize("seed,eps", [(0, 0.05), (1, 0.2)])
def test_extremes_equal_scipy_on_small_problems(seed, eps):
    pt, yt, pv, yv, pe = _problem(seed)
    delta_map = np.r_[np.zeros(pt.shape[1] - 1), 0.1]  # a trained head near, not at, optimum
    d_hat = minimize(
        lambda d: np.logaddexp(0, -(2 * yt - 1) * (pt @ d)).sum() + 0.25 * 1.0 * d @ d,
        np.zeros(pt.shape[1]),
        method="BFGS",
    ).x
    delta_map = d_hat * 0.97 + delta_map * 0.03
    z_min, z_max, definition = binary_head_extremes(
        pt, yt, pv, yv, pe, delta_map, epsilon=eps, prior_precision=1.0, tol=1e-8
    )
    ref_lo, ref_hi = _scipy_extremes(pt, yt, pv, yv, pe, delta_map, eps, 1.0)
    np.testing.assert_allclose(z_max, ref_hi, atol=1e-4)
    np.testing.assert_allclose(z_min, ref_lo, atol=1e-4)
    assert np.all(z_min <= pe @ delta_map + 1e-9) and np.all(pe @ delta_map <= z_max + 1e-9)
    assert definition["train_gradient_gap"] >= 0


def test_extremes_bound_every_sampled_last_layer_set(task_breast):
    net = rs.train(task_breast, "cnn-small", epochs=3, seed=0, progress=False)
    eps = 0.05
    ext = last_layer_extremes(net, task_breast, eps)
    definition = ext.attrs["definition"]
    assert len(ext) == len(task_breast.test)
    assert np.all(ext["p_min"] <= ext["p_map"] + 1e-9) and np.all(
        ext["p_map"] <= ext["p_max"] + 1e-9
    )
    prior = definition["prior_precision"]
    # the sets a run builds: the marglik posterior's samples and the ε-boundary samples
    from rashomon.sets.base import ModelSet
    from rashomon.sets.registry import BuildContext, build_model_set

    ctx = BuildContext(seed=0, models=300, epsilon=eps)
    mset = ModelSet.concat(
        [
            build_model_set("laplace", net, task_breast, {}, ctx),
            build_model_set("laplace", net, task_breast, {"scale": "boundary"}, ctx),
        ]
    )
    # models of the sampled set that satisfy both bounds of the exact set
    from rashomon.predict import model_features

    phi = {s: model_features(net, task_breast.split(s).x).double() for s in ("train", "val")}
    w = mset.unflatten(mset.samples)["head.weight"].double()
    b = mset.unflatten(mset.samples)["head.bias"].double()
    delta = torch.cat([w[:, 1] - w[:, 0], (b[:, 1] - b[:, 0])[:, None]], 1)

    def cost(split, mean):
        x = torch.cat([phi[split], torch.ones(len(phi[split]), 1, dtype=torch.float64)], 1)
        s = 2 * task_breast.split(split).y.double() - 1
        v = torch.nn.functional.softplus(-(delta @ x.T) * s)
        return v.mean(1) if mean else v.sum(1)

    inside = (cost("val", True) <= definition["val_bound"]) & (
        cost("train", False) + 0.25 * prior * (delta**2).sum(1) <= definition["train_bound"]
    )
    assert int(inside.sum()) >= 10
    p = mset.subset(inside.numpy()).predict(task_breast.test.x)[..., 1].numpy()
    assert np.all(p.min(0) >= ext["p_min"].to_numpy() - 1e-5)
    assert np.all(p.max(0) <= ext["p_max"].to_numpy() + 1e-5)
    # and the exact set is wider than the sample shows for most patients
    assert float((ext["p_max"] - ext["p_min"]).mean()) > float((p.max(0) - p.min(0)).mean())


def test_weighted_extremes_equal_scipy_on_a_small_problem():
    """Class-weighted training: both bounds are on the class-weighted losses."""
    pt, yt, pv, yv, pe = _problem(3)
    cw = np.array([2.5, 0.6])
    wt, wv = cw[yt], cw[yv]

    def jtrain(d):
        return (wt * np.logaddexp(0, -(2 * yt - 1) * (pt @ d))).sum() + 0.25 * d @ d

    def lval(d):
        return (wv * np.logaddexp(0, -(2 * yv - 1) * (pv @ d))).mean()

    delta_map = minimize(jtrain, np.zeros(pt.shape[1]), method="BFGS").x * 0.97
    z_min, z_max, definition = binary_head_extremes(
        pt, yt, pv, yv, pe, delta_map, epsilon=0.1, prior_precision=1.0, tol=1e-8, class_weight=cw
    )
    assert definition["val_loss_map"] == pytest.approx(lval(delta_map), rel=1e-9)
    assert definition["train_objective_map"] == pytest.approx(jtrain(delta_map), rel=1e-9)
    cons = [
        NonlinearConstraint(lval, -np.inf, lval(delta_map) * 1.1),
        NonlinearConstraint(jtrain, -np.inf, jtrain(delta_map) * 1.1),
    ]
    for i, a in enumerate(pe[:3]):
        for sign, ours in ((1, z_max[i]), (-1, z_min[i])):
            res = minimize(
                lambda d, a=a, sign=sign: -sign * a @ d,
                delta_map,
                jac=lambda d, a=a, sign=sign: -sign * a,
                constraints=cons,
                method="trust-constr",
                options={"xtol": 1e-12, "gtol": 1e-12, "maxiter": 5000},
            )
            assert ours == pytest.approx(a @ res.x, abs=1e-4)
