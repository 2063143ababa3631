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

Multilabel tasks are checked per label as binary tasks by the caller.
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
        kind = "near-constant" if self.near_constant else "near-chance"
        return (
            f"The trained model {self.describe(class_names, split)}: multiplicity of a {kind} "
            "classifier is no finding; train longer or check the data."
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
