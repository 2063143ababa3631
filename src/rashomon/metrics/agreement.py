"""How far one model set's multiplicity agrees with the retrained set's (the ground truth of the
validity study): pure functions of the sets' test probabilities, used by `rashomon compare`
(run directories side by side) and the validate stage.

- `set_multiplicity`: ambiguity, discrepancy, mean disagreement and mean Rashomon capacity of a
  set against its MAP model, with the per-patient disagreement, flip matrix and "arbitrary
  patient" flags (at least one model of the set flips the MAP model's label);
- size-matched flag agreement (the headline): with h = ⌊T/2⌋ (T the ground truth's models within
  ε), each of R rounds draws h of the set's models and a random half of the ground truth and
  scores the draw's flags against that half's; the ceiling is the other, disjoint half against
  the first (`flag_ceiling`, `size_matched_agreement`);
- `flip_rate_agreement`: Spearman ρ of per-patient flip rates and the average precision of the
  set's flip rate as a score for the ground truth's flags;
- ambiguity growth: expected share flagged by k drawn models (exact, hypergeometric) with a band
  over random draws (`ambiguity_growth`, `models_for_ambiguity`);
- `flag_agreement` (full size, not comparable across set sizes), `rank_agreement`,
  `desideratum_spread`;
- `compare_with_truth`: all of them for several sets against the ground truth, as tables.

Multilabel sets ([M, N, L] sigmoid probabilities, recognised by rows that do not sum to one) are
audited per label as binary tasks: each (patient, label) pair counts as one sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics.capacity import rashomon_capacity
from rashomon.metrics.multiplicity import ambiguity, disagreement, discrepancy, predict_labels

GROWTH_COLUMNS = ("k", "ambiguity", "ambiguity_p05", "ambiguity_p95")
MATCHED_ROUNDS = 200  # rounds of h drawn models against a random half of the ground truth
GROWTH_DRAWS = 200  # random draws of k models behind each growth band
GROWTH_POINTS = 40  # log-spaced k of a growth curve when a set has more models
GROWTH_BAND = (5.0, 95.0)  # percentiles of the growth band (ambiguity_p05, ambiguity_p95)
NOT_DESIDERATA = (S.MODEL,)


@dataclass
class SetArrays:
    """One set's test predictions at the matched ε and what it cost to build."""

    name: str
    probs: np.ndarray  # [M_kept, N, C] test probabilities of the models within ε
    map_probs: np.ndarray  # [N, C] the MAP model's
    models: int = 0  # M before filtering
    per_model_test: pd.DataFrame | None = None  # desiderata of the kept models, one row each
    cost: dict[str, float] = field(default_factory=dict)
    source: str = ""
    run_dir: str = ""


# --------------------------------------------------------------------------- pure functions


