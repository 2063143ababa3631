"""Predictive multiplicity over a Rashomon set, against the MAP model.

Inputs follow the package contract: `probs` [M, N, C] (binary tasks C = 2), `preds` [M, N]
integer labels, `ref` [N] the MAP model's labels. NumPy arrays or torch tensors in, NumPy out.

Definitions (M models, N samples):
- ambiguity (Marx et al. 2020): share of samples on which at least one model's label differs
  from `ref`.
- discrepancy (Marx et al. 2020): the largest share of samples on which one single model differs
  from `ref`. Always <= ambiguity.
- disagreement (Kulynych et al. 2023): per sample, binary 4·p̂·(1−p̂) with p̂ the share of models
  predicting 1. Multiclass extension: normalised Gini impurity C/(C−1)·(1 − Σ_c p̂_c²), which is
  exactly 4·p̂·(1−p̂) for C = 2, 0 when all models agree and 1 when votes are uniform over C.
- viable prediction range (Watson-Daniels et al. 2023): per sample and class, min and max
  probability over the set, [N, C, 2].
- Rashomon capacity (Hsu & Calmon 2022): per sample, the capacity of the channel model → class
  whose rows are the models' probability vectors, reported as 2^capacity in [1, C]; computed in
  `rashomon.metrics.capacity` (certified to within 1e-9 below the exact value, re-exported here).
- self-consistency (Cooper et al. 2024): per sample, the probability that two distinct models
  drawn without replacement predict the same label: Σ_c n_c(n_c − 1) / (M(M − 1)).
- churn (Milani Fard et al. 2016): share of samples whose label differs between two models; for
  two sets, the expected churn between a random model of each: mean_n (1 − Σ_c f_a,c · f_b,c),
  with f the share of a set's models predicting c. Two single models reduce to mean(a != b).
- decision flips: with binary decisions p(positive) >= threshold, the share of samples whose
  decision differs from the MAP model's for at least one model (and per model, the largest and
  mean share). `threshold_for_sensitivity` gives the threshold that fixes sensitivity on
  validation data.

Pipeline entry point:
    per_sample, summary = multiplicity_summary(probs, ref_probs, groups={"sex": codes},
                                               attributes_derived={"sex": False},
                                               threshold=0.5, kind="binary")
`per_sample` has one row per sample (column names from `rashomon.schema`): sample, map_label
(the reference model's label), flip_rate, ambiguous, disagreement, self_consistency, capacity,
map_prob (binary: the reference model's positive probability), vpr_low / vpr_high / vpr_width
(binary: positive class; multiclass: one `_k` triple per class), then one column of group codes
per attribute; `summary` is a JSON-ready dict of the
set-level numbers, `summary["groups"][attribute]` a list of per-group rows (each marked `derived`
for proxy attributes) and, for multilabel tasks, `summary["labels"][l]` one summary per label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics import validation as v

# Capacity lives in rashomon.metrics.capacity; re-exported because callers import it from here.
from rashomon.metrics.capacity import CAPACITY_MAX_ITER as CAPACITY_MAX_ITER
from rashomon.metrics.capacity import CAPACITY_TOL as CAPACITY_TOL
from rashomon.metrics.capacity import _capacity
from rashomon.metrics.capacity import blahut_arimoto as blahut_arimoto
from rashomon.metrics.capacity import capacity_bounds as capacity_bounds
from rashomon.metrics.capacity import channel_capacity as channel_capacity
from rashomon.metrics.capacity import rashomon_capacity as rashomon_capacity

# --------------------------------------------------------------------------- labels


def predict_labels(probs: Any, threshold: float | None = 0.5) -> np.ndarray:
    """[M, N] labels from [M, N, C] probabilities: binary (C = 2) decides positive when
    p[..., 1] >= threshold; multiclass (or threshold None) takes the argmax."""
    p = v.check_probs(probs)
    return _labels(p, threshold)


def _labels(p: np.ndarray, threshold: float | None) -> np.ndarray:
    if p.shape[-1] == 2 and threshold is not None:
        return (p[..., 1] >= v.check_threshold(threshold)).astype(np.int64)
    return p.argmax(axis=-1).astype(np.int64)


# --------------------------------------------------------------------------- label-based


def ambiguity(preds: Any, ref: Any) -> float:
    """Share of samples where at least one model's label differs from `ref`."""
    p = v.check_preds(preds)
    r = v.check_ref(ref, p.shape[1])
    return float(_mismatch(p, r).any(axis=0).mean())


