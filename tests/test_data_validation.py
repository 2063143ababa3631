"""Input validation of npz tasks and attribute CSVs: every defect the reliability probe found on
main (silent corruption, Python-type errors, degenerate tasks) reproduced through the public
loader, then property-based tests of the validators in `rashomon.data.validate`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rashomon as rs
from rashomon.data.validate import DataWarning
from rashomon.errors import RashomonError

SIZES = {"train": 20, "val": 8, "test": 8}


def write_npz(root, name="breastmnist", images=None, labels=None, **override):
    """A MedMNIST-layout npz: alternating 0/1 labels, random uint8 28 px images, unless given
    `images(split, n)` / `labels(split, n)`; `override` replaces whole arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in SIZES.items():
        arrays[f"{s}_images"] = (
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images(s, n)
        )
        arrays[f"{s}_labels"] = (
            (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8) if labels is None else labels(s, n)
        )
    arrays.update(override)
    np.savez(root / f"{name}.npz", **arrays)
    return arrays


def load(root, name="breastmnist", **kw):
    return rs.load_task(name, root=root, **kw)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and ";" in msg, msg  # one line, with the fix after the semicolon
    return msg


# --- image dtypes, ranges and sizes --------------------------------------------------------


def test_float_images_in_unit_range_are_scaled_not_truncated(tmp_path):
    # main: np.asarray(x, dtype=uint8) truncated [0, 1) to 0: every image became black
    u = {
        s: np.random.default_rng(i).integers(0, 256, (n, 28, 28), np.uint8)
        for i, (s, n) in enumerate(SIZES.items())
    }
    write_npz(tmp_path, images=lambda s, n: u[s] / 255.0)
    task = load(tmp_path)
    for s in SIZES:
        np.testing.assert_array_equal(task.split(s).raw, u[s])
        np.testing.assert_allclose(task.split(s).x[:, 0].numpy(), u[s] / 127.5 - 1, atol=1e-6)


def test_float_images_in_byte_range(tmp_path):
    u = np.random.default_rng(1).integers(0, 256, (20, 28, 28), np.uint8)
    other = np.random.default_rng(11).integers(0, 256, (8, 28, 28), np.uint8)
    per_split = {"train": u, "val": other, "test": 255 - other}  # no image in two splits
    write_npz(tmp_path, images=lambda s, n: per_split[s].astype(np.float32))
    np.testing.assert_array_equal(load(tmp_path).train.raw, u)
    write_npz(tmp_path, images=lambda s, n: np.minimum(per_split[s] + 0.25, 255.0))
    with pytest.raises(RashomonError, match=r"train images are float64 .* fractional") as exc:
        load(tmp_path)
    one_line(exc)


def test_byte_range_float_file_with_a_dark_split_is_not_rescaled(tmp_path):
    # the [0, 1] rule is decided over all splits: a val split of 0/1 values in a [0, 255] file
    # keeps its values instead of becoming 0/255
    rng = np.random.default_rng(2)
    arrays = {s: rng.integers(0, 256, (n, 28, 28)).astype(np.float64) for s, n in SIZES.items()}
    arrays["val"] = rng.integers(0, 2, (8, 28, 28)).astype(np.float64)
    write_npz(tmp_path, images=lambda s, n: arrays[s])
    assert load(tmp_path).val.raw.max() == 1


def test_int32_images_outside_byte_range_are_refused(tmp_path):
    # main: int32 values wrapped mod 256 (300 became 44)
    write_npz(tmp_path, images=lambda s, n: np.full((n, 28, 28), 300, np.int32))
    with pytest.raises(RashomonError, match=r"train images are int32 .*\[300, 300\].*0\.\.255"):
        load(tmp_path)
    ok = np.random.default_rng(3).integers(0, 256, (36, 28, 28))
    start = {"train": 0, "val": 20, "test": 28}  # no image in two splits
    write_npz(tmp_path, images=lambda s, n: ok[start[s] : start[s] + n].astype(np.int32))
    np.testing.assert_array_equal(load(tmp_path).train.raw, ok[:20].astype(np.uint8))


@pytest.mark.parametrize(
    ("images", "pattern"),
    [
        (lambda n: np.full((n, 28, 28), -0.5), r"float64 with values in \[-0.5, -0.5\]"),
        (lambda n: np.full((n, 28, 28), np.nan), "NaN or infinite"),
        (lambda n: np.ones((n, 28, 28), bool), "dtype bool"),
        (lambda n: np.ones((n, 28, 28), np.complex64), "dtype complex64"),
    ],
)
def test_invalid_image_values(tmp_path, images, pattern):
    write_npz(tmp_path, images=lambda s, n: images(n))
    with pytest.raises(RashomonError, match=pattern) as exc:
        load(tmp_path)
    one_line(exc)


