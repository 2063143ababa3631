"""Best-in-set selection: pick the model best on VALIDATION, judge it on TEST.

For each desideratum the model of the Rashomon set with the best validation value is chosen and
its test value is reported next to the MAP model's and the set's test distribution. Whether the
choice is more than noise is judged two ways:

- the Spearman rank correlation between validation and test values across the set's models: if
  validation does not rank models as test does, picking the validation best is picking at random;
- a paired bootstrap CI of the test gain over the MAP model, resampling test patients (needs the
  desideratum's metric function and the test probabilities of the chosen and MAP models): a
  symmetric pivotal interval around the full-sample gain, see `bootstrap_gain`.

Verdict rule (column ``verdict``; ``selection_noise`` is its boolean):
``"selection noise"`` when rho is NaN or rho < ``rho_min`` (0.2 by default), or when the CI of
the gain includes 0; otherwise ``"real gain"`` (CI above 0) or ``"real loss"`` (CI below 0); and
``"ranks transfer (no CI)"`` when rho >= rho_min but no CI could be computed.

Gains are oriented: positive means better (higher for larger-is-better, lower otherwise).

Power (columns ``gain_se`` and ``min_detectable_gain``): every row with a bootstrap says how large
a test gain its test split could show. ``gain_se`` is the standard deviation of the bootstrap
replicates of the gain (its standard error at the run's test size) and ``min_detectable_gain``
the minimum detectable effect (z_{1−α/2} + z_{0.8}) · gain_se, α = 1 − level: the true gain a
two-sided test at level α detects four times in five (Bloom 1995; normal approximation). Why not
the interval's half-width: that is the smallest *observed* gain declared real, so a true gain of
that size is detected only half the time; "no fairer model holds on test" is evidence of absence
only for gains above the 80 %-power bar, about 1.4 half-widths. The bar is per desideratum at
the unadjusted α: Holm's correction over K desiderata raises it (at most by
(z_{1−α/2K} + z_{0.8}) / (z_{1−α/2} + z_{0.8}), 1.38 for K = 20 at α = 0.05), and the verdict's
validation-ranking gate is apart from it, so it is a lower bound on what the verdict needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rashomon import schema as S
from rashomon.decide.desiderata import Desideratum, Metric
from rashomon.errors import RashomonError
from rashomon.metrics.validation import check_probs, check_vector, require_array

QUANTILES = S.SELECTION_QUANTILES
POWER = 0.8  # the power at which min_detectable_gain is stated


def pick_on_validation(val: Any, higher_is_better: bool) -> tuple[int, int]:
    """Index of the best model on validation and how many models tie with it.

    Ties are broken by the lowest index: the set's models are exchangeable draws, so this is as
    good as a random tie-break; the tie count tells how much of the choice is arbitrary."""
    v = np.asarray(require_array(val, "validation values"), dtype=np.float64)
    if not np.isfinite(v).any():
        raise RashomonError("every validation value is NaN; cannot select a model")
    score = np.where(np.isfinite(v), v if higher_is_better else -v, -np.inf)
    best = int(np.argmax(score))
    return best, int(np.isclose(score, score[best], rtol=0, atol=1e-12).sum())


def spearman(val: Any, test: Any) -> tuple[float, float]:
    """Spearman rho and its two-sided p-value between validation and test values across models
    (NaN pairs dropped; NaN when fewer than 3 models or a constant column)."""
    v = np.asarray(require_array(val, "val"), dtype=np.float64)
    t = np.asarray(require_array(test, "test"), dtype=np.float64)
    ok = np.isfinite(v) & np.isfinite(t)
    v, t = v[ok], t[ok]
    if len(v) < 3 or np.ptp(v) == 0 or np.ptp(t) == 0:
        return float("nan"), float("nan")
    res = stats.spearmanr(v, t)
    return float(res.statistic), float(res.pvalue)


def bootstrap_gain(
    metric: Metric,
    probs_chosen: Any,
    probs_ref: Any,
    y: Any,
    groups: Mapping[str, Any] | None = None,
    *,
    higher_is_better: bool = True,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, np.ndarray]:
    """Paired bootstrap over test patients of the oriented gain ``metric(chosen) - metric(ref)``:
    the gain on the full test set and a symmetric pivotal interval around it.

    Each replicate resamples N patients with replacement (same indices for both models and for
    every group attribute); replicates where the metric is undefined (NaN, e.g. a group missing)
    are dropped. With θ̂ the full-sample gain and θ* the replicates, the bootstrap takes the
    error |θ̂ − θ| of the full-sample gain to be distributed like |θ* − θ̂| (the pivot), so the
    interval is θ̂ ± h, h the `level` quantile of |θ* − θ̂|. Estimate and interval describe the same
    quantity, the test gain, and the interval always holds the estimate.

    Why not the percentile interval [q_lo(θ*), q_hi(θ*)] beside θ̂, as before: it is centred on the
    replicates, and for a gap metric (max − min of per-group rates) every replicate's gap is
    inflated by resampling noise, so the interval shifts up, away from θ̂: it can exclude θ̂ (which
    crashed the report's selection plot on BreastMNIST) and it calls noise a gain. Why not the
    basic interval [2θ̂ − q_hi, 2θ̂ − q_lo]: it is the percentile interval mirrored through θ̂, so it
    excludes θ̂ exactly when that does; it needs the bias-corrected estimate 2θ̂ − median(θ*)
    beside it, which leaves the metric's range (a negative gain of a zero-gap model over a model
    with a gap) and, for two models with no gap on the test set, claims a "real loss".

    Measured with benchmarks/gain_interval.py (300 simulated test sets of 156 patients in three
    groups, 400 replicates; a constant model against a MAP model whose demographic-parity gap is
    truly 0): the percentile interval claimed a real gain (low > 0) in 100 % of the test sets,
    covered the true gain 0 in none and excluded θ̂ in 3 %; this interval claimed it in 18 % and
    covered 0 in 82 % (basic: 11 % and 89 %; normal θ̂ ± 1.96·sd: 21 % and 79 %). At a true gap of
    0.15 it covered 92 % (basic 84 %). No bootstrap interval reaches its nominal level on such a
    non-smooth metric near 0, which is why the verdict also asks validation to rank the models as
    test does. For a smooth metric such as an accuracy difference the intervals agree (the test
    checks this one against SciPy's percentile interval).

    Returns (gain on the full test set, CI low, CI high, replicates)."""
    pc = np.asarray(require_array(probs_chosen, "probs_chosen"), dtype=np.float64)
    pr = np.asarray(require_array(probs_ref, "probs_ref"), dtype=np.float64)
    if pc.shape != pr.shape or pc.ndim != 2:
        raise RashomonError(f"probs_chosen {pc.shape} and probs_ref {pr.shape} must both be [N, C]")
    n = len(pc)
    yy = check_vector(y, n, "y").astype(np.int64)
    gg = {k: check_vector(v, n, f"groups[{k!r}]") for k, v in (groups or {}).items()}
    sign = 1.0 if higher_is_better else -1.0
    gain = float(sign * (metric(pc, yy, gg) - metric(pr, yy, gg)))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        i = rng.integers(0, n, n)
        gb = {k: v[i] for k, v in gg.items()}
        reps[b] = sign * (metric(pc[i], yy[i], gb) - metric(pr[i], yy[i], gb))
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0 or not np.isfinite(gain):
        return gain, float("nan"), float("nan"), reps
    lo, hi = symmetric_interval(gain, reps, level)
    return gain, lo, hi, reps


def symmetric_interval(
    estimate: float, reps: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """θ̂ ± h with h the `level` quantile of |θ* − θ̂| over the bootstrap replicates θ* (see
    :func:`bootstrap_gain`); always holds `estimate`."""
    half = float(np.quantile(np.abs(np.asarray(reps, dtype=np.float64) - estimate), level))
    return estimate - half, estimate + half


def pivot_pvalue(estimate: float, reps: np.ndarray) -> float:
    """The bootstrap p-value of "no gain" that matches :func:`symmetric_interval`: the share of
    replicates with |θ* − θ̂| ≥ |θ̂|, so that p < 1 − level exactly when the interval excludes 0."""
    reps = np.asarray(reps, dtype=np.float64)
    if not len(reps) or not np.isfinite(estimate):
        return float("nan")
    return float(np.mean(np.abs(reps - estimate) >= abs(estimate)))


def bootstrap_se(reps: Any) -> float:
    """Standard error of a bootstrap estimate: the standard deviation of its finite replicates
    (n − 1 in the denominator); NaN with fewer than two."""
    r = np.asarray(reps, dtype=np.float64)
    r = r[np.isfinite(r)]
    return float(np.std(r, ddof=1)) if len(r) >= 2 else float("nan")


def minimum_detectable_gain(se: float, level: float = 0.95, power: float = POWER) -> float:
    """The smallest true gain a two-sided test at α = 1 − `level` detects with probability
    `power`, for an estimate with standard error `se`: (z_{1−α/2} + z_power) · se (normal
    approximation; see the module docstring for why not the interval's half-width). NaN when
    `se` is 0: the two models agree on every resampled patient the metric counts, so the split
    says nothing about the gain of a model that differs."""
    if not 0.0 < level < 1.0 or not 0.0 < power < 1.0:
        raise RashomonError(f"level {level} and power {power} must both lie strictly in (0, 1)")
    z = stats.norm.ppf(1.0 - (1.0 - level) / 2.0) + stats.norm.ppf(power)
    return float(z * se) if np.isfinite(se) and se > 0 else float("nan")


def holm(pvalues: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries are left out of the family)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out


def verdict(rho: float, ci_low: float, ci_high: float, rho_min: float = 0.2) -> str:
    """The rule in the module docstring."""
    if not np.isfinite(rho) or rho < rho_min:
        return "selection noise"
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "ranks transfer (no CI)"
    if ci_low > 0:
        return "real gain"
    if ci_high < 0:
        return "real loss"
    return "selection noise"


def select_one(
    val: Any,
    test: Any,
    map_val: float,
    map_test: float,
    desideratum: Desideratum,
    *,
    test_probs: Any = None,
    map_test_probs: Any = None,
    test_y: Any = None,
    test_groups: Mapping[str, Any] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    rho_min: float = 0.2,
) -> dict[str, Any]:
    """One row of :func:`best_in_set` (see there)."""
    v = np.asarray(require_array(val, "val"), dtype=np.float64)
    t = np.asarray(require_array(test, "test"), dtype=np.float64)
    if v.shape != t.shape or v.ndim != 1:
        raise RashomonError(
            f"validation {v.shape} and test {t.shape} values of {desideratum.name!r} must both "
            "be [M] over the same models"
        )
    hib = desideratum.higher_is_better
    best, n_tied = pick_on_validation(v, hib)
    sign = 1.0 if hib else -1.0
    rho, rho_p = spearman(v, t)
    ft = t[np.isfinite(t)]
    q = np.quantile(ft, QUANTILES) if len(ft) else np.full(len(QUANTILES), np.nan)
    gain, lo, hi = sign * (t[best] - map_test), float("nan"), float("nan")
    p_gain = se = float("nan")
    if desideratum.metric is not None and test_probs is not None and map_test_probs is not None:
        probs = check_probs(test_probs, name="test_probs")
        gain, lo, hi, reps = bootstrap_gain(
            desideratum.metric,
            probs[best],
            map_test_probs,
            test_y,
            test_groups,
            higher_is_better=hib,
            n_boot=n_boot,
            level=level,
            seed=seed,
        )
        p_gain = pivot_pvalue(gain, reps)
        se = bootstrap_se(reps)
    beaten = float(np.mean(sign * ft <= sign * t[best])) if len(ft) else float("nan")
    row: dict[str, Any] = {
        S.DESIDERATUM: desideratum.name,
        S.HIGHER_IS_BETTER: hib,
        S.MODELS_IN_SET: len(v),
        S.CHOSEN: best,
        S.N_TIED_ON_VAL: n_tied,
        S.CHOSEN_VAL: v[best],
        S.MAP_VAL: map_val,
        S.CHOSEN_TEST: t[best],
        S.MAP_TEST: map_test,
        S.TEST_GAIN: gain,
        S.GAIN_CI_LOW: lo,
        S.GAIN_CI_HIGH: hi,
        S.GAIN_SE: se,
        S.MIN_DETECTABLE_GAIN: minimum_detectable_gain(se, level),
        S.ORACLE_TEST: float(np.max(sign * ft) * sign) if len(ft) else float("nan"),
        S.CHOSEN_TEST_PERCENTILE: beaten,
    }
    row.update({S.set_test_quantile(a): x for a, x in zip(QUANTILES, q, strict=True)})
    row.update({S.SPEARMAN_RHO: rho, S.SPEARMAN_P: rho_p, S.GAIN_P: p_gain, S.GAIN_P_HOLM: p_gain})
    row[S.VERDICT] = verdict(rho, lo, hi, rho_min)
    row[S.SELECTION_NOISE] = row[S.VERDICT] == "selection noise"
    return row


def best_in_set(
    val_values: pd.DataFrame | Mapping[str, Any],
    test_values: pd.DataFrame | Mapping[str, Any],
    map_val: Mapping[str, float],
    map_test: Mapping[str, float],
    desiderata: Sequence[Desideratum],
    *,
    test_probs: Any = None,
    map_test_probs: Any = None,
    test_y: Any = None,
    test_groups: Mapping[str, Any] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    rho_min: float = 0.2,
) -> pd.DataFrame:
    """Best-in-set selection for every desideratum, one row each.

    Inputs: per-model values over the Rashomon set on validation and on test (DataFrames or
    mappings, one column ``[M]`` per desideratum name, rows = the same models in the same order),
    the MAP model's values, and optionally ``test_probs [M, N, C]`` (the set's test
    probabilities, same model order), ``map_test_probs [N, C]``, ``test_y``, ``test_groups`` for
    the bootstrap CI (each desideratum's ``metric`` is then evaluated on resampled patients).

    Columns: desideratum, higher_is_better, models_in_set, chosen (row index of the chosen model),
    n_tied_on_val, chosen_val, map_val, chosen_test, map_test, test_gain (oriented: > 0 better),
    gain_ci_low/high (around test_gain, see :func:`bootstrap_gain`), gain_se and
    min_detectable_gain (the power of the test split, see the module docstring), oracle_test
    (best test value in the set, unreachable without test labels), chosen_test_percentile (share
    of the set the chosen model matches or beats on test), set_test_q05..q95, spearman_rho,
    spearman_p, verdict, selection_noise."""
    rows = []
    undefined = []
    for i, d in enumerate(desiderata):
        for name, table in (("validation", val_values), ("test", test_values)):
            if d.name not in table:
                raise RashomonError(f"{name} values have no column {d.name!r}; compute it first")
        if not np.isfinite(np.asarray(val_values[d.name], dtype=np.float64)).any():
            # e.g. a TPR gap where a group has no positive patient on validation: nothing to
            # choose on; one such desideratum must not take the others down
            undefined.append(d.name)
            continue
        rows.append(
            select_one(
                np.asarray(val_values[d.name], dtype=np.float64),
                np.asarray(test_values[d.name], dtype=np.float64),
                float(map_val[d.name]),
                float(map_test[d.name]),
                d,
                test_probs=test_probs,
                map_test_probs=map_test_probs,
                test_y=test_y,
                test_groups=test_groups,
                n_boot=n_boot,
                level=level,
                seed=seed + i,
                rho_min=rho_min,
            )
        )
    table = apply_holm(pd.DataFrame(rows), level)
    table.attrs["undefined_on_validation"] = undefined
    return table


def apply_holm(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Holm-adjust the gains' p-values across the table's desiderata; a real gain (or loss)
    whose adjusted p-value is not below 1 − level becomes selection noise. The more desiderata
    selection tries, the likelier one of them gains by chance."""
    if not len(table):
        return table
    table = table.copy()
    table[S.GAIN_P_HOLM] = holm(table[S.GAIN_P])
    real = table[S.VERDICT].isin(["real gain", "real loss"])
    table.loc[real & ~(table[S.GAIN_P_HOLM] < 1.0 - level), S.VERDICT] = "selection noise"
    table[S.SELECTION_NOISE] = table[S.VERDICT] == "selection noise"
    return table


CORRUPTION_DESIDERATUM = "corruption_accuracy"


def _mean_correct(probs: np.ndarray, y: np.ndarray, groups: Mapping[str, np.ndarray]) -> float:
    return float(probs[:, 1].mean())


def robustness_selection(
    val_correct: Any,
    test_correct: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    rho_min: float = 0.2,
) -> dict[str, Any]:
    """Select the model with the highest accuracy on corrupted validation images and confirm it
    on corrupted test images. Inputs are per-patient correctness [1 + M, N] averaged over every
    corruption and severity (row 0 the MAP model), as `robustness_tables` keeps them; the gain's
    interval resamples test patients, pairing the chosen model with the MAP model."""
    v = np.asarray(require_array(val_correct, "val_correct"), dtype=np.float64)
    t = np.asarray(require_array(test_correct, "test_correct"), dtype=np.float64)
    if v.ndim != 2 or t.ndim != 2 or len(v) != len(t) or len(v) < 3:
        raise RashomonError(
            f"corrupted correctness must be [1 + M, N] on both splits with M ≥ 2 models, got "
            f"{v.shape} and {t.shape}; re-run the evaluate stage"
        )
    # correctness c as [N, 2] "probabilities" (1 − c, c): the metric is then their mean
    probs = np.stack([1 - t[1:], t[1:]], axis=-1)
    return select_one(
        v[1:].mean(axis=1),
        t[1:].mean(axis=1),
        float(v[0].mean()),
        float(t[0].mean()),
        Desideratum(CORRUPTION_DESIDERATUM, True, _mean_correct),
        test_probs=probs,
        map_test_probs=np.stack([1 - t[0], t[0]], axis=-1),
        test_y=np.zeros(t.shape[1], dtype=np.int64),
        test_groups={},
        n_boot=n_boot,
        level=level,
        seed=seed,
        rho_min=rho_min,
    )


def compare_with_baseline(
    selection: pd.DataFrame, baseline_test: Mapping[str, float], name: str = "constrained"
) -> pd.DataFrame:
    """Free selection next to a constrained baseline (e.g. a group-balanced retrain): adds
    ``<name>_test`` and ``selection_minus_<name>`` (oriented, > 0: free selection is better)."""
    out = selection.copy()
    base = out[S.DESIDERATUM].map(lambda d: baseline_test.get(d, np.nan)).astype(float)
    sign = np.where(out[S.HIGHER_IS_BETTER], 1.0, -1.0)
    test_col, minus_col = S.baseline_columns(name)
    out[test_col] = base
    out[minus_col] = sign * (out[S.CHOSEN_TEST] - base)
    return out
