"""The fairness answer: for each patient attribute, is there a model within ε that is fairer,
chosen on validation and confirmed on test? Sentences from decide/selection.csv, with the random
attribute's gain beside every real one as the selection-noise floor, and the post-processing
baseline (postprocess.csv) where it ran."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rashomon import schema as S
from rashomon.report.load import RunData

FAIRNESS_PREFIXES = ("tpr_gap", "dp_gap", "worst_group_accuracy")
WORDS = {
    "tpr_gap": "TPR gap",
    "dp_gap": "demographic-parity gap",
    "worst_group_accuracy": "worst-group accuracy",
}
NULL_ATTRIBUTE = "random"


@dataclass(frozen=True)
class FairnessAnswer:
    attribute: str
    derived: bool
    desideratum: str
    sentence: str
    verdict: str
    gain: float


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def answers(data: RunData) -> list[FairnessAnswer]:
    """One answer per fairness desideratum of selection.csv; real attributes first, then the
    random null control, then the derived proxies."""
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
                name,
                text + ".",
                verdict,
                float(r[S.TEST_GAIN]),
            )  # fmt: skip
        )
    rank = {False: 0, True: 2}
    return sorted(
        out, key=lambda a: (1 if a.attribute == NULL_ATTRIBUTE else rank[a.derived], a.attribute)
    )
