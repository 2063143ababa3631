"""Property-based tests (hypothesis) of symmetries the audit's numbers must have.

- Multiplicity over a set does not depend on the order of its models; per-patient quantities
  move with their patients and set-level ones do not change when patients are reordered.
- Fairness gaps do not depend on what the groups are called (their codes or level names), nor on
  the order of the patients; they move with their models.
- Input validators: what tests/test_data_validation.py does not cover already (multilabel label
  matrices, the requested size, one [0, 1]-or-[0, 255] decision for all splits of a task).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rashomon.errors import RashomonError
from rashomon.metrics import fairness as rf
from rashomon.metrics import multiplicity as rm

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def model_sets(draw, min_models: int = 2, max_classes: int = 4):
    """(probs [M, N, C] from random logits, a model permutation, a patient permutation)."""
    m = draw(st.integers(min_models, 6))
    n = draw(st.integers(1, 9))
    c = draw(st.integers(2, max_classes))
    logits = draw(hnp.arrays(np.float64, (m, n, c), elements=st.floats(-4, 4)))
    # coarse logits make ties and exactly agreeing models common, the cases that break orders
    logits = np.round(logits * draw(st.sampled_from([1.0, 2.0, 100.0]))) / 2.0
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    return (
        probs,
        np.array(draw(st.permutations(range(m)))),
        np.array(draw(st.permutations(range(n)))),
    )


# --- multiplicity ------------------------------------------------------------------------------


@FAST
@given(model_sets())
def test_label_metrics_ignore_model_order_and_follow_patients(case):
    probs, models, patients = case
    preds = rm.predict_labels(probs)
    ref = rm.predict_labels(probs[:1])[0]  # the first model as the MAP stand-in
    c = probs.shape[-1]
    shuffled = preds[models]
    assert rm.ambiguity(shuffled, ref) == rm.ambiguity(preds, ref)
    assert rm.discrepancy(shuffled, ref) == rm.discrepancy(preds, ref)
    for per_patient in (
        lambda p, r: rm.flip_rate(p, r),
        lambda p, r: rm.disagreement(p, c),
        lambda p, r: rm.self_consistency(p, c),
    ):
        base = per_patient(preds, ref)
        np.testing.assert_allclose(per_patient(shuffled, ref), base, rtol=0, atol=1e-12)
        moved = per_patient(preds[:, patients], ref[patients])
        np.testing.assert_allclose(moved, base[patients], rtol=0, atol=1e-12)
    moved = preds[:, patients]
    assert rm.ambiguity(moved, ref[patients]) == pytest.approx(rm.ambiguity(preds, ref))
    assert rm.discrepancy(moved, ref[patients]) == pytest.approx(rm.discrepancy(preds, ref))


@FAST
@given(model_sets(min_models=1))
def test_capacity_and_prediction_range_ignore_model_order(case):
    probs, models, patients = case
    cap = rm.rashomon_capacity(probs)
    # certified to within CAPACITY_TOL below the exact value, whatever the rows' order
    np.testing.assert_allclose(rm.rashomon_capacity(probs[models]), cap, rtol=0, atol=1e-7)
    np.testing.assert_allclose(rm.rashomon_capacity(probs[:, patients]), cap[patients], atol=1e-7)
    assert (cap >= 1 - 1e-12).all() and (cap <= probs.shape[-1] + 1e-12).all()
    vpr = rm.viable_prediction_range(probs)
    np.testing.assert_array_equal(rm.viable_prediction_range(probs[models]), vpr)
    np.testing.assert_array_equal(rm.viable_prediction_range(probs[:, patients]), vpr[patients])


@FAST
@given(model_sets())
def test_multiplicity_summary_is_a_function_of_the_set_and_its_patients(case):
    probs, models, patients = case
    n = probs.shape[1]
    ref = probs[0]
    groups = {"site": np.arange(n) % 2} if n >= 2 else {}
    kind = "binary" if probs.shape[-1] == 2 else "multiclass"
    ps, summary = rm.multiplicity_summary(probs, ref, groups=groups, kind=kind)
    ps2, summary2 = rm.multiplicity_summary(probs[models], ref, groups=groups, kind=kind)
    pd.testing.assert_frame_equal(ps2, ps, atol=1e-7)
    for key in ("ambiguity", "discrepancy", "mean_disagreement", "mean_capacity"):
        assert summary2[key] == pytest.approx(summary[key], abs=1e-7), key
    moved = {a: g[patients] for a, g in groups.items()}
    ps3, summary3 = rm.multiplicity_summary(probs[:, patients], ref[patients], moved, kind=kind)
    expected = ps.iloc[patients].reset_index(drop=True).assign(sample=np.arange(n))
    pd.testing.assert_frame_equal(ps3, expected, atol=1e-7)
    for key in ("ambiguity", "discrepancy", "mean_disagreement", "mean_capacity"):
        assert summary3[key] == pytest.approx(summary[key], abs=1e-7), key


# --- fairness ----------------------------------------------------------------------------------


@st.composite
def fairness_cases(draw):
    """(probs [M, N, C], y [N], groups [N] codes 0..G-1 with every group present, a bijective
    relabelling of the codes to other integers, a patient permutation, a model permutation)."""
    probs, models, _ = draw(model_sets(max_classes=3))
    m, n, c = probs.shape
    n_groups = draw(st.integers(2, 4))
    extra = draw(st.integers(0, 12))
    logits = draw(hnp.arrays(np.float64, (m, extra, c), elements=st.floats(-4, 4)))
    e = np.exp(logits)
    probs = np.concatenate([probs, e / e.sum(-1, keepdims=True)], axis=1)
    n = probs.shape[1]
    if n < n_groups:
        pad = np.full((m, n_groups - n, c), 1.0 / c)
        probs, n = np.concatenate([probs, pad], axis=1), n_groups
    groups = np.array(
        list(range(n_groups))
        + draw(st.lists(st.integers(0, n_groups - 1), min_size=n - n_groups, max_size=n - n_groups))
    )
    y = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    new_codes = draw(
        st.lists(st.integers(-1000, 1000), min_size=n_groups, max_size=n_groups, unique=True)
    )
    patients = np.array(draw(st.permutations(range(n))))
    return probs, y, groups, np.array(new_codes), patients, models


def assert_gaps_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-9, equal_nan=True, err_msg=k)


@FAST
@given(fairness_cases())
def test_fairness_gaps_ignore_group_names_and_patient_order(case):
    probs, y, groups, new_codes, patients, models = case
    gaps = rf.fairness_gaps(probs, y, groups)
    assert_gaps_equal(rf.fairness_gaps(probs, y, new_codes[groups]), gaps)
    assert_gaps_equal(rf.fairness_gaps(probs[:, patients], y[patients], groups[patients]), gaps)
    moved = rf.fairness_gaps(probs[models], y, groups)
    assert_gaps_equal(moved, {k: v[models] for k, v in gaps.items()})


@FAST
@given(fairness_cases())
def test_group_metrics_follow_their_group_when_renamed(case):
    probs, y, groups, new_codes, _, _ = case
    codes, per_group = rf.group_metrics(probs, y, groups)
    renamed_codes, renamed = rf.group_metrics(probs, y, new_codes[groups])
    assert sorted(renamed_codes.tolist()) == sorted(new_codes.tolist())
    position = {int(code): i for i, code in enumerate(renamed_codes)}
    for metric, values in per_group.items():
        for i, code in enumerate(codes):
            np.testing.assert_array_equal(
                renamed[metric][:, position[int(new_codes[code])]], values[:, i], err_msg=metric
            )


@FAST
@given(fairness_cases(), st.data())
def test_group_table_keyed_by_level_name_ignores_the_codes(case, data):
    probs, y, groups, _, _, _ = case
    n_groups = int(groups.max()) + 1
    names = [f"level {chr(97 + i)}" for i in range(n_groups)]
    perm = np.array(data.draw(st.permutations(range(n_groups))))
    # the same people, their groups numbered otherwise and the names moved with the numbers
    renamed = [""] * n_groups
    for old, new in enumerate(perm):
        renamed[new] = names[old]
    table = rf.group_table(probs, y, groups, "site", False, names)
    table2 = rf.group_table(probs, y, perm[groups], "site", False, renamed)

    def key(t):
        return t.sort_values(["model", "metric", "group"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(key(table2), key(table))


# --- input validators --------------------------------------------------------------------------


@FAST
@given(
    hnp.arrays(
        np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 6)), elements=st.integers(0, 1)
    ),
    st.sampled_from([np.uint8, np.int64, np.float32]),
)
def test_multilabel_label_matrices_round_trip_and_other_widths_are_refused(y, dtype):
    from rashomon.data.validate import check_labels

    n_labels = y.shape[1]
    out = check_labels(y.astype(dtype), "multilabel", n_labels, "labels")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, y)
    with pytest.raises(RashomonError, match=r"column\(s\) but the task has"):
        check_labels(y.astype(dtype), "multilabel", n_labels + 1, "labels")
    bad = y.astype(np.int64)
    bad[0, 0] = 2
    with pytest.raises(RashomonError, match="labels out of range.*0/1"):
        check_labels(bad, "multilabel", n_labels, "labels")


@FAST
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))
def test_images_of_another_size_than_requested_are_refused(n, h, w, size):
    from rashomon.data.validate import check_images

    arr = np.zeros((n, h, w), np.uint8)
    if (h, w) == (size, size):
        assert check_images(arr, "images", size=size).shape == (n, size, size)
    else:
        with pytest.raises(RashomonError, match=rf"are {h}×{w} but size {size} was requested"):
            check_images(arr, "images", size=size)


@FAST
@given(
    hnp.arrays(np.uint8, (3, 4, 4)),
    hnp.arrays(np.uint8, (3, 4, 4), elements=st.integers(0, 1)),
)
def test_one_scale_decision_for_all_splits(bright, dark):
    """A [0, 255] float file whose one split happens to hold only 0s and 1s: decided once for
    the task, the dark split stays 0/1 (not scaled to 0/255); a [0, 1] file is scaled in every
    split, its values rounded to the nearest byte, never truncated."""
    from rashomon.data.validate import check_images, float_unit_range

    if bright.max() <= 1:  # then the file really is on the [0, 1] scale
        bright = bright + 2
    splits = [bright.astype(np.float64), dark.astype(np.float64)]
    unit = float_unit_range(splits)
    assert unit is False
    out = [check_images(s, "images", unit_range=unit) for s in splits]
    np.testing.assert_array_equal(out[0], bright)
    np.testing.assert_array_equal(out[1], dark)
    scaled = [bright / 255.0, dark / 255.0 * 0.999]
    assert float_unit_range(scaled) is True
    out = [check_images(s, "images", unit_range=True) for s in scaled]
    np.testing.assert_array_equal(out[0], bright)
    np.testing.assert_array_equal(out[1], np.rint(dark * 0.999).astype(np.uint8))
