"""Ensembles drawn from the Rashomon set, with abstention (selective ensembles).

Following Black, Leino & Fredrikson (ICLR 2022) and Lockfisch et al. (2025): an ensemble of k
models drawn from the set predicts by majority vote or by mean probability, and abstains when its
members do not agree enough. Two abstention rules:

- ``share``: abstain when the top class's vote share is below tau (a tie for the top vote always
  abstains: there is no majority to report);
- ``binomial``: abstain when a two-sided binomial test of the top-two vote counts (n_top successes
  out of n_top + n_second, p = 1/2) is not significant at alpha (Black et al.'s rule). A single
  model (k = 1) gives p = 1 and always abstains; k unanimous votes give p = 2^(1-k), so alpha = 0.05
  needs k >= 6 before anything is covered.
- ``none``: never abstain (the plain ensemble; ties broken by mean probability).

Abstention depends on the votes only; ``combine`` only picks the label that a covered ensemble
reports (``vote``: the majority class, ties broken by mean probability; ``mean``: the argmax of
the mean probability).

Residual ambiguity between independent ensembles. Draw a random permutation of the M models and
cut it into E disjoint ensembles of k models (E = ``n_ensembles``, at most M // k). For sample n,
let the covering ensembles be those that do not abstain on n. Then

- ``residual_ambiguity`` = share of samples on which at least two covering ensembles report
  different labels (the set-level analogue of ambiguity, now between ensembles);
- ``pairwise_disagreement`` = mean over samples and over the E(E-1)/2 pairs of ensembles of
  [both cover the sample and report different labels]. It does not grow with E, unlike the
  first, so compare ``residual_ambiguity`` only at equal E (``ensemble_curves`` keeps E fixed
  across k by default).

Both are averaged over ``n_partitions`` independent random permutations (seeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics.validation import check_probs, check_vector, require_array

RULES = ("none", "share", "binomial")
COMBINES = ("vote", "mean")


def check_ensemble_size(k: int, n_models: int) -> None:
    """Refuse an ensemble size outside 1 … `n_models` with a one-line RashomonError."""
    if k < 1:
        raise RashomonError(f"ensemble size k={k} must be at least 1")
    if k > n_models:
        raise RashomonError(
            f"ensemble size k={k} exceeds the Rashomon set ({n_models} models); "
            f"use k <= {n_models} or a larger epsilon / more samples"
        )


def binomial_pvalues(n_top: Any, n_second: Any) -> np.ndarray:
    """Two-sided binomial test p-value of ``n_top`` successes in ``n_top + n_second`` trials at
    p = 1/2, elementwise (equals ``scipy.stats.binomtest(n_top, n_top + n_second).pvalue``).

    The null distribution is symmetric, so the two-sided p-value is 2 P(X >= max(a, n - a)),
    capped at 1 (and exactly 1 for a tie or zero trials)."""
    a = np.asarray(n_top, dtype=np.int64)
    n = a + np.asarray(n_second, dtype=np.int64)
    hi = np.maximum(a, n - a)
    p = 2.0 * stats.binom.sf(hi - 1, n, 0.5)
    return np.where((n == 0) | (2 * a == n), 1.0, np.minimum(p, 1.0))


def draw_ensembles(n_models: int, k: int, n_ensembles: int | None = None, seed: int = 0):
    """Indices ``[E, k]`` of E disjoint ensembles of k models, from one seeded permutation.

    E defaults to ``n_models // k`` (as many disjoint ensembles as fit)."""
    check_ensemble_size(k, n_models)
    most = n_models // k
    e = most if n_ensembles is None else n_ensembles
    if e < 1 or e > most:
        raise RashomonError(
            f"{e} disjoint ensembles of k={k} need {e * k} models but the set has {n_models}; "
            f"use at most {most} ensembles"
        )
    perm = np.random.default_rng(seed).permutation(n_models)
    return perm[: e * k].reshape(e, k)


