"""Bad inputs raise RashomonError with the one-line message named in metrics.validation."""

from __future__ import annotations

import numpy as np
import pytest

import rashomon.metrics as rm
from rashomon.errors import RashomonError
from rashomon.metrics import validation as v

GOOD = np.stack([np.full((2, 4), 0.3), np.full((2, 4), 0.7)], axis=-1)
Y = np.array([0, 1, 1, 0])


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: rm.auroc(GOOD * 1.5, Y), "outside [0, 1]"),
        (lambda: rm.auroc(GOOD * 0.9, Y), "not 1"),
        (lambda: rm.auroc(np.where(GOOD > 0.5, np.nan, GOOD), Y), "NaN or inf"),
        (lambda: rm.auroc(GOOD[0], Y), "must be [M, N, C]"),
        (lambda: rm.auroc(GOOD, np.array([0, 1, 2, 0])), "labels outside [0, 2)"),
        (lambda: rm.auroc(GOOD, Y[:3]), "must be [N] = [4]"),
        (lambda: rm.ambiguity(np.zeros((2, 4), dtype=int), np.zeros(3, dtype=int)), "ref must be"),
        (lambda: rm.ambiguity(np.zeros(4, dtype=int), np.zeros(4, dtype=int)), "preds must be"),
        (lambda: rm.ambiguity(np.full((2, 4), 0.5), np.zeros(4, dtype=int)), "integer"),
        (lambda: rm.fairness_gaps(GOOD, Y, np.ones(4, dtype=int)), "only 1 group"),
        (lambda: rm.fairness_gaps(GOOD, Y, np.array([0, 1])), "must be [N] = [4]"),
        (lambda: rm.churn(np.zeros(3, dtype=int), np.zeros(4, dtype=int)), "3 samples vs 4"),
        (lambda: rm.accuracy(GOOD, Y, threshold=2.0), "threshold 2.0"),
        (lambda: rm.per_model_table(GOOD, Y, kind="ordinal"), "unknown"),
        (lambda: rm.multiplicity_summary(GOOD, GOOD[0, :3]), "samples"),
        (lambda: rm.nll(GOOD, Y, class_weight=[1.0, -1.0]), "2 positive numbers"),
        (lambda: rm.nll(GOOD, np.array([[0, 1], [1, 0]])), "must be [N, L] = [4, 2]"),
        (lambda: v.check_probs(GOOD[0], name="test_probs"), "test_probs must be [M, N, C]"),
        (lambda: v.check_vector(np.zeros((4, 1)), 4, "val_y"), "val_y must be [4]"),
        (lambda: v.require_array(None, "val_probs"), "val_probs is missing"),
    ],
)
def test_bad_inputs_raise_one_line_errors(call, fragment):
    with pytest.raises(RashomonError) as info:
        call()
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_small_rounding_is_tolerated():
    probs = GOOD.astype(np.float32) + 1e-4  # float32 softmax drift
    assert np.isfinite(rm.auroc(probs / probs.sum(axis=2, keepdims=True) * 1.0005, Y)).all()
