"""Laplace Sample Information (Kaiser et al., 2025) for a last-layer Gaussian Laplace posterior.

LSI(i) = KL( N(mu, H^-1) || N(mu_-i, H_-i^-1) ): the posterior fitted on all training data
against the one fitted without sample i. The reference implementation retrains the layer without
every sample. Here nothing is refitted:

- the precision loses sample i's generalised Gauss-Newton term, H_-i = H - J_i^T Lambda_i J_i
  (rank <= C: J_i is the C x P Jacobian of the logits w.r.t. the head's parameters, Lambda_i the
  Hessian of the loss w.r.t. the logits: diag(p) - p p^T for softmax, diag(p(1-p)) for sigmoid);
- the mean moves by one Newton step of the objective without sample i from the full-data
  optimum, where the gradient is -g_i: mu_-i = mu + H_-i^-1 g_i, with g_i = J_i^T (p_i - y_i).

With S_i = J_i H^-1 J_i^T (the C x C covariance of sample i's logits under the posterior) and
A_i = Lambda_i S_i, the matrix determinant lemma and Woodbury give, exactly for this model,

    LSI(i) = 1/2 [ -tr(A_i) - log det(I - A_i) + r_i^T S_i (I - A_i)^-1 r_i ],   r_i = p_i - y_i,

so all N samples cost one P x P inverse plus N small C x C problems (the first two terms are the
covariance change, the last the mean shift).

Parameter order (for ``precision`` in and out) is laplace-torch's for a last layer:
``[weight.flatten() (row-major, C x D), bias (C)]``. The objective behind the posterior is the
summed loss plus ``prior_precision / 2 * ||theta||^2`` (bias included), as in laplace-torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from scipy import stats

from rashomon.errors import RashomonError
from rashomon.models.predict import model_features
from rashomon.models.registry import Classifier

KINDS = ("binary", "multiclass", "multilabel")


# --------------------------------------------------------------------------- inputs
def _tensor(a: Any, device: str | torch.device | None, name: str) -> torch.Tensor:
    if a is None:
        raise RashomonError(f"{name} is missing")
    t = a.detach() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(device=device if device is not None else t.device, dtype=torch.float64)


def _check_head(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    if features.ndim != 2:
        raise RashomonError(f"features must be [N, D], got shape {tuple(features.shape)}")
    if weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise RashomonError(
            f"head weight {tuple(weight.shape)} does not match features with D="
            f"{features.shape[1]}; pass the last nn.Linear of the model that made the features"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise RashomonError(f"head bias {tuple(bias.shape)} must be [{weight.shape[0]}]")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RashomonError(f"unknown task kind {kind!r}; use one of {KINDS}")


def _targets(labels: Any, n: int, c: int, kind: str, device) -> torch.Tensor:
    """One-hot (softmax) or 0/1 (multilabel) targets ``[N, C]``."""
    y = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
    if kind == "multilabel":
        if tuple(y.shape) != (n, c):
            raise RashomonError(f"multilabel labels must be [{n}, {c}], got {tuple(y.shape)}")
        return y.to(device=device, dtype=torch.float64)
    if tuple(y.shape) != (n,):
        raise RashomonError(f"labels must be [{n}] class indices, got {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= c:
        raise RashomonError(f"labels must lie in 0..{c - 1} for a head with {c} outputs")
    return torch.nn.functional.one_hot(y.long(), c).to(device=device, dtype=torch.float64)


def _augment(features: torch.Tensor, with_bias: bool) -> torch.Tensor:
    if not with_bias:
        return features
    return torch.cat([features, features.new_ones(len(features), 1)], 1)


def _probs(logits: torch.Tensor, kind: str) -> torch.Tensor:
    return torch.sigmoid(logits) if kind == "multilabel" else torch.softmax(logits, -1)


def _loss_hessian(p: torch.Tensor, kind: str) -> torch.Tensor:
    """Lambda ``[n, C, C]``: the Hessian of the loss w.r.t. the logits."""
    if kind == "multilabel":
        return torch.diag_embed(p * (1 - p))
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def _order(c: int, d: int, with_bias: bool) -> torch.Tensor:
    """Index into laplace-torch order for every position of the class-major order
    ``theta_aug[c, j] = [W[c, :], b[c]][j]`` used internally."""
    if not with_bias:
        return torch.arange(c * d)
    cls = torch.arange(c)[:, None]
    j = torch.arange(d + 1)[None, :]
    return torch.where(j < d, cls * d + j, c * d + cls).reshape(-1)


def _chunk(n_cols: int, c: int) -> int:
    return max(1, int(2e7 // max(1, c * c * n_cols)))


# --------------------------------------------------------------------------- posterior
def last_layer_precision(
    features: Any,
    labels: Any | None,
    weight: Any,
    bias: Any | None = None,
    *,
    prior_precision: float = 1.0,
    kind: str = "multiclass",
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Posterior precision ``[P, P]`` of the head (laplace-torch order, module docstring):
    sum over samples of the GGN term plus ``prior_precision * I``. ``labels`` is unused (the GGN
    of these likelihoods does not depend on them) and accepted for symmetry."""
    _check_kind(kind)
    x = _tensor(features, device, "features")
    w = _tensor(weight, x.device, "weight")
    b = None if bias is None else _tensor(bias, x.device, "bias")
    _check_head(x, w, b)
    h = _ggn_aug(x, w, b, kind) + prior_precision * torch.eye(
        _n_params(w, b), dtype=x.dtype, device=x.device
    )
    order = _order(w.shape[0], w.shape[1], b is not None).to(x.device)
    out = torch.empty_like(h)
    out[order[:, None], order[None, :]] = h
    return out.cpu().numpy()