def test_image_size_must_match_the_requested_size(tmp_path):
    # main: 64 px images were accepted under size 28 (the models were then built for 28 px)
    write_npz(tmp_path, images=lambda s, n: np.zeros((n, 64, 64), np.uint8))
    with pytest.raises(RashomonError, match=r"64×64 but size 28 was requested.*--size 64") as exc:
        load(tmp_path)
    one_line(exc)


def test_two_dimensional_images(tmp_path):
    # main: "ValueError: images must be [N, H, W] ..." (exit 1, a Python type name)
    write_npz(tmp_path, images=lambda s, n: np.zeros((n, 28), np.uint8))
    with pytest.raises(RashomonError, match=r"train images have shape \(20, 28\)") as exc:
        load(tmp_path)
    one_line(exc)


def test_empty_split(tmp_path):
    # main: "ValueError: cannot reshape array of size 0 into shape (0,newaxis)"
    write_npz(
        tmp_path, val_images=np.zeros((0, 28, 28), np.uint8), val_labels=np.zeros((0, 1), np.uint8)
    )
    with pytest.raises(RashomonError, match="val images: none, the split is empty") as exc:
        load(tmp_path)
    one_line(exc)


# --- labels and degenerate tasks --------------------------------------------------------------


def test_fractional_npz_labels_are_refused(tmp_path):
    # main: 0.5 was truncated to class 0
    write_npz(tmp_path, labels=lambda s, n: np.where(np.arange(n) % 2, 1.0, 0.5).reshape(-1, 1))
    with pytest.raises(RashomonError, match="train labels hold fractional.*0.5") as exc:
        load(tmp_path)
    one_line(exc)


def test_integral_float_labels_are_accepted(tmp_path):
    write_npz(tmp_path, labels=lambda s, n: (np.arange(n) % 2).reshape(-1, 1).astype(float))
    assert load(tmp_path).train.y.tolist() == [i % 2 for i in range(20)]


def test_extra_label_columns_for_a_binary_task(tmp_path):
    # main: silently kept the first column
    write_npz(tmp_path, labels=lambda s, n: np.stack([np.arange(n) % 2, np.zeros(n)], 1))
    with pytest.raises(RashomonError, match="have 2 columns but a binary task takes one"):
        load(tmp_path)


def test_single_class_train_split_is_an_error(tmp_path):
    # main: trained on all-0 labels, "test accuracy 100 %, AUROC nan"
    write_npz(
        tmp_path,
        labels=lambda s, n: (
            np.zeros((n, 1), np.uint8) if s == "train" else (np.arange(n) % 2).reshape(-1, 1)
        ),
    )
    with pytest.raises(
        RashomonError,
        match=r"train split holds a single class .*'malignant': 20, 'normal, benign': 0",
    ) as exc:
        load(tmp_path)
    one_line(exc)


def test_single_class_test_split_is_an_error(tmp_path):
    write_npz(
        tmp_path,
        labels=lambda s, n: (
            np.ones((n, 1), np.uint8) if s == "test" else (np.arange(n) % 2).reshape(-1, 1)
        ),
    )
    with pytest.raises(RashomonError, match=r"test split holds a single class .*'malignant': 0"):
        load(tmp_path)


def test_class_missing_from_val_warns(tmp_path):
    from rashomon.data.validate import DataWarning

    # 7 classes; val holds only 0 and 1: still usable, so a warning, not an error
    write_npz(
        tmp_path,
        name="dermamnist",
        images=lambda s, n: np.random.default_rng(len(s)).integers(
            0, 256, (n, 28, 28, 3), np.uint8
        ),
        labels=lambda s, n: (np.arange(n) % (2 if s == "val" else 7)).reshape(-1, 1),
    )
    with pytest.warns(DataWarning, match=r"val split has no image of 5 of 7 classes \('benign ker"):
        task = load(tmp_path, "dermamnist")
    assert task.num_classes == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_npz(tmp_path, labels=None)
        load(tmp_path)  # a complete binary task warns nothing


# --- attribute CSVs ---------------------------------------------------------------------------


def _attribute_rows(offset=0):
    return pd.DataFrame(
        [
            {"split": s, "index": i + offset, "site": "AB"[i % 2]}
            for s, n in SIZES.items()
            for i in range(n)
        ]
    )


def test_shifted_attribute_indices_say_how_to_fix(tmp_path):
    # main: "attribute CSV has 20 rows for split 'train' but the task has 20 images"
    write_npz(tmp_path)
    _attribute_rows(offset=1).to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(
        RashomonError,
        match=r"split 'train' have index 1\.\.20 .* must be 0\.\.19.*start at 1: subtract 1",
    ) as exc:
        load(tmp_path, attributes_csv=tmp_path / "attrs.csv")
    one_line(exc)


