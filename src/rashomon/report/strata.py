"""Is a patient attribute's gap an acquisition gap? The trained model's gaps within acquisition
strata (evaluate/within_stratum.csv, `rashomon.metrics.acquisition`), read into one verdict and
one sentence per gap line of the fairness section.

The rule that decides "the acquisition attribute S explains A's gap" (`explains`), on the MAP
model's test gaps: the pooled within-stratum gap (the gap within each level of S, averaged,
weighted by the patients each rate counts) is

1. below half the marginal gap (EXPLAINED_SHARE): most of the gap goes when patients are
   compared within one level of S only, and
2. no larger than the random null control's pooled gap within the same strata: what is left is
   what a random split of the patients shows at these stratum sizes.

Both: "it is an S gap". Only the first: S explains part of it, and a gap beyond noise is left.
Neither: S does not explain it. A run without the random control judges by the first condition
alone, and says so. A pooled gap that is undefined (no stratum holds both groups' rates) is
said to be undefined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from rashomon import schema as S
from rashomon.metrics.acquisition import MARGINAL, POOLED
from rashomon.report.words import ACQUISITION, NULL_ATTRIBUTE, PROXY, attribute_kind

EXPLAINED_SHARE = 0.5  # a pooled gap below this share of the marginal one is explained
SMALL_GROUP = 10  # a stratum whose smaller group has fewer rate patients gets its count said

# selection.csv's gap desiderata -> within_stratum.csv's metric of the same gap
DESIDERATUM_METRIC = {"tpr_gap": "tpr_gap", "dp_gap": "demographic_parity_diff"}
METRIC_WORDS = {
    "tpr_gap": "TPR gap",
    "fpr_gap": "FPR gap",
    "demographic_parity_diff": "demographic-parity gap",
    "accuracy_gap": "accuracy gap",
}
RATE_UNITS = {"tpr_gap": "positives", "fpr_gap": "negatives"}  # else patients

EXPLAINED, PARTLY, NOT_EXPLAINED, UNDEFINED = "explained", "partly", "not explained", "undefined"


@dataclass(frozen=True)
class StratumLevel:
    """One gap of one attribute among the patients of one stratum level."""

    level: str
    gap: float  # the MAP model's gap among this level's patients (NaN: undefined)
    rate_patients: int  # the patients its rates count
    smallest_group: int  # of them, the fewest in one group of the attribute


@dataclass(frozen=True)
class StratumGaps:
    """One gap of one attribute within one acquisition attribute's strata, the MAP model's."""

    attribute: str
    stratum_attribute: str
    metric: str
    marginal: float
    levels: tuple[StratumLevel, ...]
    pooled: float
    noise_marginal: float | None  # the random control's gap, over all patients
    noise_pooled: float | None  # the random control's pooled gap within the same strata

    @property
    def verdict(self) -> str:
        """Whether the strata explain the gap (EXPLAINED, PARTLY, NOT_EXPLAINED or UNDEFINED)."""
        return explains(self.marginal, self.pooled, self.noise_pooled)


def explains(marginal: float, pooled: float, noise_pooled: float | None) -> str:
    """EXPLAINED, PARTLY, NOT_EXPLAINED or UNDEFINED: the module docstring's rule."""
    if not (math.isfinite(marginal) and math.isfinite(pooled)):
        return UNDEFINED
    if not pooled < EXPLAINED_SHARE * marginal:
        return NOT_EXPLAINED
    if noise_pooled is None or not math.isfinite(noise_pooled) or pooled <= noise_pooled:
        return EXPLAINED
    return PARTLY


def _map_gaps(rows: pd.DataFrame) -> dict[str, pd.Series]:
    return {str(r[S.STRATUM]): r for _, r in rows.iterrows()}


