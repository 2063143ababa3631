"""Fairness gaps within acquisition strata: is a sex gap a sex gap, or a view gap?

An *acquisition* attribute says how an image was taken (the chest X-ray's view, AP or PA; the
scanner, the site, the device; the derived `intensity` tertile, an acquisition proxy). When one
is tied both to a patient attribute and to the model's errors, the patient attribute's gap can
be the acquisition's: if men are mostly filmed AP and the model misses more on AP films, men get
a lower TPR although, film for film, the model treats both sexes alike. The gap within each
stratum of the acquisition attribute (the sex TPR gap among AP films, and among PA films) takes
the acquisition out; their pooled value says what is left of the marginal gap.

Which attributes are acquisition: the ones a config lists (`evaluate.acquisition`), else by
name (:func:`is_acquisition`): the name's words (split at `_`, `-`, spaces, digits and
camelCase, lower-cased) hold one of ACQUISITION_WORDS, so `view`, `ViewPosition`,
`scanner_model`, `acquisition-site` and `intensity` are, `sex`, `age_group` and `reviewer` are
not. Gaps are computed for every other attribute (the real ones, and the derived `random`, the
null control: its within-stratum gaps are what noise alone gives).

Per target attribute A, acquisition attribute S and model (decisions at `threshold` as in
`rashomon.metrics.fairness`; gaps max − min over A's groups with a defined rate):
- the marginal gap (stratum "all": the ordinary gap of `rashomon.metrics.fairness`);
- the gap within each level s of S (patients with S = s only);
- the pooled within-stratum gap (stratum "pooled"): the mean of the within-stratum gaps weighted
  by the patients each rate counts in the stratum (positives for the TPR gap, negatives for the
  FPR gap, every patient for the demographic-parity and accuracy gaps), over the strata where the
  gap is defined. A marginal gap far above its pooled value is a gap the acquisition explains.
Binary tasks: tpr_gap, fpr_gap, demographic_parity_diff, accuracy_gap; multiclass: accuracy_gap.

Input checks are in the first section, apart from the arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics import validation as v
from rashomon.metrics.performance import decisions

ACQUISITION_WORDS = ("view", "viewposition", "scanner", "site", "device", "intensity")
MARGINAL, POOLED = "all", "pooled"
BINARY_GAPS = ("tpr_gap", "fpr_gap", "demographic_parity_diff", "accuracy_gap")
MULTICLASS_GAPS = ("accuracy_gap",)
# The label whose patients a gap's rates count (None: every patient).
RATE_LABEL = {"tpr_gap": 1, "fpr_gap": 0, "demographic_parity_diff": None, "accuracy_gap": None}

# --------------------------------------------------------------------------- checks


def _words(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(name))
    return [w.lower() for w in re.split(r"[^A-Za-z]+", spaced) if w]


def is_acquisition(name: str) -> bool:
    """Whether an attribute's name marks it as an acquisition attribute (module docstring)."""
    return any(w in ACQUISITION_WORDS for w in _words(name))


def acquisition_attributes(
    attributes: Sequence[str], declared: Sequence[str] | None = None
) -> list[str]:
    """The acquisition attributes among `attributes`: `declared` (checked against them) when
    given, else those :func:`is_acquisition` names."""
    if declared is None:
        return [a for a in attributes if is_acquisition(a)]
    unknown = [a for a in declared if a not in attributes]
    if unknown:
        raise RashomonError(
            f"evaluate.acquisition names {unknown}, which are not audited attributes of this "
            f"task ({', '.join(attributes)}); list some of those, or [] for none"
        )
    return list(declared)


def _checked(probs: Any, y: Any, groups: Any, strata: Any) -> tuple[np.ndarray, ...]:
    p = v.check_probs(probs)
    n = p.shape[1]
    yy = v.check_labels(y, n, p.shape[2])
    g = v.check_groups(groups, n, "groups")
    s = v.check_groups(strata, n, "strata")
    return p, yy, g, s


# --------------------------------------------------------------------------- arithmetic


def _group_rates(d: np.ndarray, y: np.ndarray, g: np.ndarray, codes: np.ndarray, metric: str):
    """([M, G] per-group rates, [G] patients each rate counts); NaN where a group has none."""
    label = RATE_LABEL[metric]
    rates = np.full((d.shape[0], len(codes)), np.nan)
    counts = np.zeros(len(codes), np.int64)
    for j, code in enumerate(codes):
        member = g == code
        if label is not None:
            member &= y == label
        counts[j] = int(member.sum())
        if not counts[j]:
            continue
        dm = d[:, member]
        if metric == "accuracy_gap":
            rates[:, j] = (dm == y[member][None, :]).mean(axis=1)
        else:  # tpr, fpr and selection rate: the share decided positive
            rates[:, j] = (dm == 1).mean(axis=1)
    return rates, counts


def _gap(rates: np.ndarray) -> np.ndarray:
    """max − min over the groups with a defined rate; NaN with fewer than two."""
    finite = np.isfinite(rates)
    hi = np.where(finite, rates, -np.inf).max(axis=1)
    lo = np.where(finite, rates, np.inf).min(axis=1)
    return np.where(finite.sum(axis=1) >= 2, hi - lo, np.nan)