def test_attribute_indices_numbered_across_the_file(tmp_path):
    write_npz(tmp_path)
    rows = _attribute_rows()
    rows["index"] = np.arange(len(rows))  # 0..35 over the file, not per split
    rows.to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(RashomonError, match=r"split 'val' have index 20\.\.27.*number each split"):
        load(tmp_path, attributes_csv=tmp_path / "attrs.csv")


def test_duplicate_attribute_index(tmp_path):
    write_npz(tmp_path)
    rows = _attribute_rows()
    rows.loc[(rows.split == "test") & (rows["index"] == 7), "index"] = 3
    rows.to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(
        RashomonError, match=r"1 repeated, e.g. 3; 1 image\(s\) without a row, e.g. 7"
    ):
        load(tmp_path, attributes_csv=tmp_path / "attrs.csv")


def test_attribute_csv_unknown_split_and_empty_file(tmp_path):
    write_npz(tmp_path)
    rows = _attribute_rows()
    rows.loc[rows.split == "val", "split"] = "validation"
    rows.to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(RashomonError, match=r"unknown split value\(s\) \['validation'\]"):
        load(tmp_path, attributes_csv=tmp_path / "attrs.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(RashomonError, match="empty.csv is empty; write a header split,index") as e:
        load(tmp_path, attributes_csv=tmp_path / "empty.csv")
    one_line(e)


def test_real_attributes_are_not_derived(tmp_path):
    # 20 images in every split: 10 per site (MIN_GROUP), so the attribute can be measured
    rng = np.random.default_rng(1)
    twenty = {
        f"{s}_{k}": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
        if k == "images"
        else (np.arange(20) % 2).reshape(-1, 1).astype(np.uint8)
        for s in ("val", "test")
        for k in ("images", "labels")
    }
    write_npz(tmp_path, **twenty)
    rows = [{"split": s, "index": i, "site": "AB"[i % 2]} for s in SIZES for i in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "attrs.csv", index=False)
    task = load(tmp_path, attributes_csv=tmp_path / "attrs.csv")
    assert {k: a.derived for k, a in task.attributes.items()} == {
        "intensity": True,
        "random": True,
        "site": False,
    }
    assert task.attributes["site"].label == "site"
    assert task.test.groups["site"].tolist() == [i % 2 for i in range(20)]


# --- property-based tests of the validators ---------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6)


@FAST
@given(hnp.arrays(np.uint8, shapes))
def test_uint8_round_trips_to_the_documented_scaling(u):
    from rashomon.data.task import images_to_tensor
    from rashomon.data.validate import check_images

    raw = check_images(u, "images")
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, u)
    x = images_to_tensor(raw).numpy()[:, 0]
    np.testing.assert_allclose(x, u / 127.5 - 1.0, atol=1e-6)
    assert x.min() >= -1.0 and x.max() <= 1.0


@FAST
@given(hnp.arrays(np.uint8, shapes), st.sampled_from([np.float32, np.float64]))
def test_unit_floats_map_like_their_bytes(u, dtype):
    from rashomon.data.task import images_to_tensor
    from rashomon.data.validate import check_images

    f = (u / 255.0).astype(dtype)
    np.testing.assert_array_equal(check_images(f, "images"), u)  # exact for bytes / 255
    x_float = images_to_tensor(check_images(f, "images"))
    x_byte = images_to_tensor(u)
    assert float((x_float - x_byte).abs().max()) <= 1 / 255


@FAST
@given(hnp.arrays(np.float64, shapes, elements=st.floats(0.0, 1.0)))
def test_any_unit_float_is_within_rounding_of_its_value(f):
    from rashomon.data.task import images_to_tensor
    from rashomon.data.validate import check_images

    x = images_to_tensor(check_images(f, "images")).numpy()[:, 0]
    np.testing.assert_allclose(x, 2 * f - 1, atol=1 / 255 + 1e-6)  # half a step of 2/255


@FAST
@given(
    st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32]),
    hnp.arrays(np.int64, shapes, elements=st.integers(-1000, 1000)),
)
def test_wide_integers_are_kept_only_in_byte_range(dtype, values):
    from rashomon.data.validate import check_images

    info = np.iinfo(dtype)
    arr = np.clip(values, info.min, info.max).astype(dtype)
    if arr.min() >= 0 and arr.max() <= 255:
        np.testing.assert_array_equal(check_images(arr, "images"), arr.astype(np.uint8))
    else:
        with pytest.raises(RashomonError, match=r"outside 0\.\.255") as exc:
            check_images(arr, "images")
        one_line(exc)


