"""Is a trained model degenerate, i.e. (nearly) a constant or a chance-level classifier?

The multiplicity of a set around such a model is no finding: every equally bad model flips the
same few patients, and "the best model of the set" is the best of near-constant classifiers. Two
checks on one model's labels against the true ones, each with its threshold as a constant:

- near-constant: one class is predicted for at least `DOMINANT_SHARE` of the patients, and at
  most `MINORITY_RECALL` of the patients of the other classes get their own class (on a task
  whose minority is 5 %, a model that finds that minority also predicts the majority for 95 %
  of patients: it is not a constant classifier);
- near chance: its balanced accuracy (mean recall over the classes present, as scikit-learn's
  `balanced_accuracy_score`) is at most `CHANCE_MARGIN` above chance. Chance is 1/K for the K
  classes present in `y`: what every constant classifier scores (1/C when all C classes are
  present). A model *below* chance is flagged too: it is no better than a constant one.

A multilabel model (one 0/1 finding per label) is checked as a whole by
`multilabel_degeneracy`: near-constant when it gives the same finding vector to at least
`DOMINANT_SHARE` of the patients, near chance when its mean per-label AUROC is at most
`CHANCE_MARGIN` above 0.5. Per label, as binary tasks, `degeneracy` applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rashomon.errors import RashomonError

DOMINANT_SHARE = 0.95  # one class for at least this share of patients: near-constant
CHANCE_MARGIN = 0.05  # balanced accuracy at most this far above chance: near chance
MINORITY_RECALL = 0.5  # mean recall of the other classes at most this: the dominant one is all


@dataclass(frozen=True)
class Degeneracy:
    """The two checks of one model on one split."""

    dominant_class: int  # the class it predicts most often
    dominant_share: float  # share of patients given that class
    balanced_accuracy: float
    chance: float  # 1 / (classes present in y)
    near_constant: bool
    near_chance: bool

    @property
    def degenerate(self) -> bool:
        """Whether the model is near-constant or near chance."""
        return self.near_constant or self.near_chance

    def describe(self, class_names: Sequence[str] = (), split: str = "test") -> str:
        """What is wrong, e.g. "predicts 'nv' for 97 % of test patients (balanced accuracy
        0.18, chance 0.14)"."""
        c = self.dominant_class
        name = class_names[c] if 0 <= c < len(class_names) else f"class {c}"
        scores = f"balanced accuracy {self.balanced_accuracy:.2f}, chance {self.chance:.2f}"
        share = f"{100 * self.dominant_share:.0f} %"
        if self.near_constant:
            return f"predicts '{name}' for {share} of {split} patients ({scores})"
        return f"is near chance on {split} patients ({scores}; it predicts '{name}' for {share})"

    def sentence(self, class_names: Sequence[str] = (), split: str = "test") -> str:
        """The warning in plain words, e.g. "The trained model predicts 'nv' for 97 % of test
        patients (balanced accuracy 0.18, chance 0.14): multiplicity of a near-constant
        classifier is no finding; train longer or check the data."."""
        return _warning(self.describe(class_names, split), self.near_constant)


def _warning(description: str, near_constant: bool) -> str:
    kind = "near-constant" if near_constant else "near-chance"
    return (
        f"The trained model {description}: multiplicity of a {kind} classifier is no finding; "
        "train longer or check the data."
    )


def degeneracy(
    preds: Any,
    y: Any,
    dominant_share: float = DOMINANT_SHARE,
    chance_margin: float = CHANCE_MARGIN,
) -> Degeneracy:
    """Check one model's labels `preds` [N] against the true labels `y` [N] (integers)."""
    p = np.asarray(preds).reshape(-1)
    t = np.asarray(y).reshape(-1)
    if p.shape != t.shape or len(p) == 0:
        raise RashomonError(
            f"predictions {np.shape(preds)} and labels {np.shape(y)} must be [N] with N > 0; "
            "check one model's labels on one split"
        )
    p, t = p.astype(np.int64), t.astype(np.int64)
    values, counts = np.unique(p, return_counts=True)
    top = int(np.argmax(counts))
    share = float(counts[top] / len(p))
    present = np.unique(t)
    recall = {int(c): float((p[t == c] == c).mean()) for c in present}
    bacc = float(np.mean(list(recall.values())))
    chance = 1.0 / len(present)
    others = [r for c, r in recall.items() if c != int(values[top])]
    misses_the_others = not others or float(np.mean(others)) <= MINORITY_RECALL
    return Degeneracy(
        dominant_class=int(values[top]),
        dominant_share=share,
        balanced_accuracy=bacc,
        chance=chance,
        near_constant=share >= dominant_share and misses_the_others,
        near_chance=bacc <= chance + chance_margin + 1e-12,
    )