def within_stratum_gaps(
    probs: Any,
    y: Any,
    groups: Any,
    strata: Any,
    threshold: float = 0.5,
    stratum_levels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per model, the gaps of the attribute `groups` marginally, within each stratum of
    `strata` and pooled (module docstring), long: model, stratum, metric, patients,
    rate_patients (the patients the rates count), smallest_group (fewest such patients in one
    group of `groups` within the stratum), value."""
    p, yy, g, s = _checked(probs, y, groups, strata)
    t = v.check_threshold(threshold)
    d = decisions(p, t)
    m = p.shape[0]
    codes = np.unique(g)
    metrics = BINARY_GAPS if p.shape[2] == 2 else MULTICLASS_GAPS
    names = list(stratum_levels or [])
    rows = []

    def add(stratum: str, metric: str, patients: int, counts: np.ndarray, gap: np.ndarray):
        rows.append(
            pd.DataFrame(
                {
                    S.MODEL: np.arange(m),
                    S.STRATUM: stratum,
                    S.METRIC: metric,
                    S.PATIENTS: patients,
                    S.RATE_PATIENTS: int(counts.sum()),
                    S.SMALLEST_GROUP: int(counts.min()),
                    S.VALUE: gap,
                }
            )
        )

    for metric in metrics:
        rates, counts = _group_rates(d, yy, g, codes, metric)
        add(MARGINAL, metric, len(yy), counts, _gap(rates))
        total = np.zeros(m)
        weight = 0
        pooled_counts = np.zeros(len(codes), np.int64)
        for level in np.unique(s):
            inside = s == level
            rates, counts = _group_rates(d[:, inside], yy[inside], g[inside], codes, metric)
            gap = _gap(rates)
            name = names[level] if 0 <= level < len(names) else str(level)
            add(str(name), metric, int(inside.sum()), counts, gap)
            if np.isfinite(gap).all():  # defined for every model or none: it needs y and g only
                total += counts.sum() * gap
                weight += int(counts.sum())
                pooled_counts += counts
        pooled = total / weight if weight else np.full(m, np.nan)
        add(POOLED, metric, len(yy), pooled_counts, pooled)
    return pd.concat(rows, ignore_index=True)


def within_stratum_table(
    probs: Any,
    map_probs: Any,
    y: Any,
    groups: Mapping[str, Any],
    attributes_derived: Mapping[str, bool],
    level_names: Mapping[str, Sequence[str]] | None = None,
    acquisition: Sequence[str] | None = None,
    threshold: float = 0.5,
    kind: str = "binary",
) -> pd.DataFrame:
    """evaluate/within_stratum.csv: for every non-acquisition attribute A (real, or the derived
    null control `random`) and every acquisition attribute S (`acquisition`, default by name:
    :func:`acquisition_attributes`), A's gaps marginally ("all"), within each level of S and
    pooled, for the MAP model (`map_probs` [N, C]) and across the set (`probs` [M, N, C]: mean
    and 5/50/95 % quantiles). Empty (the columns only) for multilabel tasks, or when the task
    has no acquisition attribute or nothing else."""
    names = list(groups)
    strata = acquisition_attributes(names, acquisition)
    targets = [a for a in names if a not in strata]
    if v.check_kind(kind) == "multilabel" or not strata or not targets:
        return pd.DataFrame(columns=list(S.TABLES["within_stratum"].columns))
    levels = dict(level_names or {})
    p = v.check_probs(probs)
    mp = v.check_ref_probs(map_probs, p.shape[1])
    both = np.concatenate([mp[None], p], axis=0)  # row 0 the MAP model
    frames = []
    for a in targets:
        for s in strata:
            long = within_stratum_gaps(both, y, groups[a], groups[s], threshold, levels.get(s))
            keys = [S.STRATUM, S.METRIC, S.PATIENTS, S.RATE_PATIENTS, S.SMALLEST_GROUP]
            first = long[long[S.MODEL] == 0].set_index(keys)[S.VALUE].rename(S.MAP_GAP)
            rest = long[long[S.MODEL] > 0].groupby(keys, sort=False)[S.VALUE]
            summary = pd.concat(
                [
                    first,
                    rest.mean().rename(S.SET_GAP_MEAN),
                    rest.quantile(0.05).rename(S.SET_GAP_Q05),
                    rest.quantile(0.5).rename(S.SET_GAP_Q50),
                    rest.quantile(0.95).rename(S.SET_GAP_Q95),
                ],
                axis=1,
            ).reset_index()
            summary.insert(0, S.ATTRIBUTE, a)
            summary.insert(1, S.DERIVED, bool(attributes_derived.get(a, False)))
            summary.insert(2, S.STRATUM_ATTRIBUTE, s)
            frames.append(summary[list(S.TABLES["within_stratum"].columns)])
    return pd.concat(frames, ignore_index=True)