def discrepancy(preds: Any, ref: Any) -> float:
    """Largest share of samples on which a single model's label differs from `ref`."""
    p = v.check_preds(preds)
    r = v.check_ref(ref, p.shape[1])
    return float(_mismatch(p, r).mean(axis=1).max())


def flip_rate(preds: Any, ref: Any) -> np.ndarray:
    """[N] share of models whose label differs from `ref` on each sample."""
    p = v.check_preds(preds)
    r = v.check_ref(ref, p.shape[1])
    return _mismatch(p, r).mean(axis=0)


def _mismatch(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return p != r[None, :]


def _vote_shares(p: np.ndarray, num_classes: int) -> np.ndarray:
    """[N, C] share of models voting each class."""
    m, n = p.shape
    counts = np.zeros((n, num_classes))
    cols = np.broadcast_to(np.arange(n), (m, n))
    np.add.at(counts, (cols.ravel(), p.ravel()), 1.0)
    return counts / m


def _num_classes(p: np.ndarray, num_classes: int | None) -> int:
    inferred = max(int(p.max()) + 1, 2)
    if num_classes is None:
        return inferred
    if num_classes < inferred:
        raise RashomonError(
            v.LABELS_RANGE.format(name="preds", classes=num_classes, lo=0, hi=inferred - 1)
        )
    return int(num_classes)


def disagreement(preds: Any, num_classes: int | None = None) -> np.ndarray:
    """[N] disagreement: binary 4·p̂·(1−p̂); multiclass C/(C−1)·(1 − Σ_c p̂_c²) (equal for C=2).
    `num_classes` defaults to max(label) + 1 (at least 2); pass it for multiclass tasks."""
    p = v.check_preds(preds)
    c = _num_classes(p, num_classes)
    shares = _vote_shares(p, c)
    return _gini(shares)


def _gini(shares: np.ndarray) -> np.ndarray:
    c = shares.shape[1]
    return np.clip(c / (c - 1) * (1.0 - (shares**2).sum(axis=1)), 0.0, 1.0)


def self_consistency(preds: Any, num_classes: int | None = None) -> np.ndarray:
    """[N] probability that two distinct models agree on a sample (Cooper et al. 2024)."""
    p = v.check_preds(preds)
    m = p.shape[0]
    v.require_models(m, 2, "self_consistency")
    counts = _vote_shares(p, _num_classes(p, num_classes)) * m
    return (counts * (counts - 1)).sum(axis=1) / (m * (m - 1))


def churn(preds_a: Any, preds_b: Any) -> float:
    """Share of samples whose label differs between two models ([N] each), or the expected
    churn between a random model of set `a` and one of set `b` ([M_a, N] and [M_b, N])."""
    a = v.as_numpy(preds_a)
    b = v.as_numpy(preds_b)
    a = v.check_preds(a[None] if a.ndim == 1 else a, "preds_a")
    b = v.check_preds(b[None] if b.ndim == 1 else b, "preds_b")
    v.require_same_samples(a.shape[1], b.shape[1], "churn")
    c = max(int(a.max()), int(b.max())) + 1
    fa = _vote_shares(a, c)
    fb = _vote_shares(b, c)
    return float((1.0 - (fa * fb).sum(axis=1)).mean())


# --------------------------------------------------------------------------- probability-based


def viable_prediction_range(probs: Any) -> np.ndarray:
    """[N, C, 2]: per sample and class, the lowest and highest probability over the set."""
    p = v.check_probs(probs)
    return np.stack([p.min(axis=0), p.max(axis=0)], axis=-1)


# --------------------------------------------------------------------------- thresholds


def threshold_for_sensitivity(p_val_pos: Any, y_val: Any, target: float) -> float | np.ndarray:
    """Highest threshold t such that deciding positive when p >= t reaches sensitivity >= target
    on validation data. `p_val_pos` is [N] (one model, returns a float) or [M, N] (returns [M])."""
    scores = v.as_numpy(p_val_pos).astype(np.float64)
    single = scores.ndim == 1
    scores = scores[None] if single else scores
    if scores.ndim != 2:
        raise RashomonError(v.PREDS_NDIM.format(shape=tuple(scores.shape)))
    if not np.isfinite(scores).all():
        raise RashomonError(v.NOT_FINITE.format(name="p_val_pos"))
    y = v.check_labels(y_val, scores.shape[1], 2, "y_val")
    if not 0.0 < float(target) <= 1.0:
        raise RashomonError(v.TARGET_RANGE.format(t=target))
    pos = scores[:, y == 1]
    if pos.shape[1] == 0:
        raise RashomonError(v.NO_POSITIVES.format(what="threshold_for_sensitivity"))
    # The k-th highest positive score keeps >= k positives at or above the threshold.
    k = int(np.ceil(float(target) * pos.shape[1] - 1e-9))
    t = -np.sort(-pos, axis=1)[:, k - 1]
    return float(t[0]) if single else t


def decision_flips(probs: Any, ref_probs: Any, threshold: float = 0.5) -> dict[str, float]:
    """Binary decisions p(positive) >= threshold against the MAP model's: `flip_share` (samples
    where at least one model flips), `max_model_flip` and `mean_model_flip` (per model share)."""
    p = v.check_probs(probs)
    ref = v.check_ref_probs(ref_probs, p.shape[1])
    t = v.check_threshold(threshold)
    return _flip_stats(_binary_decisions(p, t), _binary_decisions(ref[None], t)[0])


def _binary_decisions(p: np.ndarray, t: float) -> np.ndarray:
    if p.shape[-1] != 2:
        raise RashomonError(v.PROBS_FEW_CLASSES.format(classes=p.shape[-1]))
    return (p[..., 1] >= t).astype(np.int64)


def _flip_stats(d: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    flips = d != ref[None, :]
    per_model = flips.mean(axis=1)
    return {
        "flip_share": float(flips.any(axis=0).mean()),
        "max_model_flip": float(per_model.max()),
        "mean_model_flip": float(per_model.mean()),
    }


# --------------------------------------------------------------------------- groups


def multiplicity_by_group(
    preds: Any,
    ref: Any,
    groups: Any,
    probs: Any | None = None,
    attribute_label: str = "group",
    derived: bool = False,
    level_names: Sequence[str] | None = None,
    capacity: np.ndarray | None = None,
    num_classes: int | None = None,
) -> pd.DataFrame:
    """One row per group: n, ambiguity, discrepancy, mean disagreement, mean self-consistency,
    mean flip rate and (with `probs` or a precomputed [N] `capacity`) mean Rashomon capacity.
    Columns `attribute` and `derived` mark the attribute (derived ones are proxies)."""
    p = v.check_preds(preds)
    r = v.check_ref(ref, p.shape[1])
    g = v.check_groups(groups, p.shape[1], attribute_label)
    c = _num_classes(p, num_classes)
    shares = _vote_shares(p, c)
    dis = _gini(shares)
    m = p.shape[0]
    counts = shares * m
    sc = (counts * (counts - 1)).sum(axis=1) / (m * (m - 1)) if m > 1 else np.ones(p.shape[1])
    if capacity is None and probs is not None:
        capacity = rashomon_capacity(probs)
    mismatch = _mismatch(p, r)
    rows = []
    for code in np.unique(g):
        mask = g == code
        row: dict[str, Any] = {
            "attribute": attribute_label,
            "derived": bool(derived),
            "group": _level_name(int(code), level_names),
            "n": int(mask.sum()),
            "ambiguity": float(mismatch[:, mask].any(axis=0).mean()),
            "discrepancy": float(mismatch[:, mask].mean(axis=1).max()),
            "mean_disagreement": float(dis[mask].mean()),
            "mean_self_consistency": float(sc[mask].mean()),
            "mean_flip_rate": float(mismatch[:, mask].mean()),
        }
        if capacity is not None:
            row["mean_capacity"] = float(np.asarray(capacity)[mask].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _level_name(code: int, level_names: Sequence[str] | None) -> str:
    if level_names is not None and 0 <= code < len(level_names):
        return str(level_names[code])
    return str(code)


# --------------------------------------------------------------------------- convergence


def convergence_sizes(m: int) -> list[int]:
    """10, 30, 100, 300, 1000, ... below M, then M itself."""
    sizes: list[int] = []
    base = 10
    while base < m:
        sizes.extend(s for s in (base, 3 * base) if s < m)
        base *= 10
    return sorted(set(sizes)) + [m]


def convergence_curve(
    probs: Any,
    ref: Any,
    sizes: Sequence[int] | None = None,
    seed: int = 0,
    threshold: float | None = 0.5,
) -> pd.DataFrame:
    """Ambiguity, discrepancy and mean Rashomon capacity on nested random subsets of the set
    (one seeded permutation; the first k models for each k in `sizes`, default 10, 30, 100,
    300, 1000, ... and M). Columns: models, ambiguity, discrepancy, mean_capacity."""
    p = v.check_probs(probs)
    m, n, _ = p.shape
    r = v.check_ref(ref, n)
    order = np.random.default_rng(seed).permutation(m)
    labels = _labels(p, threshold)
    mismatch = _mismatch(labels, r)[order]
    p = p[order]
    ks = sorted({int(k) for k in (sizes or convergence_sizes(m)) if 1 <= int(k) <= m})
    rows = []
    for k in ks:
        sub = mismatch[:k]
        rows.append(
            {
                "models": k,
                "ambiguity": float(sub.any(axis=0).mean()),
                "discrepancy": float(sub.mean(axis=1).max()),
                "mean_capacity": float(_capacity(p[:k], CAPACITY_TOL, CAPACITY_MAX_ITER).mean()),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- pipeline summary


def multiplicity_summary(
    probs: Any,
    ref_probs: Any,
    groups: Mapping[str, Any] | None = None,
    attributes_derived: Mapping[str, bool] | None = None,
    threshold: float = 0.5,
    extra_thresholds: Mapping[str, float] | None = None,
    kind: str = "binary",
    level_names: Mapping[str, Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Everything multiplicity for one set on one split.

    probs [M, N, C] (multilabel: [M, N, L] sigmoid probabilities), ref_probs [N, C] (or [N, L])
    of the MAP model, groups attribute → [N] codes. Binary labels are decisions at `threshold`;
    `extra_thresholds` (e.g. {"sens95": t} from `threshold_for_sensitivity`) add decision-flip
    shares at other thresholds. Multilabel tasks are audited per label as binary tasks: the
    per-sample columns get a `label{l}.` prefix and `summary["labels"]` holds one summary per
    label (top-level numbers are their means).
    """
    kind = v.check_kind(kind)
    multilabel = kind == "multilabel"
    p = v.check_probs(probs, multilabel=multilabel)
    ref = v.check_ref_probs(ref_probs, p.shape[1], multilabel=multilabel)
    groups_np = {a: v.check_groups(g, p.shape[1], a) for a, g in (groups or {}).items()}
    derived = dict(attributes_derived or {})
    names = dict(level_names or {})
    if not multilabel:
        return _summary_one(p, ref, groups_np, derived, threshold, extra_thresholds, names)
    frames, per_label = [], []
    for label in range(p.shape[2]):
        pl = np.stack([1.0 - p[..., label], p[..., label]], axis=-1)
        rl = np.stack([1.0 - ref[:, label], ref[:, label]], axis=-1)
        frame, summ = _summary_one(pl, rl, groups_np, derived, threshold, extra_thresholds, names)
        frame = frame.drop(columns=[S.SAMPLE, *groups_np])
        frames.append(frame.rename(columns=lambda c, lab=label: S.label_column(lab, c)))
        per_label.append(summ)
    per_sample = pd.concat(frames, axis=1)
    per_sample.insert(0, S.SAMPLE, np.arange(p.shape[1]))
    for a, g in groups_np.items():
        per_sample[a] = g
    scalars = {k: val for k, val in per_label[0].items() if isinstance(val, float)}
    summary: dict[str, Any] = {k: float(np.mean([s[k] for s in per_label])) for k in scalars}
    summary["models_in_set"] = int(p.shape[0])
    summary["n_samples"] = int(p.shape[1])
    summary["labels"] = per_label
    return per_sample, summary


def _summary_one(
    p: np.ndarray,
    ref: np.ndarray,
    groups: dict[str, np.ndarray],
    derived: dict[str, bool],
    threshold: float,
    extra_thresholds: Mapping[str, float] | None,
    level_names: dict[str, Sequence[str]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    m, n, c = p.shape
    t = v.check_threshold(threshold)
    labels = _labels(p, t)
    ref_labels = _labels(ref[None], t)[0]
    mismatch = _mismatch(labels, ref_labels)
    shares = _vote_shares(labels, c)
    counts = shares * m
    capacity = _capacity(p, CAPACITY_TOL, CAPACITY_MAX_ITER)
    sc = (counts * (counts - 1)).sum(axis=1) / (m * (m - 1)) if m > 1 else np.ones(n)
    focus = 1 if c == 2 else None  # binary: report the positive class's range
    columns: dict[str, Any] = {
        S.SAMPLE: np.arange(n),
        S.MAP_LABEL: ref_labels,
        S.FLIP_RATE: mismatch.mean(axis=0),
        S.AMBIGUOUS: mismatch.any(axis=0),
        S.DISAGREEMENT: _gini(shares),
        S.SELF_CONSISTENCY: sc,
        S.CAPACITY: capacity,
    }
    if focus is not None:
        columns[S.MAP_PROB] = ref[:, focus]
    classes = [focus] if focus is not None else list(range(c))
    for k in classes:
        lo, hi = p[..., k].min(axis=0), p[..., k].max(axis=0)
        for name, values in ((S.VPR_LOW, lo), (S.VPR_HIGH, hi), (S.VPR_WIDTH, hi - lo)):
            columns[name if focus is not None else S.class_column(name, k)] = values
    per_sample = pd.DataFrame(columns)
    for a, g in groups.items():
        per_sample[a] = g
    width_cols = [col for col in per_sample.columns if col.startswith(S.VPR_WIDTH)]
    summary: dict[str, Any] = {
        "models_in_set": int(m),
        "n_samples": int(n),
        "threshold": t,
        "ambiguity": float(mismatch.any(axis=0).mean()),
        "discrepancy": float(mismatch.mean(axis=1).max()),
        "mean_disagreement": float(columns[S.DISAGREEMENT].mean()),
        "mean_capacity": float(capacity.mean()),
        "share_capacity_above_1.01": float((capacity > 1.01).mean()),
        "mean_self_consistency": float(sc.mean()),
        "mean_vpr_width": float(per_sample[width_cols].to_numpy().mean()),
    }
    if c == 2:
        ref_d = _binary_decisions(ref[None], t)[0]
        for key, val in _flip_stats(_binary_decisions(p, t), ref_d).items():
            summary[key] = val
        for name, extra in (extra_thresholds or {}).items():
            te = v.check_threshold(extra)
            stats = _flip_stats(_binary_decisions(p, te), _binary_decisions(ref[None], te)[0])
            for key, val in stats.items():
                summary[f"{key}@{name}"] = val
            summary[f"threshold@{name}"] = te
    summary["groups"] = {
        a: multiplicity_by_group(
            labels,
            ref_labels,
            g,
            attribute_label=a,
            derived=derived.get(a, False),
            level_names=level_names.get(a),
            capacity=capacity,
            num_classes=c,
        ).to_dict(orient="records")
        for a, g in groups.items()
    }
    return per_sample, summary