def _n_params(w: torch.Tensor, b: torch.Tensor | None) -> int:
    return w.numel() + (0 if b is None else b.numel())


def _ggn_aug(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, kind: str) -> torch.Tensor:
    """Sum_i Lambda_i (x) x~_i x~_i^T in the class-major order: blocks [C, D+1, C, D+1]."""
    c = w.shape[0]
    xa = _augment(x, b is not None)
    da = xa.shape[1]
    h = x.new_zeros(c, da, c, da)
    step = _chunk(da, c)
    for s in range(0, len(x), step):
        xs = xa[s : s + step]
        lam = _loss_hessian(_probs(x[s : s + step] @ w.T + (0 if b is None else b), kind), kind)
        h += torch.einsum("nck,nd,ne->cdke", lam, xs, xs)
    return h.reshape(c * da, c * da)


def laplace_sample_information(
    features: Any,
    labels: Any,
    weight: Any,
    bias: Any | None = None,
    *,
    prior_precision: float = 1.0,
    precision: Any | None = None,
    kind: str = "multiclass",
    device: str | torch.device | None = None,
    return_parts: bool = False,
) -> np.ndarray | pd.DataFrame:
    """LSI of every training sample, closed form (module docstring).

    Inputs: ``features [N, D]`` (penultimate activations of the training set, as the head sees
    them), ``labels`` ([N] classes, or [N, L] 0/1 for multilabel), the head's ``weight [C, D]``
    and ``bias [C]`` (the MAP), the ``prior_precision`` (scalar) or a full posterior
    ``precision [P, P]`` in laplace-torch order (e.g. a fitted laplace-torch last-layer
    posterior), and ``kind``. Binary tasks use a 2-output softmax head like multiclass.

    Returns ``[N]`` KL values in nats, or with ``return_parts`` a DataFrame with columns ``lsi``,
    ``covariance_part``, ``mean_part``."""
    _check_kind(kind)
    x = _tensor(features, device, "features")
    w = _tensor(weight, x.device, "weight")
    b = None if bias is None else _tensor(bias, x.device, "bias")
    _check_head(x, w, b)
    c = w.shape[0]
    y = _targets(labels, len(x), c, kind, x.device)
    p_count = _n_params(w, b)
    order = _order(c, w.shape[1], b is not None).to(x.device)
    if precision is None:
        if prior_precision <= 0:
            raise RashomonError(f"prior_precision must be > 0, got {prior_precision}")
        h = _ggn_aug(x, w, b, kind) + prior_precision * torch.eye(
            p_count, dtype=x.dtype, device=x.device
        )
    else:
        hp = _tensor(precision, x.device, "precision")
        if tuple(hp.shape) != (p_count, p_count):
            raise RashomonError(
                f"precision must be [{p_count}, {p_count}] for this head, got {tuple(hp.shape)}"
            )
        h = hp[order[:, None], order[None, :]]
    try:
        chol = torch.linalg.cholesky(h)
    except RuntimeError as exc:
        raise RashomonError(
            "posterior precision is not positive definite; use a larger prior precision"
        ) from exc
    sigma = torch.cholesky_inverse(chol)
    xa = _augment(x, b is not None)
    da = xa.shape[1]
    sig4 = sigma.reshape(c, da, c, da)
    eye = torch.eye(c, dtype=x.dtype, device=x.device)
    cov_part, mean_part = [], []
    step = _chunk(da, c)
    for s in range(0, len(x), step):
        xs = xa[s : s + step]
        p = _probs(x[s : s + step] @ w.T + (0 if b is None else b), kind)
        lam = _loss_hessian(p, kind)
        # S_i = J_i Sigma J_i^T with J_i = I_C (x) x~_i^T.
        sm = torch.einsum("nd,cdke,ne->nck", xs, sig4, xs)
        a = lam @ sm
        i_minus_a = eye - a
        sign, logdet = torch.linalg.slogdet(i_minus_a)
        if bool((sign <= 0).any()):
            raise RashomonError(
                "removing a sample made the precision singular; use a larger prior precision"
            )
        r = (p - y[s : s + step])[..., None]
        quad = (r.transpose(1, 2) @ sm @ torch.linalg.solve(i_minus_a, r)).reshape(-1)
        cov_part.append(0.5 * (-torch.diagonal(a, dim1=1, dim2=2).sum(-1) - logdet))
        mean_part.append(0.5 * quad)
    cp = torch.cat(cov_part).cpu().numpy()
    mp = torch.cat(mean_part).cpu().numpy()
    if return_parts:
        return pd.DataFrame({"lsi": cp + mp, "covariance_part": cp, "mean_part": mp})
    return cp + mp


