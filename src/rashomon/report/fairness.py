"""The fairness answer: for each patient attribute, is there a model within ε that is fairer,
chosen on validation and confirmed on test? Sentences from decide/selection.csv, with the random
attribute's gain beside every real one as the selection-noise floor, what the test split could
show (min_detectable_gain) where no gain is real, and the post-processing baseline
(postprocess.csv) where it ran."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.report.load import RunData
from rashomon.report.words import KIND_ORDER, NULL_ATTRIBUTE, PATIENT, attribute_kind

FAIRNESS_PREFIXES = ("tpr_gap", "dp_gap", "worst_group_accuracy")
WORDS = {
    "tpr_gap": "TPR gap",
    "dp_gap": "demographic-parity gap",
    "worst_group_accuracy": "worst-group accuracy",
}


@dataclass(frozen=True)
class FairnessAnswer:
    """The report's answer for one attribute: its sentence and verdict on one desideratum."""

    attribute: str
    derived: bool
    kind: str  # words.PATIENT, ACQUISITION, NULL or PROXY
    desideratum: str
    sentence: str
    verdict: str
    gain: float

    @property
    def desideratum_prefix(self) -> str:
        """'tpr_gap' of 'tpr_gap:sex'."""
        return self.desideratum.partition(":")[0]


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def undetectable(row: pd.Series) -> float | None:
    """The smallest gain the test split detects at 80 % power (min_detectable_gain) when the
    row's gain or loss is not real and that bar exceeds the observed gain: the test split could
    not show a gain smaller than it. None otherwise (a real gain or loss, no bar, or a bar
    below the observed gain)."""
    bar = row.get(S.MIN_DETECTABLE_GAIN)
    if bar is None or pd.isna(bar) or str(row[S.VERDICT]).startswith("real"):
        return None
    return float(bar) if float(bar) > float(row[S.TEST_GAIN]) else None


def answers(data: RunData) -> list[FairnessAnswer]:
    """One answer per fairness desideratum of selection.csv; real patient attributes first,
    then acquisition attributes, the random null control and the derived proxies."""
    sel = data.table("selection")
    if sel is None or not len(sel) or S.LABEL in sel:
        return []
    post = data.table("postprocess")
    out = []
    for _, r in sel.iterrows():
        name = str(r[S.DESIDERATUM])
        prefix, _, attribute = name.partition(":")
        if prefix not in FAIRNESS_PREFIXES or not attribute:
            continue
        info = data.attributes.get(attribute, {})
        what = WORDS[prefix]
        better = "higher" if bool(r[S.HIGHER_IS_BETTER]) else "smaller"
        verdict = str(r[S.VERDICT])
        reading = {
            "real gain": "a real gain",
            "real loss": "a real loss",
        }.get(verdict, "within selection noise")
        text = (
            f"{attribute}, {what}: on validation a model within ε has {r[S.CHOSEN_VAL]:.3f} "
            f"against the trained model's {r[S.MAP_VAL]:.3f} ({better} is better); on test the "
            f"gain is {_points(r[S.TEST_GAIN])} points [{_points(r[S.GAIN_CI_LOW])}, "
            f"{_points(r[S.GAIN_CI_HIGH])}]: {reading}"
        )
        if S.GAIN_P_HOLM in r and pd.notna(r[S.GAIN_P_HOLM]):
            text += f" (Holm-adjusted p = {r[S.GAIN_P_HOLM]:.2f})"
        bar = undetectable(r)
        if bar is not None:
            text += (
                f"; the test split could not show a gain smaller than {100 * bar:.1f} points "
                "(detected 4 times in 5)"
            )
        if post is not None and len(post):
            row = post[
                (post[S.MODEL] == -1) & (post[S.SPLIT] == "test") & (post[S.DESIDERATUM] == name)
            ]
            if len(row):
                text += (
                    f"; fairlearn's ThresholdOptimizer ({row[S.CONSTRAINT].iloc[0]}) on the "
                    f"trained model reaches {row[S.VALUE].iloc[0]:.3f} on test"
                )
        out.append(
            FairnessAnswer(
                attribute,
                bool(info.get("derived", True)),
                attribute_kind(attribute, info),
                name,
                text + ".",
                verdict,
                float(r[S.TEST_GAIN]),
            )  # fmt: skip
        )
    return sorted(out, key=lambda a: (KIND_ORDER.index(a.kind), a.attribute))


# validate/selection_vs_set.csv (written by rashomon.validate; its columns are
# rashomon.schema.selection_vs_set_columns)
SELECTION_VS_SET_FILE = "selection_vs_set.csv"