AUROC_CHANCE = 0.5
NAMED_FINDINGS = 4  # findings a multilabel warning names before it counts the rest


@dataclass(frozen=True)
class MultilabelDegeneracy:
    """The two checks of one multilabel model on one split."""

    vector: tuple[int, ...]  # the finding vector (0/1 per label) it predicts most often
    vector_share: float  # share of patients given that vector
    mean_auroc: float | None  # mean per-label AUROC; None when not known
    near_constant: bool
    near_chance: bool

    @property
    def degenerate(self) -> bool:
        """Whether the model is near-constant or near chance."""
        return self.near_constant or self.near_chance

    def describe(self, label_names: Sequence[str] = (), split: str = "test") -> str:
        """What is wrong, e.g. "predicts no finding on any label for 98 % of test patients (mean
        per-label AUROC 0.51, chance 0.50)"."""
        found = [
            f"'{label_names[j] if j < len(label_names) else f'label {j}'}'"
            for j, v in enumerate(self.vector)
            if v
        ]
        named = ", ".join(found[:NAMED_FINDINGS])
        if len(found) > NAMED_FINDINGS:  # a headline names a few, then counts the rest
            named += f" and {len(found) - NAMED_FINDINGS} more labels"
        what = f"exactly {named}" if found else "no finding on any label"
        share = f"{100 * self.vector_share:.0f} %"
        scores = (
            f"mean per-label AUROC {self.mean_auroc:.2f}, chance {AUROC_CHANCE:.2f}"
            if self.mean_auroc is not None
            else ""
        )
        if self.near_constant:
            return f"predicts {what} for {share} of {split} patients" + (
                f" ({scores})" if scores else ""
            )
        return f"is near chance on {split} patients ({scores}; it predicts {what} for {share})"

    def sentence(self, label_names: Sequence[str] = (), split: str = "test") -> str:
        """The warning in plain words, as `Degeneracy.sentence`."""
        return _warning(self.describe(label_names, split), self.near_constant)


def multilabel_degeneracy(
    preds: Any,
    auroc: Any = None,
    dominant_share: float = DOMINANT_SHARE,
    chance_margin: float = CHANCE_MARGIN,
) -> MultilabelDegeneracy:
    """Check one multilabel model's findings `preds` [N, L] (0/1) and, when known, its AUROC per
    label `auroc` ([L], NaN for a label with one class in the split; or their mean, one number)."""
    p = np.asarray(preds)
    if p.ndim != 2 or p.shape[0] == 0:
        raise RashomonError(
            f"multilabel findings {p.shape} must be [N, L] with N > 0; check one model's 0/1 "
            "labels on one split"
        )
    rows, counts = np.unique((p > 0).astype(np.int64), axis=0, return_counts=True)
    top = int(np.argmax(counts))
    share = float(counts[top] / p.shape[0])
    mean = None
    if auroc is not None:
        a = np.atleast_1d(np.asarray(auroc, dtype=float))
        if a.size != 1 and a.size != p.shape[1]:
            raise RashomonError(
                f"got {a.size} AUROC values for {p.shape[1]} labels; give one AUROC per label "
                "or their mean"
            )
        finite = a[np.isfinite(a)]
        mean = float(finite.mean()) if finite.size else None
    return MultilabelDegeneracy(
        vector=tuple(int(v) for v in rows[top]),
        vector_share=share,
        mean_auroc=mean,
        near_constant=share >= dominant_share,
        near_chance=mean is not None and mean <= AUROC_CHANCE + chance_margin + 1e-12,
    )
