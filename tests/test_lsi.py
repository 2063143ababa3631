"""Laplace Sample Information: KL functions, closed form vs explicit algebra and vs exact refit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from rashomon.errors import RashomonError
from rashomon.lsi import (
    diagonal_gaussian_kl,
    fit_head,
    gaussian_kl,
    laplace_sample_information,
    last_layer_precision,
    lsi_vs_multiplicity,
    refit_lsi,
    top_lsi,
    training_multiplicity,
)


def random_spd(rng, k):
    a = rng.normal(size=(k, k))
    return a @ a.T + k * np.eye(k)


def toy_task(seed=0, n=60, d=4, c=3, noise=1.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    logits = x @ (rng.normal(size=(c, d)) * noise).T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(c, p=row) for row in p])
    return x, y


def test_gaussian_kl_matches_torch_distributions():
    rng = np.random.default_rng(0)
    k = 6
    qp, qq = random_spd(rng, k), random_spd(rng, k)
    mp, mq = rng.normal(size=k), rng.normal(size=k)
    want = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(torch.tensor(mp), precision_matrix=torch.tensor(qp)),
        torch.distributions.MultivariateNormal(torch.tensor(mq), precision_matrix=torch.tensor(qq)),
    )
    assert gaussian_kl(mp, qp, mq, qq) == pytest.approx(float(want), rel=1e-10)
    assert gaussian_kl(mp, qp, mp, qp) == pytest.approx(0.0, abs=1e-12)


def test_diagonal_kl_formula_equals_full_kl_on_diagonal_gaussians():
    rng = np.random.default_rng(1)
    p1, p2 = rng.uniform(0.5, 3, 7), rng.uniform(0.5, 3, 7)
    m1, m2 = rng.normal(size=7), rng.normal(size=7)
    assert diagonal_gaussian_kl(m1, p1, m2, p2) == pytest.approx(
        gaussian_kl(m1, np.diag(p1), m2, np.diag(p2)), rel=1e-12
    )


def direct_lsi(x, y, w, b, h, kind):
    """Explicit P x P computation: remove the GGN term, one Newton step, full-Gaussian KL."""
    c = w.shape[0]
    mu = np.concatenate([w.reshape(-1), b])
    out = []
    for i in range(len(x)):
        logits = w @ x[i] + b
        if kind == "multilabel":
            p = 1 / (1 + np.exp(-logits))
            lam, target = np.diag(p * (1 - p)), y[i]
        else:
            p = np.exp(logits - logits.max())
            p /= p.sum()
            lam, target = np.diag(p) - np.outer(p, p), np.eye(c)[y[i]]
        jac = np.concatenate([np.kron(np.eye(c), x[i][None]), np.eye(c)], 1)  # laplace-torch order
        h_i = h - jac.T @ lam @ jac
        mu_i = mu + np.linalg.solve(h_i, jac.T @ (p - target))
        out.append(gaussian_kl(mu, h, mu_i, h_i))
    return np.array(out)


@pytest.mark.parametrize("kind,c", [("multiclass", 3), ("binary", 2), ("multilabel", 3)])
def test_closed_form_equals_explicit_update(kind, c):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 4))
    y = rng.integers(0, 2, (30, c)) if kind == "multilabel" else rng.integers(0, c, 30)
    w, b = rng.normal(size=(c, 4)), rng.normal(size=c)
    h = last_layer_precision(x, y, w, b, prior_precision=0.7, kind=kind)
    parts = laplace_sample_information(
        x, y, w, b, prior_precision=0.7, kind=kind, return_parts=True
    )
    np.testing.assert_allclose(parts["lsi"], direct_lsi(x, y, w, b, h, kind), rtol=1e-9)
    np.testing.assert_allclose(parts["lsi"], parts["covariance_part"] + parts["mean_part"])
    assert (parts["covariance_part"] > 0).all() and (parts["mean_part"] >= 0).all()
    # Passing the precision explicitly (laplace-torch order) gives the same values.
    np.testing.assert_allclose(
        laplace_sample_information(x, y, w, b, precision=h, kind=kind), parts["lsi"], rtol=1e-9
    )
    # Torch inputs are accepted.
    np.testing.assert_allclose(
        laplace_sample_information(
            torch.tensor(x, dtype=torch.float32),
            torch.tensor(y),
            torch.tensor(w),
            torch.tensor(b),
            prior_precision=0.7,
            kind=kind,
        ),
        parts["lsi"],
        rtol=1e-4,
    )


def test_precision_matches_laplace_torch_last_layer_full():
    from laplace import Laplace

    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randint(0, 3, (40,))
    head = torch.nn.Linear(3, 3)
    la = Laplace(
        torch.nn.Sequential(torch.nn.Identity(), head),
        "classification",
        subset_of_weights="last_layer",
        hessian_structure="full",
        prior_precision=1.0,
    )
    la.fit(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10))
    ours = last_layer_precision(x, y, head.weight, head.bias, prior_precision=1.0)
    np.testing.assert_allclose(ours, la.posterior_precision.detach().numpy(), atol=1e-4)


@pytest.mark.parametrize("c,seed", [(3, 0), (2, 1)])
def test_closed_form_ranks_samples_like_exact_refit(c, seed):
    x, y = toy_task(seed=seed, c=c)
    w, b = fit_head(x, y, num_outputs=c, prior_precision=1.0)
    closed = laplace_sample_information(x, y, w, b, prior_precision=1.0)
    idx = list(range(20))
    exact = refit_lsi(x, y, idx, num_outputs=c, prior_precision=1.0)
    rho = stats.spearmanr(closed[idx], exact).statistic
    assert rho > 0.9
    np.testing.assert_allclose(closed[idx], exact, rtol=0.5)  # same magnitude, not just order


def test_fit_head_reaches_the_stationary_point():
    x, y = toy_task(seed=3, c=3)
    w, b = fit_head(x, y, num_outputs=3, prior_precision=2.0)
    p = np.exp(x @ w.T + b)
    p /= p.sum(1, keepdims=True)
    r = p - np.eye(3)[y]
    np.testing.assert_allclose(r.T @ x + 2.0 * w, 0, atol=1e-6)
    np.testing.assert_allclose(r.sum(0) + 2.0 * b, 0, atol=1e-6)


def test_analysis_helpers():
    np.testing.assert_array_equal(top_lsi([0.1, 3.0, 2.0, 3.0], 3), [1, 3, 2])
    with pytest.raises(RashomonError, match="top_lsi k=5"):
        top_lsi([1.0, 2.0], 5)
    preds = np.array([[0, 1, 1], [0, 1, 0], [0, 0, 0], [0, 1, 0]])
    tm = training_multiplicity(preds, np.array([0, 1, 0]))
    np.testing.assert_allclose(tm["disagreement"], [0.0, 4 * 0.75 * 0.25, 4 * 0.25 * 0.75])
    np.testing.assert_allclose(tm["flip_rate"], [0.0, 0.25, 0.25])
    rng = np.random.default_rng(0)
    dis = np.concatenate([np.zeros(80), rng.uniform(0.1, 1, 20)])
    lsi = dis * 2 + rng.uniform(0, 0.5, 100)
    row = lsi_vs_multiplicity(lsi, dis, top_fraction=0.1).iloc[0]
    assert row["spearman_rho"] == pytest.approx(stats.spearmanr(lsi, dis).statistic)
    assert row["n_top"] == 10 and row["lsi_mean_top"] > row["lsi_mean_rest"]
    assert row["mannwhitney_p"] < 1e-4


def test_bad_inputs_raise_one_line_errors():
    x = np.zeros((5, 3))
    with pytest.raises(RashomonError, match="does not match features"):
        laplace_sample_information(x, np.zeros(5, int), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(RashomonError, match="labels must lie in"):
        laplace_sample_information(x, np.full(5, 2), np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(RashomonError, match="precision must be"):
        laplace_sample_information(
            x, np.zeros(5, int), np.zeros((2, 3)), np.zeros(2), precision=np.eye(3)
        )


def test_run_lsi_matches_exact_refits_on_random_samples(tiny_task):
    """The values the decide stage writes (model_lsi at a trained network) against exact
    leave-one-out refits on randomly chosen training samples, not only the top ones."""
    import rashomon as rs
    from rashomon.lsi import model_lsi
    from rashomon.predict import model_features

    net = rs.train(tiny_task, "cnn", epochs=2, seed=0, arch_options={"width": 0.25}, progress=False)
    prior = len(tiny_task.train) * 1e-4  # N · weight decay, as the decide stage uses
    parts = model_lsi(
        net,
        tiny_task.train.x,
        tiny_task.train.y,
        kind="binary",
        prior_precision=prior,
        return_parts=True,
    )
    assert parts.attrs["gradient_norm_used"] < 1e-6 < parts.attrs["gradient_norm_trained"]
    feats = model_features(net, tiny_task.train.x).double()
    idx = np.random.default_rng(0).choice(len(feats), 10, replace=False)
    exact = refit_lsi(feats, tiny_task.train.y, idx, num_outputs=2, prior_precision=prior)
    ratio = parts["lsi"].to_numpy()[idx] / exact
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio
    # at the trained (non-stationary) head the same formula is off by far more
    raw = model_lsi(
        net,
        tiny_task.train.x,
        tiny_task.train.y,
        kind="binary",
        prior_precision=prior,
        converge=False,
    )
    assert np.abs(np.log(raw[idx] / exact)).max() > np.abs(np.log(ratio)).max()