@FAST
@given(hnp.arrays(np.float64, shapes, elements=st.floats(-300, 300, allow_nan=False)))
def test_floats_outside_both_scales_always_raise(f):
    from rashomon.data.validate import check_images

    valid = (f.min() >= 0 and f.max() <= 1) or (
        f.min() >= 0 and f.max() <= 255 and np.array_equal(f, np.rint(f))
    )
    if valid:
        out = check_images(f, "images")
        assert out.dtype == np.uint8
    else:
        with pytest.raises(RashomonError) as exc:
            check_images(f, "images")
        one_line(exc)


@FAST
@given(
    st.sampled_from([bool, np.complex128, np.str_, object, "datetime64[s]"]),
    st.integers(1, 4),
)
def test_other_dtypes_always_raise(dtype, n):
    from rashomon.data.validate import check_images

    arr = np.zeros((n, 3, 3), dtype=dtype)
    with pytest.raises(RashomonError, match="dtype") as exc:
        check_images(arr, "images")
    one_line(exc)


@FAST
@given(hnp.array_shapes(min_dims=1, max_dims=5, max_side=5))
def test_wrong_image_shapes_always_raise(shape):
    from rashomon.data.validate import check_images

    ok = len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))
    arr = np.zeros(shape, np.uint8)
    if ok and min(shape) > 0:
        assert check_images(arr, "images").shape == shape
    else:
        with pytest.raises(RashomonError) as exc:
            check_images(arr, "images")
        one_line(exc)


@FAST
@given(hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-2, 6, allow_nan=False)))
def test_labels_are_whole_in_range_or_refused(y):
    from rashomon.data.validate import check_labels

    n_out = 4
    if np.array_equal(y, np.rint(y)) and y.min() >= 0 and y.max() < n_out:
        out = check_labels(y, "multiclass", n_out, "labels")
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, y)
    else:
        with pytest.raises(RashomonError) as exc:
            check_labels(y, "multiclass", n_out, "labels")
        one_line(exc)


@FAST
@given(st.integers(1, 40), st.data())
def test_split_index_accepts_exactly_the_permutations(n, data):
    from rashomon.data.validate import check_split_index

    perm = data.draw(st.permutations(list(range(n))))
    check_split_index(pd.Series(perm), n, "train", "attribute CSV")
    other = data.draw(st.lists(st.integers(-2, n + 2), min_size=0, max_size=n + 2))
    if sorted(other) == list(range(n)):
        return
    with pytest.raises(RashomonError) as exc:
        check_split_index(pd.Series(other, dtype=float), n, "train", "attribute CSV")
    one_line(exc)


# --- the same image in two splits --------------------------------------------------------------


def test_test_images_identical_to_train_images_are_refused_above_one_percent(tmp_path):
    # main: test images that are also train images loaded without a word (train/test leakage)
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
    test[[2, 5]] = train[[0, 7]]
    write_npz(tmp_path, train_images=train, test_images=test)
    with pytest.raises(
        RashomonError,
        match=r"2 of 8 test images \(25 %\) are identical to train or val images.*test 2 = "
        r"train 0.*allow_overlap: true",
    ) as exc:
        load(tmp_path)
    one_line(exc)
    with pytest.warns(DataWarning, match=r"2 of 8 test images \(25 %\) are identical"):
        task = load(tmp_path, allow_overlap=True)
    assert len(task.test) == 8
    # one in 200 (0.5 %, as BreastMNIST's one image in both train and test) warns and loads
    big = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    big[10] = train[3]
    labels = (np.arange(200) % 2).reshape(-1, 1).astype(np.uint8)
    write_npz(tmp_path, train_images=train, test_images=big, test_labels=labels)
    with pytest.warns(DataWarning, match=r"1 of 200 test images \(0.5 %\) are identical"):
        load(tmp_path)
    # validation images found in train are only counted: selection on them is optimistic, the
    # reported test numbers are not (PneumoniaMNIST has 8 of 524)
    val = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
    val[:3] = train[:3]
    write_npz(tmp_path, train_images=train, val_images=val)
    with pytest.warns(DataWarning, match=r"3 of 8 val images \(38 %\) are identical to train"):
        load(tmp_path)


def test_overlap_of_the_real_medmnist_files(data_root, real_data):
    if not real_data:
        pytest.skip("the real MedMNIST files are not here")
    with pytest.warns(DataWarning, match=r"1 of 156 test images \(0.6 %\) are identical"):
        load(data_root)
    with pytest.warns(DataWarning, match=r"8 of 524 val images \(1.5 %\) are identical to train"):
        load(data_root, "pneumoniamnist")