# --------------------------------------------------------------------------- KL
def gaussian_kl(mean_p: Any, precision_p: Any, mean_q: Any, precision_q: Any) -> float:
    """KL( N(mean_p, precision_p^-1) || N(mean_q, precision_q^-1) ) for full Gaussians:
    1/2 [ tr(Q_q Q_p^-1) + d^T Q_q d - P + log det Q_p - log det Q_q ], d = mean_q - mean_p."""
    mp, mq = (np.asarray(m, dtype=np.float64).reshape(-1) for m in (mean_p, mean_q))
    qp, qq = (np.asarray(q, dtype=np.float64) for q in (precision_p, precision_q))
    k = len(mp)
    if qp.shape != (k, k) or qq.shape != (k, k) or mq.shape != (k,):
        raise RashomonError(f"gaussian_kl needs means [{k}] and precisions [{k}, {k}]")
    lp = np.linalg.cholesky(qp)
    cov_p = np.linalg.solve(lp.T, np.linalg.solve(lp, np.eye(k)))
    d = mq - mp
    logdet_p = 2 * np.log(np.diag(lp)).sum()
    logdet_q = 2 * np.log(np.diag(np.linalg.cholesky(qq))).sum()
    return float(0.5 * (np.trace(qq @ cov_p) + d @ qq @ d - k + logdet_p - logdet_q))