@dataclass
class EnsembleOutput:
    """Predictions of E ensembles on N samples."""

    labels: np.ndarray  # [E, N] reported label (meaningful where covered)
    covered: np.ndarray  # [E, N] bool, False where the ensemble abstains
    vote_share: np.ndarray  # [E, N] share of members voting for the top class
    pvalue: np.ndarray  # [E, N] binomial test of the top-two vote counts


def _vote_counts(preds: np.ndarray, members: np.ndarray, num_classes: int) -> np.ndarray:
    """Vote counts ``[E, N, C]`` of the ensembles ``members [E, k]`` from labels ``[M, N]``."""
    onehot = np.zeros((len(members), preds.shape[1], num_classes), dtype=np.int32)
    for j in range(members.shape[1]):  # k slices of [E, N]; avoids an [E, k, N, C] temporary
        onehot += preds[members[:, j]][..., None] == np.arange(num_classes)
    return onehot


def ensemble_predict(
    probs: Any,
    members: Any,
    *,
    combine: str = "vote",
    rule: str = "share",
    threshold: float = 0.5,
) -> EnsembleOutput:
    """Labels and abstentions of the ensembles ``members [E, k]`` drawn from ``probs [M, N, C]``.

    ``threshold`` is tau for ``rule="share"`` and alpha for ``rule="binomial"``; see the module
    docstring for the rules."""
    p = check_probs(probs)
    idx = np.asarray(require_array(members, "members"), dtype=np.int64)
    if idx.ndim != 2:
        raise RashomonError(f"members must be [E, k] model indices, got shape {idx.shape}")
    if combine not in COMBINES:
        raise RashomonError(f"unknown combine {combine!r}; use one of {COMBINES}")
    if rule not in RULES:
        raise RashomonError(f"unknown abstention rule {rule!r}; use one of {RULES}")
    check_ensemble_size(idx.shape[1], p.shape[0])
    return _ensemble_predict(p, p.argmax(-1), idx, combine, rule, threshold)


@dataclass
class _Votes:
    """What every abstention rule needs from one draw of ensembles, computed once."""

    vote_label: np.ndarray  # [E, N]
    mean_label: np.ndarray  # [E, N]
    n_top: np.ndarray  # [E, N]
    n_second: np.ndarray  # [E, N]
    k: int

    def predict(self, combine: str, rule: str, threshold: float) -> EnsembleOutput:
        labels = self.vote_label if combine == "vote" else self.mean_label
        share = self.n_top / self.k
        pval = binomial_pvalues(self.n_top, self.n_second)
        tie = self.n_top == self.n_second
        if rule == "none":
            covered = np.ones_like(tie)
        elif rule == "share":
            covered = (share >= threshold - 1e-12) & ~tie
        else:
            covered = (pval <= threshold) & ~tie
        return EnsembleOutput(labels, covered, share, pval)


def _votes(p: np.ndarray, preds: np.ndarray, idx: np.ndarray) -> _Votes:
    e, k = idx.shape
    c = p.shape[2]
    if c < 2:
        raise RashomonError(f"ensembles need at least 2 classes, got probs with C={c}")
    counts = _vote_counts(preds, idx, c)  # [E, N, C]
    mean = p[idx.reshape(-1)].reshape(e, k, p.shape[1], c).mean(1)  # [E, N, C]
    # Mean probability (< 1) breaks vote ties without ever overturning a strict majority.
    vote_label = np.argmax(counts + 0.5 * mean, axis=-1)
    top2 = -np.sort(-counts, axis=-1)[..., :2]
    return _Votes(vote_label, mean.argmax(-1), top2[..., 0], top2[..., 1], k)


def _ensemble_predict(
    p: np.ndarray, preds: np.ndarray, idx: np.ndarray, combine: str, rule: str, threshold: float
) -> EnsembleOutput:
    return _votes(p, preds, idx).predict(combine, rule, threshold)