def as_binary(probs: np.ndarray, map_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multilabel [M, N, L] / [N, L] sigmoid probabilities → binary [M, N·L, 2] / [N·L, 2]; a
    softmax set (rows summing to one) is returned unchanged."""
    probs = np.asarray(probs, dtype=np.float64)
    map_probs = np.asarray(map_probs, dtype=np.float64)
    if np.allclose(map_probs.sum(axis=-1), 1.0, atol=1e-3):
        return probs, map_probs
    p = probs.reshape(probs.shape[0], -1)
    q = map_probs.reshape(-1)
    return np.stack([1 - p, p], axis=-1), np.stack([1 - q, q], axis=-1)


def label_flips(preds: np.ndarray, map_labels: np.ndarray) -> np.ndarray:
    """[M, N] bool: model m gives sample n another label than the MAP model, from predicted
    labels [M, N] and the MAP model's labels [N]."""
    preds = np.asarray(preds)
    map_labels = np.asarray(map_labels)
    if preds.ndim != 2 or map_labels.shape != preds.shape[1:]:
        raise RashomonError(
            f"labels {preds.shape} and MAP labels {map_labels.shape} do not match; give [M, N] "
            "and [N]"
        )
    return preds != map_labels[None, :]


def flip_matrix(probs: np.ndarray, map_probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """[M, N] bool flips from probabilities [M, N, C] and the MAP model's [N, C]; a multilabel
    set is audited per (patient, label) pair (`as_binary`), so N counts pairs."""
    probs, map_probs = as_binary(probs, map_probs)
    preds = predict_labels(probs, threshold)
    return label_flips(preds, predict_labels(map_probs[None], threshold)[0])


def set_multiplicity(
    probs: np.ndarray, map_probs: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Ambiguity, discrepancy, mean disagreement and mean capacity of a set against its MAP
    model, plus the per-sample disagreement, flip matrix, flip rate and arbitrary-patient flags
    the agreement needs."""
    probs, map_probs = as_binary(probs, map_probs)
    preds = predict_labels(probs, threshold)
    ref = predict_labels(map_probs[None], threshold)[0]
    per_sample = disagreement(preds, num_classes=probs.shape[-1])
    flips = label_flips(preds, ref)
    flags = flips.any(axis=0)
    return {
        "ambiguity": ambiguity(preds, ref),
        "discrepancy": discrepancy(preds, ref),
        "mean_disagreement": float(per_sample.mean()),
        "mean_capacity": float(rashomon_capacity(probs).mean()),
        "arbitrary_share": float(flags.mean()),
        "disagreement": per_sample,
        "flips": flips,
        "flip_rate": flips.mean(axis=0),
        "flags": flags,
    }


def flag_agreement(flags: np.ndarray, truth_flags: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a set's arbitrary-patient flags against the ground truth's (NaN
    when the set flags nobody, resp. the ground truth flags nobody)."""
    flags = np.asarray(flags, dtype=bool)
    truth_flags = np.asarray(truth_flags, dtype=bool)
    hits = float((flags & truth_flags).sum())
    precision = hits / flags.sum() if flags.any() else math.nan
    recall = hits / truth_flags.sum() if truth_flags.any() else math.nan
    return float(precision), float(recall)


def rank_agreement(values: np.ndarray, truth_values: np.ndarray) -> float:
    """Spearman rank correlation of two per-sample arrays (NaN when either is constant)."""
    from scipy.stats import spearmanr

    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(truth_values, dtype=np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


# --------------------------------------------------------------------------- size-matched flags


def truth_halves(
    models: int, rounds: int = MATCHED_ROUNDS, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`rounds` random splits of a set of `models` into two disjoint halves of ⌊models/2⌋ (an
    odd model out sits in neither). The halves depend only on (models, rounds, seed), so every
    set compared with one ground truth meets the same halves, and so does the ceiling."""
    h = models // 2
    rng = np.random.default_rng([seed, 0])
    for _ in range(rounds):
        order = rng.permutation(models)
        yield order[:h], order[h : 2 * h]


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample sd over the rounds where the figure is defined (NaN when none is)."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _summarise(recalls: list[float], precisions: list[float], suffix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, values in (("flag_recall", recalls), ("flag_precision", precisions)):
        mean, sd = _mean_sd(values)
        out[f"{name}_{suffix}"] = mean
        out[f"{name}_{suffix}_sd"] = sd
    return out


def flag_ceiling(
    truth_flips: np.ndarray, rounds: int = MATCHED_ROUNDS, seed: int = 0
) -> dict[str, float]:
    """The split-half ceiling: over `rounds` splits of the ground truth into disjoint halves A
    and B (`truth_halves`), the flag recall and precision of half B against half A, mean and sd
    (NaN below two models)."""
    truth_flips = np.asarray(truth_flips, dtype=bool)
    recalls: list[float] = []
    precisions: list[float] = []
    if truth_flips.shape[0] >= 2:
        for a, b in truth_halves(truth_flips.shape[0], rounds, seed):
            precision, recall = flag_agreement(
                truth_flips[b].any(axis=0), truth_flips[a].any(axis=0)
            )
            recalls.append(recall)
            precisions.append(precision)
    return _summarise(recalls, precisions, "ceiling")


def matched_flag_agreement(
    flips: np.ndarray, truth_flips: np.ndarray, rounds: int = MATCHED_ROUNDS, seed: int = 0
) -> dict[str, Any]:
    """Flag recall and precision of h = ⌊T/2⌋ of the set's models against half A of the ground
    truth (the halves of `truth_halves`, so half A is the ceiling's reference too), mean and sd
    over `rounds`. The set's models are drawn without replacement, with replacement only when it
    has fewer than h (`matched_with_replacement` says so)."""
    flips = np.asarray(flips, dtype=bool)
    truth_flips = np.asarray(truth_flips, dtype=bool)
    m, t = flips.shape[0], truth_flips.shape[0]
    h = t // 2
    replace = m < h
    rng = np.random.default_rng([seed, 1])
    recalls: list[float] = []
    precisions: list[float] = []
    if h >= 1:
        for a, _ in truth_halves(t, rounds, seed):
            draw = rng.choice(m, size=h, replace=replace)
            precision, recall = flag_agreement(flips[draw].any(axis=0), truth_flips[a].any(axis=0))
            recalls.append(recall)
            precisions.append(precision)
    return {
        "matched_models": h,
        "matched_rounds": rounds,
        "matched_with_replacement": replace,
        **_summarise(recalls, precisions, "matched"),
    }


def _ratio(value: float, ceiling: float) -> float:
    return value / ceiling if np.isfinite(value) and np.isfinite(ceiling) and ceiling else math.nan


def size_matched_agreement(
    flips: np.ndarray,
    truth_flips: np.ndarray,
    rounds: int = MATCHED_ROUNDS,
    seed: int = 0,
    ceiling: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The headline validity figures of a set's flips [M, N] against the ground truth's [T, N]:
    `matched_flag_agreement`, the ceiling (`flag_ceiling`, or the one given) and the ratios
    `flag_recall_ratio`, `flag_precision_ratio` (set mean / ceiling mean)."""
    out = matched_flag_agreement(flips, truth_flips, rounds, seed)
    out.update(ceiling if ceiling is not None else flag_ceiling(truth_flips, rounds, seed))
    for name in ("flag_recall", "flag_precision"):
        out[f"{name}_ratio"] = _ratio(out[f"{name}_matched"], out[f"{name}_ceiling"])
    return out


# --------------------------------------------------------------------------- flip rates


def flip_rate_agreement(flips: np.ndarray, truth_flips: np.ndarray) -> dict[str, float]:
    """Per-patient flip rates (share of a set's models that flip the MAP label) against the
    ground truth's: Spearman ρ of the two rates, the average precision of the set's rate as a
    score for the ground truth's flags (NaN when it flags nobody), and that score's base rate
    (the share of patients the ground truth flags)."""
    from sklearn.metrics import average_precision_score

    flips = np.asarray(flips, dtype=bool)
    truth_flips = np.asarray(truth_flips, dtype=bool)
    truth_flags = truth_flips.any(axis=0)
    rate = flips.mean(axis=0)
    ap = float(average_precision_score(truth_flags, rate)) if truth_flags.any() else math.nan
    return {
        "flip_rate_spearman": rank_agreement(rate, truth_flips.mean(axis=0)),
        "flip_rate_ap": ap,
        "flip_rate_ap_base_rate": float(truth_flags.mean()),
    }


# --------------------------------------------------------------------------- ambiguity growth


def growth_grid(models: int, points: int = GROWTH_POINTS, extra: Sequence[int] = ()) -> np.ndarray:
    """The k of a growth curve: 1 … models, or `points` log-spaced values from 1 to `models` when
    there are more; plus the `extra` k that lie in that range."""
    if models <= points:
        ks = np.arange(1, models + 1)
    else:
        ks = np.round(np.geomspace(1, models, points)).astype(int)
    extra_ks = [int(k) for k in extra if 1 <= k <= models]
    return np.unique(np.concatenate([ks, extra_ks]).astype(int))


def expected_ambiguity(flips: np.ndarray, ks: Sequence[int] | np.ndarray) -> np.ndarray:
    """[K] expected share of samples flagged by k models drawn at random (without replacement)
    from the set: the mean over samples of 1 − C(M − f, k) / C(M, k), f the number of the set's
    models flipping the sample (hypergeometric, exact). NaN where k lies outside 1 … M."""
    from scipy.stats import hypergeom

    flips = np.asarray(flips, dtype=bool)
    m, n = flips.shape
    f, count = np.unique(flips.sum(axis=0), return_counts=True)
    k = np.asarray(ks, dtype=np.int64)
    out = np.full(k.shape, math.nan)
    ok = (k >= 1) & (k <= m)
    if ok.any():
        none = hypergeom.pmf(0, m, f[None, :], k[ok][:, None])  # [K, distinct f]
        out[ok] = 1.0 - none @ count / n
    return out


def _growth_band(
    flips: np.ndarray, ks: np.ndarray, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """5th and 95th percentiles over `draws` random orders of the models of the share of samples
    the first k models flag (each prefix of a random order is a random k-subset)."""
    m, n = flips.shape
    counts = flips.sum(axis=0)
    always = int((counts == m).sum())
    # samples no model flips, or every model does, are flagged by no k, resp. by every k; the
    # others are held sparse (flipping model per sample, grouped by sample): a draw then costs
    # one pass over the flips, not over M × N
    sample, model = np.nonzero(flips[:, (counts > 0) & (counts < m)].T)
    starts = np.flatnonzero(np.r_[True, np.diff(sample) != 0]) if sample.size else sample
    rng = np.random.default_rng([seed, 2])
    shares = np.empty((draws, len(ks)))
    for d in range(draws):
        position = rng.permutation(m)  # each prefix of a random order is a random k-subset
        first = np.minimum.reduceat(position[model], starts) if sample.size else sample
        shares[d] = (np.searchsorted(np.sort(first), ks, side="left") + always) / n
    lo, hi = np.percentile(shares, GROWTH_BAND, axis=0)
    return lo, hi


def ambiguity_growth(
    flips: np.ndarray,
    ks: Sequence[int] | np.ndarray | None = None,
    draws: int = GROWTH_DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """Ambiguity against the number of models: for each k (default `growth_grid(M)`), the
    expected share of samples flagged by k of the set's models (`expected_ambiguity`) and its
    5–95 % band over `draws` random draws of k models (NaN with draws = 0). At k = 1 it is the
    mean single-model flip share, at k = M the set's ambiguity."""
    flips = np.asarray(flips, dtype=bool)
    grid = growth_grid(flips.shape[0]) if ks is None else np.asarray(ks, dtype=np.int64)
    if (grid < 1).any() or (grid > flips.shape[0]).any():
        raise RashomonError(
            f"growth k must lie in 1 … {flips.shape[0]} (the set's models), got {grid.tolist()}"
        )
    table = pd.DataFrame({"k": grid, "ambiguity": expected_ambiguity(flips, grid)})
    if draws > 0:
        table["ambiguity_p05"], table["ambiguity_p95"] = _growth_band(flips, grid, draws, seed)
    else:
        table["ambiguity_p05"] = table["ambiguity_p95"] = math.nan
    return table


def models_for_ambiguity(growth: pd.DataFrame, target: float) -> float:
    """The smallest k of a growth curve whose expected ambiguity reaches `target`: how many
    retrained models would show this much arbitrariness (0 for a target of 0, NaN when no k of
    the curve reaches it)."""
    if not np.isfinite(target):
        return math.nan
    if target <= 0:
        return 0.0
    reached = growth.loc[growth["ambiguity"] >= target - 1e-12, "k"]
    return float(reached.min()) if len(reached) else math.nan


def reach_phrase(k: float, truth_models: int, truth_ambiguity: float) -> str:
    """`models_for_ambiguity`'s figure in words, for the CLI summaries."""
    if not np.isfinite(k):
        return f"more than all {truth_models} retrained models show ({truth_ambiguity:.3f})"
    if k == 0:
        return "it flags nobody"
    return f"{int(k)} retrained model{'s show' if k > 1 else ' shows'} as much"


# --------------------------------------------------------------------------- the compare table


def desideratum_spread(per_model: pd.DataFrame | None) -> dict[str, float]:
    """Max − min over the set's models of every numeric desideratum column (MAP row excluded)."""
    if per_model is None or per_model.empty:
        return {}
    rows = per_model[per_model[S.MODEL] >= 0]
    numeric = rows.drop(columns=[c for c in NOT_DESIDERATA if c in rows]).select_dtypes("number")
    return {c: float(numeric[c].max() - numeric[c].min()) for c in numeric.columns}


def _desiderata(per_model: pd.DataFrame | None) -> pd.DataFrame:
    """The numeric desiderata of a set's models, one row each (MAP row and ids dropped)."""
    if per_model is None or per_model.empty:
        return pd.DataFrame()
    rows = per_model[per_model[S.MODEL] >= 0]
    return rows.drop(columns=[c for c in NOT_DESIDERATA if c in rows]).select_dtypes("number")


def matched_spread(
    per_model: pd.DataFrame | None,
    truth_per_model: pd.DataFrame | None,
    rounds: int = MATCHED_ROUNDS,
    seed: int = 0,
) -> dict[str, float]:
    """Spread (max − min) of each desideratum at matched size, as a ratio: the mean spread of h
    models drawn from the set (without replacement when it has h, else with) over the mean
    spread of a random half of h of the ground truth's T models (h = ⌊T/2⌋), over `rounds`
    seeded rounds. Like flags, a range grows with the number of models it spans, so a set of
    500 against 30 retrained networks looks wider than it is at full size."""
    cheap, truth = _desiderata(per_model), _desiderata(truth_per_model)
    h = len(truth) // 2
    if h < 2 or len(cheap) == 0:
        return {}
    rng = np.random.default_rng([seed, 1])
    halves = [a for a, _ in truth_halves(len(truth), rounds, seed)]
    draws = [rng.choice(len(cheap), h, replace=len(cheap) < h) for _ in range(rounds)]
    out = {}
    for metric in cheap.columns.intersection(truth.columns):
        a, b = cheap[metric].to_numpy(np.float64), truth[metric].to_numpy(np.float64)
        own = np.nanmean([np.ptp(a[d]) for d in draws])
        ref = np.nanmean([np.ptp(b[d]) for d in halves])
        out[metric] = float(own / ref) if ref > 0 else math.nan
    return out


@dataclass
class Comparison:
    """What `compare_with_truth` finds: the compare table (one row per set, then the ground
    truth's), the per-patient table and the ambiguity growth curves (long: one row per set and
    k)."""

    table: pd.DataFrame
    patients: pd.DataFrame
    growth: pd.DataFrame


MULTIPLICITY_COLUMNS = ("ambiguity", "discrepancy", "mean_disagreement", "mean_capacity")


def _truth_matched(ceiling: Mapping[str, float], models: int, rounds: int) -> dict[str, Any]:
    """The ground truth's own row of matched figures: at h models its halves against each
    other, which is the ceiling, so its ratios are 1 (NaN where the ceiling is undefined or 0)."""
    out: dict[str, Any] = {
        "matched_models": models // 2,
        "matched_rounds": rounds,
        "matched_with_replacement": False,
        **ceiling,
    }
    for name in ("flag_recall", "flag_precision"):
        for part in ("", "_sd"):
            out[f"{name}_matched{part}"] = ceiling[f"{name}_ceiling{part}"]
        out[f"{name}_ratio"] = _ratio(ceiling[f"{name}_ceiling"], ceiling[f"{name}_ceiling"])
    return out


def compare_with_truth(
    sets: Sequence[SetArrays],
    truth: SetArrays,
    threshold: float = 0.5,
    rounds: int = MATCHED_ROUNDS,
    draws: int = GROWTH_DRAWS,
    seed: int = 0,
) -> Comparison:
    """Every set against the ground truth on the same test patients: the size-matched flag
    agreement and its ceiling (`rounds` seeded rounds), flip-rate agreement, ambiguity growth
    (bands over `draws` draws), multiplicity, full-size flag agreement, spreads and cost.

    The ground truth's own row holds its split-half figures in the matched columns (its halves
    against each other are what the ceiling measures, so its ratios are 1)."""
    _check_same_patients([*sets, truth])
    truth_m = set_multiplicity(truth.probs, truth.map_probs, threshold)
    truth_flips = truth_m["flips"]
    t = truth_flips.shape[0]
    ceiling = flag_ceiling(truth_flips, rounds, seed)
    truth_growth = ambiguity_growth(truth_flips, growth_grid(t, points=t), draws, seed)
    truth_spread = desideratum_spread(truth.per_model_test)
    rows = []
    per_patient = {}
    curves = []
    for s, is_truth in [*((s, False) for s in sets), (truth, True)]:
        m = truth_m if is_truth else set_multiplicity(s.probs, s.map_probs, threshold)
        flips = m["flips"]
        if is_truth:
            matched = _truth_matched(ceiling, t, rounds)
            growth = truth_growth
        else:
            matched = size_matched_agreement(flips, truth_flips, rounds, seed, ceiling)
            grid = growth_grid(flips.shape[0], extra=(t // 2, t))
            growth = ambiguity_growth(flips, grid, draws, seed)
        precision, recall = flag_agreement(m["flags"], truth_m["flags"])
        row: dict[str, Any] = {
            "set": s.name,
            "source": s.source,
            "ground_truth": is_truth,
            "models": s.models,
            "models_in_set": flips.shape[0],
            **{
                k: matched[k]
                for k in ("matched_models", "flag_recall_ratio", "flag_precision_ratio")
            },
            **{
                f"{name}_{part}": matched[f"{name}_{part}"]
                for name in ("flag_recall", "flag_precision")
                for part in ("matched", "matched_sd", "ceiling", "ceiling_sd")
            },
            **flip_rate_agreement(flips, truth_flips),
            **{k: m[k] for k in MULTIPLICITY_COLUMNS},
            # the set's expected ambiguity at the ground truth's size (NaN when it is smaller)
            "ambiguity_matched": float(expected_ambiguity(flips, [t])[0]),
            "retrained_models_for_ambiguity": models_for_ambiguity(truth_growth, m["ambiguity"]),
            "arbitrary_share": m["arbitrary_share"],
            "spearman_disagreement": rank_agreement(m["disagreement"], truth_m["disagreement"]),
            "flag_precision_full": precision,
            "flag_recall_full": recall,
            "matched_rounds": matched["matched_rounds"],
            "matched_with_replacement": matched["matched_with_replacement"],
        }
        for key, value in s.cost.items():
            row[f"cost:{key}"] = value
        spread = desideratum_spread(s.per_model_test)
        for metric, value in spread.items():
            row[f"spread:{metric}"] = value
            ref = truth_spread.get(metric)
            row[f"spread_ratio:{metric}"] = value / ref if ref else math.nan
        matched_spreads = matched_spread(s.per_model_test, truth.per_model_test, rounds, seed)
        for metric, value in matched_spreads.items():
            value = 1.0 if is_truth and math.isfinite(value) else value  # its halves: the ceiling
            row[f"spread_matched_ratio:{metric}"] = value
        row["run_dir"] = s.run_dir
        rows.append(row)
        per_patient[f"disagreement:{s.name}"] = m["disagreement"]
        per_patient[f"{S.FLIP_RATE}:{s.name}"] = m["flip_rate"]
        per_patient[f"arbitrary:{s.name}"] = m["flags"]
        curves.append(growth.assign(set=s.name, ground_truth=is_truth))
    table = pd.DataFrame(rows)
    front = [c for c in table.columns if not c.startswith(("cost:", "spread")) and c != "run_dir"]
    back = sorted(c for c in table.columns if c.startswith("cost:"))
    back += sorted(c for c in table.columns if c.startswith("spread"))
    table = table[front + back + ["run_dir"]]
    patients = pd.DataFrame(per_patient)
    patients.insert(0, S.SAMPLE, np.arange(len(patients)))
    growth_table = pd.concat(curves, ignore_index=True)
    growth_table = growth_table[["set", "ground_truth", *GROWTH_COLUMNS]]
    return Comparison(table, patients, growth_table)


def compare_sets(
    sets: Sequence[SetArrays],
    truth: SetArrays,
    threshold: float = 0.5,
    rounds: int = MATCHED_ROUNDS,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The compare table (one row per set, then the ground-truth row) and the per-patient table
    (each set's disagreement, flip rate and flag per test sample) of `compare_with_truth`,
    without the growth curves' bands."""
    c = compare_with_truth(sets, truth, threshold, rounds=rounds, draws=0, seed=seed)
    return c.table, c.patients


def _check_same_patients(sets: Sequence[SetArrays]) -> None:
    n = {s.name: s.map_probs.shape[0] for s in sets}
    if len(set(n.values())) > 1:
        raise RashomonError(
            f"the sets hold different numbers of test samples ({n}); compare runs of one task"
        )
    for s in sets:
        if s.probs.ndim != 3 or s.probs.shape[1:] != s.map_probs.shape:
            raise RashomonError(
                f"set {s.name!r}: probabilities {s.probs.shape} do not match its MAP model's "
                f"{s.map_probs.shape}; re-run its sample stage"
            )