def diagonal_gaussian_kl(mean_p: Any, precision_p: Any, mean_q: Any, precision_q: Any) -> float:
    """KL for diagonal Gaussians given diagonal precisions p1 (of p) and p2 (of q):
    1/2 [ sum p2/p1 + sum p2 dmu^2 - K + sum log p1 - sum log p2 ] (LSI reference, diag)."""
    p1, p2 = (np.asarray(p, dtype=np.float64).reshape(-1) for p in (precision_p, precision_q))
    dmu = np.asarray(mean_q, dtype=np.float64).reshape(-1) - np.asarray(mean_p).reshape(-1)
    return float(
        0.5
        * ((p2 / p1).sum() + (p2 * dmu**2).sum() - len(p1) + np.log(p1).sum() - np.log(p2).sum())
    )


# --------------------------------------------------------------------------- exact refit
def fit_head(
    features: Any,
    labels: Any,
    *,
    num_outputs: int,
    prior_precision: float = 1.0,
    kind: str = "multiclass",
    bias: bool = True,
    init: tuple[Any, Any] | None = None,
    sample_mask: Any | None = None,
    device: str | torch.device | None = None,
    max_iter: int = 500,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit a linear head to convergence (float64 L-BFGS) on the convex objective that defines
    the Laplace posterior: summed cross-entropy (BCE for multilabel) over the samples in
    ``sample_mask`` + prior_precision / 2 * ||theta||^2. Returns (weight [C, D], bias [C])."""
    _check_kind(kind)
    x = _tensor(features, device, "features")
    y = _targets(labels, len(x), num_outputs, kind, x.device)
    keep = (
        torch.ones(len(x), dtype=torch.bool, device=x.device)
        if sample_mask is None
        else torch.as_tensor(np.asarray(sample_mask), dtype=torch.bool, device=x.device)
    )
    x, y = x[keep], y[keep]
    if init is None:
        w = torch.zeros(num_outputs, x.shape[1], dtype=x.dtype, device=x.device)
        b = torch.zeros(num_outputs, dtype=x.dtype, device=x.device)
    else:
        w = _tensor(init[0], x.device, "init weight").clone()
        b = (
            torch.zeros(num_outputs, dtype=x.dtype, device=x.device)
            if init[1] is None
            else (_tensor(init[1], x.device, "init bias").clone())
        )
    w.requires_grad_(True)
    params = [w]
    if bias:
        b.requires_grad_(True)
        params.append(b)
    opt = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        logits = x @ w.T + (b if bias else 0)
        if kind == "multilabel":
            nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        else:
            nll = -(torch.log_softmax(logits, -1) * y).sum()
        loss = nll + 0.5 * prior_precision * sum((q**2).sum() for q in params)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().cpu().numpy(), (b.detach().cpu().numpy() if bias else None)


def refit_lsi(
    features: Any,
    labels: Any,
    indices: Sequence[int],
    *,
    num_outputs: int,
    prior_precision: float = 1.0,
    kind: str = "multiclass",
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Exact LSI by refitting: fit the head on all data and without each sample in ``indices``
    (warm-started, to convergence), fit the Laplace precision at each optimum, and take the KL of
    the two full Gaussians. Costs one fit per index; the reference against which the closed form
    is validated."""
    w, b = fit_head(
        features,
        labels,
        num_outputs=num_outputs,
        prior_precision=prior_precision,
        kind=kind,
        device=device,
    )
    mu = _flat(w, b)
    h = last_layer_precision(
        features, None, w, b, prior_precision=prior_precision, kind=kind, device=device
    )
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features)
    yl = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    out = []
    for i in indices:
        mask = np.ones(len(x), bool)
        mask[i] = False
        wi, bi = fit_head(
            x,
            yl,
            num_outputs=num_outputs,
            prior_precision=prior_precision,
            kind=kind,
            init=(w, b),
            sample_mask=mask,
            device=device,
        )
        hi = last_layer_precision(
            x[mask], None, wi, bi, prior_precision=prior_precision, kind=kind, device=device
        )
        out.append(gaussian_kl(mu, h, _flat(wi, bi), hi))
    return np.asarray(out)