def residual_ambiguity(labels: np.ndarray, covered: np.ndarray, num_classes: int):
    """(residual_ambiguity, pairwise_disagreement) between the E ensembles; NaN when E < 2."""
    e = labels.shape[0]
    if e < 2:
        return float("nan"), float("nan")
    cc = np.stack([((labels == j) & covered).sum(0) for j in range(num_classes)], -1)  # [N, C]
    any_disagree = (cc > 0).sum(-1) >= 2
    m = covered.sum(0)
    agree_pairs = (cc * (cc - 1) // 2).sum(-1)
    disagree_pairs = m * (m - 1) // 2 - agree_pairs
    return float(any_disagree.mean()), float(disagree_pairs.mean() / (e * (e - 1) / 2))


def _rule_grid(taus: Sequence[float], alphas: Sequence[float]) -> list[tuple[str, float]]:
    return (
        [("none", float("nan"))]
        + [("share", float(t)) for t in taus]
        + [("binomial", float(a)) for a in alphas]
    )


def ensemble_curves(
    probs: Any,
    y: Any,
    ks: Sequence[int] = (1, 3, 5, 10, 20),
    taus: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    alphas: Sequence[float] = (0.05,),
    *,
    combines: Sequence[str] = COMBINES,
    n_ensembles: int | None = None,
    n_partitions: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Coverage, accuracy on covered samples and residual ambiguity as functions of k and the
    abstention threshold, for ensembles drawn from the Rashomon set ``probs [M, N, C]``.

    ``n_ensembles`` (E) is kept the same for every k so that ``residual_ambiguity`` is comparable
    across k; it defaults to ``max(2, M // max(ks))``. A k with fewer than E disjoint ensembles in
    the set uses ``M // k`` of them (column ``n_ensembles``). Every k must be <= M.

    Returns one row per (combine, rule, threshold, k) with columns ``coverage`` (share of
    (ensemble, sample) pairs covered), ``covered_accuracy`` (accuracy pooled over covered pairs;
    NaN when nothing is covered), ``residual_ambiguity``, ``pairwise_disagreement`` (module
    docstring), ``n_ensembles`` and ``n_partitions``."""
    p = check_probs(probs)
    m, n, c = p.shape
    yy = check_vector(y, n, "y").astype(np.int64)
    ks = sorted({int(k) for k in ks})
    for k in ks:
        check_ensemble_size(k, m)
    for comb in combines:
        if comb not in COMBINES:
            raise RashomonError(f"unknown combine {comb!r}; use one of {COMBINES}")
    e_target = n_ensembles if n_ensembles is not None else max(2, m // ks[-1])
    preds = p.argmax(-1)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(m) for _ in range(n_partitions)]
    grid = _rule_grid(taus, alphas)
    acc: dict[tuple, list[np.ndarray]] = {}
    for k in ks:
        e = max(1, min(e_target, m // k))
        for perm in perms:
            votes = _votes(p, preds, perm[: e * k].reshape(e, k))
            for comb in combines:
                for rule, thr in grid:
                    out = votes.predict(comb, rule, thr)
                    cov = out.covered
                    ncov = cov.sum()
                    correct = ((out.labels == yy) & cov).sum()
                    ra, pw = residual_ambiguity(out.labels, cov, c)
                    row = np.array([cov.mean(), correct / ncov if ncov else np.nan, ra, pw, e])
                    acc.setdefault((comb, rule, thr, k), []).append(row)
    rows = []
    for (comb, rule, thr, k), vals in acc.items():
        v = _nanmean_rows(np.stack(vals))
        rows.append(
            {
                S.COMBINE: comb,
                S.RULE: rule,
                S.THRESHOLD: thr,
                S.K: k,
                S.N_ENSEMBLES: int(vals[0][4]),
                S.N_PARTITIONS: len(vals),
                S.COVERAGE: v[0],
                S.COVERED_ACCURACY: v[1],
                S.RESIDUAL_AMBIGUITY: v[2],
                S.PAIRWISE_DISAGREEMENT: v[3],
            }
        )
    return pd.DataFrame(rows)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Column means over partitions ignoring NaN (NaN where a column has no finite value)."""
    ok = np.isfinite(a)
    n = ok.sum(0)
    return np.where(n > 0, np.where(ok, a, 0).sum(0) / np.maximum(n, 1), np.nan)


def smallest_k(curves: pd.DataFrame, target: float = 0.01) -> pd.DataFrame:
    """Per (combine, rule, threshold): the smallest k whose residual ambiguity is below ``target``
    while still covering something (coverage > 0), with the coverage it keeps and the coverage it
    costs relative to the plain single model (1 - coverage). ``k_min`` is NaN when no k reaches
    the target. ``single_model_ambiguity`` is the residual ambiguity of single models without
    abstention (k = 1, rule ``none``), the starting point."""
    plain = curves[(curves["rule"] == "none") & (curves["k"] == 1)]
    single = dict(zip(plain["combine"], plain["residual_ambiguity"], strict=True))
    rows = []
    for (comb, rule, thr), g in curves.groupby(["combine", "rule", "threshold"], dropna=False):
        g = g.sort_values("k")
        ok = g[(g["residual_ambiguity"] < target) & (g["coverage"] > 0)]
        first = ok.iloc[0] if len(ok) else None
        rows.append(
            {
                S.COMBINE: comb,
                S.RULE: rule,
                S.THRESHOLD: thr,
                S.TARGET: target,
                S.K_MIN: int(first[S.K]) if first is not None else np.nan,
                S.COVERAGE: first[S.COVERAGE] if first is not None else np.nan,
                S.COVERAGE_COST: 1 - first[S.COVERAGE] if first is not None else np.nan,
                S.COVERED_ACCURACY: first[S.COVERED_ACCURACY] if first is not None else np.nan,
                S.RESIDUAL_AMBIGUITY: (
                    first[S.RESIDUAL_AMBIGUITY] if first is not None else np.nan
                ),
                S.SINGLE_MODEL_AMBIGUITY: single.get(comb, np.nan),
            }
        )
    return pd.DataFrame(rows)


def arbitrary_patients(
    probs: Any,
    y: Any,
    ref: Any,
    *,
    k: int,
    rule: str = "share",
    threshold: float = 0.8,
    combine: str = "vote",
    n_ensembles: int | None = None,
    seed: int = 0,
    only_arbitrary: bool = True,
) -> pd.DataFrame:
    """Per test patient: is the single-model prediction arbitrary (at least one model of the set
    flips the MAP label), and what do E disjoint ensembles of k models do with it.

    Columns: ``sample`` (index in the split), ``true_label``, ``map_label``, ``map_correct``,
    ``flip_rate`` (share of set models whose label differs from the MAP's), ``ambiguous``,
    ``ensemble_abstain_rate`` (share of the E ensembles abstaining), ``ensemble_label`` (most
    common label among covering ensembles, -1 if all abstain), ``ensembles_disagree`` (two
    covering ensembles differ). ``only_arbitrary`` keeps the arbitrary rows."""
    p = check_probs(probs)
    m, n, c = p.shape
    yy = check_vector(y, n, "y").astype(np.int64)
    rr = check_vector(ref, n, "ref").astype(np.int64)
    idx = draw_ensembles(m, k, n_ensembles, seed)
    preds = p.argmax(-1)
    out = _ensemble_predict(p, preds, idx, combine, rule, threshold)
    flip = (preds != rr).mean(0)
    cc = np.stack([((out.labels == j) & out.covered).sum(0) for j in range(c)], -1)
    ens_label = np.where(cc.sum(-1) > 0, cc.argmax(-1), -1)
    table = pd.DataFrame(
        {
            S.SAMPLE: np.arange(n),
            S.TRUE_LABEL: yy,
            S.MAP_LABEL: rr,
            S.MAP_CORRECT: rr == yy,
            S.FLIP_RATE: flip,
            S.AMBIGUOUS: flip > 0,
            S.ENSEMBLE_ABSTAIN_RATE: 1 - out.covered.mean(0),
            S.ENSEMBLE_LABEL: ens_label,
            S.ENSEMBLES_DISAGREE: (cc > 0).sum(-1) >= 2,
        }
    )
    table.attrs.update(k=k, rule=rule, threshold=threshold, combine=combine, n_ensembles=len(idx))
    return table[table[S.AMBIGUOUS]].reset_index(drop=True) if only_arbitrary else table
