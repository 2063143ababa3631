"""Post-processing baseline: fairlearn's `ThresholdOptimizer` (Hardt et al., 2016) on a trained
model's scores, per group thresholds chosen on validation under a fairness constraint.

fairlearn needs an estimator; a model of the set is already trained and only its scores on each
split are at hand, so the estimator here is the identity on a one-column X holding the score of
the positive class (`prefit=True`, nothing is refitted). Predictions are randomised between two
thresholds where the constraint needs it; `seed` fixes that draw. Binary tasks only, as in
fairlearn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from rashomon import schema as S
from rashomon.errors import RashomonError
from rashomon.metrics.validation import check_probs, check_vector, require_array

CONSTRAINTS = (
    "equalized_odds",
    "true_positive_rate_parity",
    "false_positive_rate_parity",
    "demographic_parity",
)
OBJECTIVES = ("balanced_accuracy_score", "accuracy_score")


class ScoreColumn(ClassifierMixin, BaseEstimator):
    """A prefit scikit-learn classifier whose input is its own positive-class score."""

    classes_ = np.array([0, 1])

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X: Any, y: Any) -> ScoreColumn:  # fairlearn's API; nothing to learn
        """Nothing to learn (fairlearn's estimator API): returns itself."""
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities [N, 2] of the two classes from the score column `X`."""
        p = np.asarray(X, dtype=np.float64).reshape(-1)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """Hard predictions [N]: 1 where the score is at least 0.5."""
        return (np.asarray(X).reshape(-1) >= 0.5).astype(np.int64)


@dataclass
class ThresholdBaseline:
    """Hard predictions after per-group thresholds; `probs` are their one-hot [N, 2] form so that
    the desiderata's label metrics (accuracy, TPR/DP gaps, worst group) apply unchanged."""

    constraint: str
    val_pred: np.ndarray
    test_pred: np.ndarray
    seconds: float

    @staticmethod
    def one_hot(pred: np.ndarray) -> np.ndarray:
        """Hard predictions [N] as one-hot probabilities [N, 2]."""
        return np.eye(2, dtype=np.float32)[pred.astype(np.int64)]

    @property
    def val_probs(self) -> np.ndarray:
        """The validation predictions as one-hot probabilities [N, 2]."""
        return self.one_hot(self.val_pred)

    @property
    def test_probs(self) -> np.ndarray:
        """The test predictions as one-hot probabilities [N, 2]."""
        return self.one_hot(self.test_pred)


def check_constraint(constraint: str, objective: str) -> None:
    """Refuse a ThresholdOptimizer constraint or objective that it does not offer."""
    if constraint not in CONSTRAINTS:
        raise RashomonError(
            f"ThresholdOptimizer constraint {constraint!r} is not offered; use one of "
            f"{', '.join(CONSTRAINTS)}"
        )
    if objective not in OBJECTIVES:
        raise RashomonError(
            f"ThresholdOptimizer objective {objective!r} is not offered; use one of "
            f"{', '.join(OBJECTIVES)}"
        )


def threshold_baseline(
    val_probs: Any,
    y_val: Any,
    groups_val: Any,
    test_probs: Any,
    groups_test: Any,
    constraint: str = "equalized_odds",
    objective: str = "balanced_accuracy_score",
    seed: int = 0,
) -> ThresholdBaseline:
    """Fit fairlearn's ThresholdOptimizer on one model's validation scores (`val_probs` [N, 2])
    and groups, and predict validation and test."""
    from fairlearn.postprocessing import ThresholdOptimizer

    check_constraint(constraint, objective)
    pv = check_probs(require_array(val_probs, "val_probs")[None], name="val_probs")[0]
    pt = check_probs(require_array(test_probs, "test_probs")[None], name="test_probs")[0]
    if pv.shape[-1] != 2 or pt.shape[-1] != 2:
        raise RashomonError(
            "ThresholdOptimizer post-processes binary classifiers; this task has "
            f"{pv.shape[-1]} classes (use the reweighting or penalty baseline)"
        )
    yv = check_vector(y_val, len(pv), "y_val").astype(np.int64)
    gv = check_vector(groups_val, len(pv), "groups_val")
    gt = check_vector(groups_test, len(pt), "groups_test")
    if len(np.unique(gv)) < 2:
        raise RashomonError(
            "the validation split holds one group of the attribute; ThresholdOptimizer needs "
            "two or more (choose another attribute)"
        )
    one_label = [g for g in np.unique(gv) if len(np.unique(yv[gv == g])) < 2]
    if one_label:
        raise RashomonError(
            f"group(s) {[str(g) for g in one_label]} hold one label only on validation; "
            "ThresholdOptimizer needs positives and negatives in every group (choose a coarser "
            "attribute or a larger validation split)"
        )
    start = time.perf_counter()
    opt = ThresholdOptimizer(
        estimator=ScoreColumn(),
        constraints=constraint,
        objective=objective,
        prefit=True,
        predict_method="predict_proba",
    )
    opt.fit(pv[:, 1:], yv, sensitive_features=gv)
    val_pred = np.asarray(opt.predict(pv[:, 1:], sensitive_features=gv, random_state=seed))
    test_pred = np.asarray(opt.predict(pt[:, 1:], sensitive_features=gt, random_state=seed))
    return ThresholdBaseline(
        constraint=constraint,
        val_pred=val_pred.astype(np.int64),
        test_pred=test_pred.astype(np.int64),
        seconds=time.perf_counter() - start,
    )


def threshold_frame(
    map_val: Any,
    map_test: Any,
    set_val: Any,
    set_test: Any,
    set_ids: Sequence[int] | np.ndarray,
    y_val: Any,
    y_test: Any,
    groups_val: Any,
    groups_test: Any,
    attribute: str,
    constraint: str = "equalized_odds",
    seed: int = 0,
) -> pd.DataFrame:
    """postprocess.csv: the MAP model (model −1) and each set member (`set_ids`, with their
    [M, N, 2] probabilities) post-processed on validation, and their label desiderata for
    `attribute` (accuracy, balanced accuracy, TPR and demographic-parity gaps, worst group) on
    validation and test, long format."""
    from rashomon.decide.desiderata import default_desiderata, single_model_values

    yv = np.asarray(require_array(y_val, "y_val")).astype(np.int64)
    yt = np.asarray(require_array(y_test, "y_test")).astype(np.int64)
    gv, gt = np.asarray(require_array(groups_val)), np.asarray(require_array(groups_test))
    des = [
        x
        for x in default_desiderata([attribute], 2)
        if x.name in ("accuracy", "balanced_accuracy") or x.name.endswith(f":{attribute}")
    ]
    groups = {"val": {attribute: gv}, "test": {attribute: gt}}
    who = [(-1, map_val, map_test)]
    who += [(int(i), set_val[k], set_test[k]) for k, i in enumerate(set_ids)]
    rows = []
    for model_id, val_p, test_p in who:
        out = threshold_baseline(val_p, yv, gv, test_p, gt, constraint, seed=seed)
        for split, probs, y in (("val", out.val_probs, yv), ("test", out.test_probs, yt)):
            values = single_model_values(probs, y, groups[split], des)
            rows += [
                {
                    S.MODEL: model_id,
                    S.ATTRIBUTE: attribute,
                    S.CONSTRAINT: constraint,
                    S.SPLIT: split,
                    S.DESIDERATUM: name,
                    S.VALUE: value,
                    S.SECONDS: round(out.seconds, 4),
                }
                for name, value in values.items()
            ]
    return pd.DataFrame(rows, columns=list(S.TABLES["postprocess"].columns))