def _flat(w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    return np.concatenate([w.reshape(-1)] + ([] if b is None else [b.reshape(-1)]))


# --------------------------------------------------------------------------- analysis
def top_lsi(lsi: Any, k: int) -> np.ndarray:
    """Indices of the k training samples with the largest LSI, largest first."""
    v = np.asarray(lsi, dtype=np.float64).reshape(-1)
    if not 1 <= k <= len(v):
        raise RashomonError(f"top_lsi k={k} must be between 1 and the {len(v)} samples")
    return np.argsort(-v, kind="stable")[:k]


def training_multiplicity(train_preds: Any, ref: Any) -> pd.DataFrame:
    """Per training sample, how the Rashomon set disagrees on it: ``disagreement`` =
    C/(C-1) * (1 - sum_c s_c^2) with s_c the share of models predicting class c (equals
    4 p(1-p) for two classes; 0 = unanimous, 1 = evenly split), and ``flip_rate`` = share of
    models whose label differs from the MAP's ``ref``. ``train_preds`` is ``[M, N]`` labels."""
    preds = np.asarray(
        train_preds.detach().cpu() if isinstance(train_preds, torch.Tensor) else train_preds
    )
    r = np.asarray(ref.detach().cpu() if isinstance(ref, torch.Tensor) else ref).reshape(-1)
    if preds.ndim != 2 or preds.shape[1] != len(r):
        raise RashomonError(f"train_preds must be [M, {len(r)}] labels, got {preds.shape}")
    c = int(max(preds.max(), r.max())) + 1
    c = max(c, 2)
    shares = np.stack([(preds == j).mean(0) for j in range(c)], -1)
    dis = c / (c - 1) * (1 - (shares**2).sum(-1))
    return pd.DataFrame({"disagreement": dis, "flip_rate": (preds != r).mean(0)})


def lsi_vs_multiplicity(lsi: Any, disagreement: Any, *, top_fraction: float = 0.1) -> pd.DataFrame:
    """How LSI (a training-sample quantity) relates to the set's disagreement on the SAME
    training samples. One row: Spearman rho and p-value between LSI and disagreement; the LSI
    mean and median of the top-disagreement samples (the ``top_fraction`` with the highest
    disagreement, restricted to disagreement > 0) vs the rest, and a two-sided Mann-Whitney U
    p-value of that difference. Multiplicity measured on test patients cannot be paired with
    LSI sample by sample; this is the honest pairing."""
    v = np.asarray(lsi, dtype=np.float64).reshape(-1)
    d = np.asarray(disagreement, dtype=np.float64).reshape(-1)
    if v.shape != d.shape:
        raise RashomonError(f"lsi {v.shape} and disagreement {d.shape} must cover the same samples")
    if not 0 < top_fraction < 1:
        raise RashomonError(f"top_fraction must be in (0, 1), got {top_fraction}")
    rho, p = (np.nan, np.nan)
    if np.ptp(d) > 0 and np.ptp(v) > 0:
        res = stats.spearmanr(v, d)
        rho, p = float(res.statistic), float(res.pvalue)
    cut = np.quantile(d, 1 - top_fraction)
    top = (d >= cut) & (d > 0)
    rest = ~top
    mw = np.nan
    if top.any() and rest.any():
        mw = float(stats.mannwhitneyu(v[top], v[rest], alternative="two-sided").pvalue)
    return pd.DataFrame(
        [
            {
                "n_samples": len(v),
                "spearman_rho": rho,
                "spearman_p": p,
                "top_fraction": top_fraction,
                "n_top": int(top.sum()),
                "n_disagreement_positive": int((d > 0).sum()),
                "lsi_mean_top": float(v[top].mean()) if top.any() else np.nan,
                "lsi_mean_rest": float(v[rest].mean()) if rest.any() else np.nan,
                "lsi_median_top": float(np.median(v[top])) if top.any() else np.nan,
                "lsi_median_rest": float(np.median(v[rest])) if rest.any() else np.nan,
                "mannwhitney_p": mw,
            }
        ]
    )


# --------------------------------------------------------------------------- from a model
def objective_gradient_norm(
    features: Any,
    labels: Any,
    weight: Any,
    bias: Any | None,
    *,
    prior_precision: float,
    kind: str,
) -> float:
    """‖∇‖ of the objective behind the closed form (summed loss + prior/2 ‖θ‖²) at a head: 0 at
    the optimum the formula assumes."""
    x = _tensor(features, None, "features")
    w = _tensor(weight, x.device, "weight")
    b = None if bias is None else _tensor(bias, x.device, "bias")
    y = _targets(labels, len(x), w.shape[0], kind, x.device)
    r = _probs(x @ w.T + (0 if b is None else b), kind) - y
    gw = r.T @ x + prior_precision * w
    parts = [gw.flatten()]
    if b is not None:
        parts.append(r.sum(0) + prior_precision * b)
    return float(torch.cat(parts).norm())


@torch.no_grad()
def model_lsi(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kind: str,
    prior_precision: float = 1.0,
    precision: Any | None = None,
    device: str = "cpu",
    return_parts: bool = False,
    converge: bool = True,
    max_iter: int = 500,
) -> np.ndarray | pd.DataFrame:
    """LSI of the training images ``x`` with labels ``y`` for a Classifier's head.

    The closed form assumes the head is the optimum of its objective (summed loss +
    prior_precision/2 ‖θ‖²); a trained head rarely is (mean loss, Adam's weight decay, early
    stopping), and there the formula overstates most samples' LSI. With ``converge`` (default)
    the head is first moved to that optimum (float64 L-BFGS warm-started at the trained head),
    so the values match exact leave-one-out refits; the result's ``attrs`` record the
    objective's gradient norm before and after. For the objective of
    ``rashomon.models.train.train`` (mean loss + weight decay wd) the matching prior precision is
    N · wd."""
    if not hasattr(model, "features") or not isinstance(
        getattr(model, "head", None), torch.nn.Linear
    ):
        raise RashomonError(
            "LSI needs a model with features(x) and an nn.Linear head (a rashomon Classifier)"
        )
    feats = model_features(model, x, device).cpu().double()
    w = model.head.weight.detach().cpu().double()
    b: torch.Tensor | None = (
        None if model.head.bias is None else model.head.bias.detach().cpu().double()
    )
    grad: dict[str, Any] = dict(prior_precision=prior_precision, kind=kind)
    before = objective_gradient_norm(feats, y, w, b, **grad)
    after = before
    if converge and precision is None:
        with torch.enable_grad():
            wn, bn = fit_head(
                feats,
                y,
                num_outputs=w.shape[0],
                prior_precision=prior_precision,
                kind=kind,
                bias=b is not None,
                init=(w, b),
                max_iter=max_iter,
            )
        w = torch.from_numpy(wn)
        b = None if bn is None else torch.from_numpy(bn)
        after = objective_gradient_norm(feats, y, w, b, **grad)
    out = cast(  # return_parts=True: the table
        pd.DataFrame,
        laplace_sample_information(
            feats,
            y,
            w,
            b,
            prior_precision=prior_precision,
            precision=precision,
            kind=kind,
            device=device,
            return_parts=True,
        ),
    )
    out.attrs = {"gradient_norm_trained": before, "gradient_norm_used": after}
    if return_parts:
        return out
    values = out["lsi"].to_numpy()
    return values