def stratum_gaps(
    table: pd.DataFrame, attribute: str, stratum_attribute: str, metric: str
) -> StratumGaps | None:
    """The MAP model's `metric` of `attribute` within the levels of `stratum_attribute`, with
    the random control's beside it; None when within_stratum.csv has no such rows."""

    def rows(a: str) -> dict[str, pd.Series]:
        m = (
            (table[S.ATTRIBUTE].astype(str) == a)
            & (table[S.STRATUM_ATTRIBUTE].astype(str) == stratum_attribute)
            & (table[S.METRIC].astype(str) == metric)
        )
        return _map_gaps(table[m])

    mine = rows(attribute)
    if MARGINAL not in mine or POOLED not in mine:
        return None
    noise = rows(NULL_ATTRIBUTE) if attribute != NULL_ATTRIBUTE else {}
    levels = tuple(
        StratumLevel(
            name,
            float(r[S.MAP_GAP]),
            int(r[S.RATE_PATIENTS]),
            int(r[S.SMALLEST_GROUP]),
        )
        for name, r in mine.items()
        if name not in (MARGINAL, POOLED)
    )

    def gap(found: dict[str, pd.Series], stratum: str) -> float | None:
        return float(found[stratum][S.MAP_GAP]) if stratum in found else None

    return StratumGaps(
        attribute,
        stratum_attribute,
        metric,
        float(mine[MARGINAL][S.MAP_GAP]),
        levels,
        float(mine[POOLED][S.MAP_GAP]),
        gap(noise, MARGINAL),
        gap(noise, POOLED),
    )


def strata_to_read(table: pd.DataFrame, attributes: dict[str, dict]) -> list[str]:
    """The acquisition attributes a gap line is read within: the real ones that
    within_stratum.csv stratifies by; only when it has none, the derived proxies (intensity)."""
    present = list(dict.fromkeys(table[S.STRATUM_ATTRIBUTE].astype(str)))
    kinds = {a: attribute_kind(a, attributes.get(a, {})) for a in present}
    real = [a for a in present if kinds[a] == ACQUISITION]
    return real or [a for a in present if kinds[a] == PROXY]


def _num(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "undefined"


def _level_text(level: StratumLevel, unit: str, first: bool, stratum_attribute: str) -> str:
    count = f"{level.rate_patients} {unit}" if first else f"{level.rate_patients}"
    if level.smallest_group < SMALL_GROUP:
        count += f", {level.smallest_group} in the smallest group"
    return f"{_num(level.gap)} for {stratum_attribute} {level.level} ({count})"


def stratum_sentence(g: StratumGaps, stratum_label: str | None = None) -> str:
    """'Within view: the sex TPR gap of 0.19 over all test patients is 0.21 for view AP (58
    positives), 0.25 for view PA (16, 8 in the smallest group), pooled 0.22: view does not
    explain it. …' — the trained model's gap within the strata, the verdict of `explains`, and
    the random control's gaps as the noise floor. `stratum_label`: how the stratum attribute
    is named in the heading (default its name)."""
    s, what = g.stratum_attribute, METRIC_WORDS.get(g.metric, g.metric)
    unit = RATE_UNITS.get(g.metric, "patients")
    levels = ", ".join(_level_text(level, unit, i == 0, s) for i, level in enumerate(g.levels))
    head = (
        f"Within {stratum_label or s}: the trained model's {g.attribute} {what} of "
        f"{_num(g.marginal)} over all test patients is {levels}, pooled {_num(g.pooled)}"
    )
    verdict = g.verdict
    if verdict == UNDEFINED:
        text = f"{head}: whether {s} explains it is undefined (no pooled gap)."
    elif verdict == EXPLAINED:
        text = f"{head}: within {s} the gap is {_num(g.pooled)}, so it is a {s} gap."
    elif verdict == PARTLY:
        text = (
            f"{head}: {s} explains part of it (the pooled gap is under half the marginal one), "
            f"but more is left than the random split's {_num(g.noise_pooled or math.nan)} "
            f"within {s}."
        )
    else:
        text = f"{head}: {s} does not explain it."
    if g.noise_marginal is None or g.noise_pooled is None:
        if g.attribute != NULL_ATTRIBUTE:
            text += " (No random control on this run to judge it against.)"
        return text
    text += (
        f" Noise floor: the random split's {what} is {_num(g.noise_marginal)} over all test "
        f"patients and {_num(g.noise_pooled)} pooled within {s}"
    )
    if math.isfinite(g.marginal) and g.marginal <= g.noise_marginal:
        return text + f", so the {g.attribute} gap itself is within noise."
    return text + "."