def side_selection(side_by_side: pd.DataFrame, who: str) -> pd.DataFrame:
    """One side (`S.SET_SIDE` or `S.TRUTH_SIDE`) of selection_vs_set.csv under selection.csv's
    column names (`retrained_test_gain` -> `test_gain`), only the desiderata that side
    selected for."""
    names = {S.side_column(who, c): c for c in S.SIDE_BY_SIDE}
    keep = [
        c
        for c in side_by_side.columns
        if c not in names and not c.startswith(("set_", "retrained_"))
    ]
    t = side_by_side[[*keep, *names]].rename(columns=names)
    return t[t[S.VERDICT].notna()].reset_index(drop=True)


@dataclass(frozen=True)
class TruthAnswer:
    """Is a retrained network fairer on test, chosen on validation, beyond the null control?"""

    fairer: list[str]  # the fairness desiderata of patient attributes with such a gain
    checked: int  # fairness desiderata of patient attributes the truth selected for
    sentence: str


def truth_answer(
    data: RunData, side_by_side: pd.DataFrame, retrained: int | None
) -> TruthAnswer | None:
    """The hypothesis on the retrained truth (networks retrained like the trained one and within
    ε: equally valid by construction): a fairness desideratum of a real patient attribute
    whose retrained selection is a real gain on test larger than the same gap's gain on the
    random control. None for multilabel runs or when the truth selected no such desideratum."""
    if S.LABEL in side_by_side:
        return None
    truth = side_selection(side_by_side, S.TRUTH_SIDE)
    null, rows = {}, []
    for _, r in truth.iterrows():
        prefix, _, attribute = str(r[S.DESIDERATUM]).partition(":")
        if prefix not in FAIRNESS_PREFIXES or not attribute:
            continue
        if attribute == NULL_ATTRIBUTE:
            null[prefix] = float(r[S.TEST_GAIN])
        elif attribute_kind(attribute, data.attributes.get(attribute, {})) == PATIENT:
            rows.append(r)
    if not rows:
        return None
    fairer = [
        str(r[S.DESIDERATUM])
        for r in rows
        if str(r[S.VERDICT]) == "real gain"
        and float(r[S.TEST_GAIN]) > null.get(str(r[S.DESIDERATUM]).partition(":")[0], -np.inf)
    ]
    among = f"the {retrained} retrained networks" if retrained else "the retrained networks"
    head = (
        f"On the retrained truth ({among} within ε, equally valid by construction), a model "
        "chosen on validation"
    )
    if fairer:
        gains = ", ".join(
            f"{r[S.DESIDERATUM]} {_points(r[S.TEST_GAIN])} points [{_points(r[S.GAIN_CI_LOW])}, "
            f"{_points(r[S.GAIN_CI_HIGH])}]"
            for r in rows
            if str(r[S.DESIDERATUM]) in fairer
        )
        sentence = (
            f"{head} is fairer on test beyond the random control for {gains}: the hypothesis "
            f"holds on the truth{_set_agrees(side_by_side, fairer)}."
        )
    else:
        checked = [str(r[S.DESIDERATUM]) for r in rows]
        bars = [b for b in (undetectable(r) for r in rows) if b is not None]
        power = ""
        if bars:
            lo, hi = 100 * min(bars), 100 * max(bars)
            span = f"{lo:.1f}" if lo == hi else f"{lo:.1f} to {hi:.1f}"
            power = f" (the test split could not show gains smaller than {span} points)"
        sentence = (
            f"{head} is fairer on test beyond the random control for none of the {len(rows)} "
            f"fairness desiderata of patient attributes checked{power}: no fairer model is "
            f"found among equally valid networks{_set_claims(side_by_side, checked)}."
        )
    return TruthAnswer(fairer, len(rows), sentence)


def _set_verdicts(side_by_side: pd.DataFrame, names: list[str]) -> list[str]:
    """Of `names`, those the cheap set's own selection found a real gain for."""
    verdict = S.side_column(S.SET_SIDE, S.VERDICT)
    if verdict not in side_by_side:
        return []
    rows = side_by_side[side_by_side[S.DESIDERATUM].astype(str).isin(names)]
    return [
        str(n) for n, v in zip(rows[S.DESIDERATUM], rows[verdict], strict=True) if v == "real gain"
    ]


def _set_agrees(side_by_side: pd.DataFrame, fairer: list[str]) -> str:
    found = _set_verdicts(side_by_side, fairer)
    if len(found) == len(fairer):
        return f"; the set's own selection finds {'it' if len(found) == 1 else 'them'} too"
    if not found:
        return "; the set's own selection does not: the set understates it"
    return f"; the set's own selection finds only {', '.join(found)}"


def _set_claims(side_by_side: pd.DataFrame, checked: list[str]) -> str:
    found = _set_verdicts(side_by_side, checked)
    if not found:
        return ""
    return (
        f"; the set's own selection claims a real gain for {', '.join(found)}, which the truth "
        "does not confirm"
    )
