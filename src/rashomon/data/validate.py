"""Checks of raw task inputs (image arrays, label arrays, class counts) before they become tensors.

Each check either returns the input in the one form the rest of the package uses (uint8 images,
int64 labels) or raises a one-line `RashomonError` naming the problem and the fix. Nothing is
cast silently: a cast that would change a value (float → uint8 truncation, int32 wrapping
mod 256, 0.5 → 0) is an error instead.

Image values, by dtype:
- uint8: kept as is.
- float with every value in [0, 1]: scaled by 255 and rounded to the nearest integer (so a
  uint8 image divided by 255 comes back exactly). An all-0/1 float array counts as [0, 1].
- float in [0, 255] with whole-number values: kept as those integers.
- other integer dtypes (and bool never): kept when every value is in [0, 255].
- anything else (negative or non-finite floats, fractional values above 1, complex, bool,
  strings, objects): an error.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from rashomon.errors import RashomonError

SPLITS = ("train", "val", "test")


class DataWarning(UserWarning):
    """Input that works but weakens the audit (e.g. a class absent from one split)."""


def _value_range(arr: np.ndarray) -> str:
    return f"[{arr.min():g}, {arr.max():g}]"


def image_values_to_uint8(
    images: np.ndarray, what: str, unit_range: bool | None = None
) -> np.ndarray:
    """Image values as uint8 by the rules of this module's docstring (shape is not checked).

    `unit_range` says whether float values are on the [0, 1] scale; by default it is read from
    `images`. Loaders decide it once for all splits of a task (`float_unit_range`), so a dark
    split of a [0, 255] float file is not mistaken for a [0, 1] one."""
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        return arr
    if arr.size == 0:
        return arr.astype(np.uint8)
    kind = arr.dtype.kind
    if kind in "iu":
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 255:
            raise RashomonError(
                f"{what} are {arr.dtype} with values in {_value_range(arr)}, outside 0..255; "
                "rescale them to uint8 0..255 (or float 0..1)"
            )
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise RashomonError(
                f"{what} hold NaN or infinite values; replace them before saving the images"
            )
        lo, hi = float(arr.min()), float(arr.max())
        if unit_range is None:
            unit_range = lo >= 0.0 and hi <= 1.0
        if unit_range and lo >= 0.0 and hi <= 1.0:
            return np.rint(arr * 255.0).astype(np.uint8)
        if lo >= 0.0 and hi <= 255.0:
            if not np.array_equal(arr, np.rint(arr)):
                raise RashomonError(
                    f"{what} are {arr.dtype} in {_value_range(arr)} with fractional values; "
                    "give whole numbers 0..255 or floats scaled to [0, 1]"
                )
            return arr.astype(np.uint8)
        raise RashomonError(
            f"{what} are {arr.dtype} with values in {_value_range(arr)}; give uint8 0..255 or "
            "floats in [0, 1] (undo any normalisation first)"
        )
    raise RashomonError(f"{what} have dtype {arr.dtype}; give uint8 0..255 or floats in [0, 1]")


def float_unit_range(arrays: list[np.ndarray]) -> bool:
    """Whether the float arrays among `arrays` are all on the [0, 1] scale (True when none is
    float or all are empty)."""
    floats = [np.asarray(a) for a in arrays if np.asarray(a).dtype.kind == "f" and np.size(a)]
    finite = [a for a in floats if np.isfinite(a).all()]
    return all(float(a.min()) >= 0.0 and float(a.max()) <= 1.0 for a in finite)


def check_images(
    images: np.ndarray, what: str, size: int | None = None, unit_range: bool | None = None
) -> np.ndarray:
    """Validate one split's images: shape [N, H, W] or [N, H, W, 1|3] with N ≥ 1 and, when
    `size` is given, H = W = size. Returns uint8 images (see `image_values_to_uint8`)."""
    arr = np.asarray(images)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3)):
        raise RashomonError(
            f"{what} have shape {arr.shape}; expected [N, H, W] (grey) or [N, H, W, 1|3] "
            "(one image per row): the file is damaged or not in the MedMNIST layout"
        )
    if arr.shape[0] == 0:
        raise RashomonError(f"{what}: none, the split is empty; every split needs at least one")
    h, w = arr.shape[1:3]
    if h == 0 or w == 0:
        raise RashomonError(f"{what} are {h}×{w} pixels; give images of at least 1×1 pixel")
    if size is not None and (h, w) != (size, size):
        raise RashomonError(
            f"{what} are {h}×{w} but size {size} was requested; pass size {h} (--size {h}) "
            f"if the file is meant to be {h} px, or replace it with the {size} px file"
        )
    return image_values_to_uint8(arr, what, unit_range)


def check_labels(labels: np.ndarray, kind: str, n_out: int, what: str) -> np.ndarray:
    """Labels as int64: [N] class indices 0..n_out-1, or [N, n_out] 0/1 for multilabel.
    Fractional, non-finite or out-of-range values are errors, never truncated."""
    arr = np.asarray(labels)
    if arr.ndim == 0:
        raise RashomonError(f"{what} is a single value; give one label per image")
    arr = arr.reshape(len(arr), -1)
    if arr.dtype.kind not in "biuf":
        raise RashomonError(f"{what} have dtype {arr.dtype}; give integer class indices")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise RashomonError(f"{what} hold NaN or infinite values; give a label for every image")
        frac = arr != np.rint(arr)
        if frac.any():
            raise RashomonError(
                f"{what} hold fractional value(s) such as {arr[frac][0]:g}; labels are whole "
                "class indices 0..C-1 (or 0/1 per label for multilabel): fix the label file"
            )
    if kind == "multilabel":
        if arr.shape[1] != n_out:
            raise RashomonError(
                f"{what} have {arr.shape[1]} column(s) but the task has {n_out} labels; "
                "give one 0/1 column per label"
            )
        bad = ~np.isin(arr, (0, 1))
        expected = f"this multilabel task takes 0/1 for each of its {n_out} labels"
    else:
        if arr.shape[1] != 1:
            raise RashomonError(
                f"{what} have {arr.shape[1]} columns but a {kind} task takes one class index "
                "per image; give labels of shape [N] or [N, 1]"
            )
        arr = arr[:, 0]
        bad = (arr < 0) | (arr >= n_out)
        expected = f"this {kind} task has {n_out} classes (0..{n_out - 1})"
    if bad.any():
        found = np.unique(arr[bad])[:5]
        raise RashomonError(
            f"labels out of range: {what} hold {', '.join(f'{v:g}' for v in found)} but "
            f"{expected}; check the label file"
        )
    return arr.astype(np.int64)


def class_counts(y: np.ndarray, kind: str, n_out: int) -> np.ndarray:
    """Images per class [n_out] (multilabel: positives per label)."""
    y = np.asarray(y)
    if kind == "multilabel":
        return y.reshape(len(y), -1).sum(axis=0).astype(np.int64)
    return np.bincount(y.reshape(-1), minlength=n_out)


def _counts_text(counts: np.ndarray, names: tuple[str, ...]) -> str:
    names = names or tuple(str(i) for i in range(len(counts)))
    return ", ".join(f"{n!r}: {int(c)}" for n, c in zip(names, counts, strict=True))


def check_class_balance(
    labels: dict[str, np.ndarray], kind: str, n_out: int, class_names: tuple[str, ...] = ()
) -> None:
    """A split whose images all have one class (or, multilabel, a label that is all 0 or all 1
    in train) cannot train or audit a classifier: accuracy is trivially 100 % and AUROC and
    calibration per class are undefined. That is an error for every split: val picks the
    Rashomon set by loss and test carries every reported number. A class missing from a split
    that still holds two or more classes is common for rare diseases, so it only warns."""
    for split, y in labels.items():
        counts = class_counts(y, kind, n_out)
        n = len(y)
        if kind == "multilabel":
            constant = [j for j, c in enumerate(counts) if c in (0, n)]
            if constant and split == "train":
                j = constant[0]
                name = class_names[j] if class_names else str(j)
                raise RashomonError(
                    f"label {name!r} is {int(counts[j] > 0)} for all {n} train images "
                    f"({len(constant)} such label(s)); drop the label or add images with both "
                    "values"
                )
            if constant:
                warnings.warn(
                    f"{len(constant)} label(s) are constant in the {split} split; their AUROC is "
                    "undefined there",
                    DataWarning,
                    stacklevel=2,
                )
            continue
        present = int((counts > 0).sum())
        if present < 2:
            raise RashomonError(
                f"the {split} split holds a single class (images per class "
                f"{_counts_text(counts, class_names)}); "
                "a classifier needs at least two classes in every split: fix the labels or "
                "the split"
            )
        if present < n_out:
            names = class_names or tuple(str(i) for i in range(n_out))
            absent = ", ".join(repr(names[c]) for c in np.flatnonzero(counts == 0))
            warnings.warn(
                f"the {split} split has no image of {n_out - present} of {n_out} classes "
                f"({absent}); metrics of those classes are undefined there",
                DataWarning,
                stacklevel=3,
            )


MAX_OVERLAP = 0.01  # share of test images also in train or val above which loading stops


def _row_digests(images: np.ndarray) -> list[bytes]:
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def check_split_overlap(
    raws: dict[str, np.ndarray],
    what: str,
    allow: bool = False,
    names: dict[str, list[str]] | None = None,
) -> None:
    """Images of one split identical (same uint8 pixels after loading) to an image of an earlier
    split: the same file listed in two splits, or a copy. Test images found in train or val
    score the model on what it trained or was selected on: a warning with the count, an error
    above `MAX_OVERLAP` of the test split unless `allow` (config `data.allow_overlap`). Val
    images found in train only warn (selection on them is optimistic; test numbers are not).
    `names` (file paths per split, folder tasks) name an example; else positions do."""
    digests = {s: _row_digests(raws[s]) for s in SPLITS}
    first: dict[bytes, tuple[str, int]] = {}
    for s in ("train", "val"):
        for i, d in enumerate(digests[s]):
            first.setdefault(d, (s, i))

    def name(split: str, i: int) -> str:
        return f"{names[split][i]} ({split})" if names else f"{split} {i}"

    for split, earlier in (("val", ("train",)), ("test", ("train", "val"))):
        found = [(i, first.get(d)) for i, d in enumerate(digests[split])]
        hits = [(i, f) for i, f in found if f is not None and f[0] in earlier]
        if not hits:
            continue
        n = len(digests[split])
        share = len(hits) / n
        pct = f"{100 * share:.1f}" if share < 0.1 else f"{100 * share:.0f}"
        i, (other, j) = hits[0]
        text = (
            f"{what}: {len(hits)} of {n} {split} images ({pct} %) are identical to "
            f"{' or '.join(earlier)} images, e.g. {name(split, i)} = {name(other, j)}"
        )
        if split == "test" and share > MAX_OVERLAP and not allow:
            raise RashomonError(
                f"{text}: the audit would score the model on images it trained or was selected "
                f"on; remove them from one split, or set allow_overlap: true (config data "
                "section) to audit anyway"
            )
        warnings.warn(
            f"{text}; their {split} results are optimistic (remove them from one split)",
            DataWarning,
            stacklevel=3,
        )


def line_number(frame: pd.DataFrame, position: int) -> int:
    """The file line of the row at `position` of a frame from `read_csv` (the header is line 1)."""
    return int(frame.index[position]) + 2


def read_csv(path: Path, what: str, needs: str) -> pd.DataFrame:
    """Read a CSV; an empty or unparsable file is a one-line error. `needs` describes the
    expected header for the fix (e.g. "path,label,split"). Rows with no value at all (",,,",
    blank lines) are dropped with a warning; the frame's index is the row's line number minus
    2 (`line_number`), so errors can name lines."""
    try:
        frame = pd.read_csv(path, skip_blank_lines=False)
    except pd.errors.EmptyDataError as exc:
        raise RashomonError(
            f"{what} {path} is empty; write a header {needs} and one row per image"
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RashomonError(
            f"{what} {path} is not a readable CSV ({reason}); save it as UTF-8 CSV with the "
            f"header {needs}"
        ) from exc
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.any():
        lines = [line_number(frame, int(i)) for i in np.flatnonzero(empty)]
        shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
        warnings.warn(
            f"{path.name}: {len(lines)} empty row(s) skipped (line {shown}); delete them to "
            "silence this",
            DataWarning,
            stacklevel=3,
        )
        frame = frame[~empty]
    return frame


def check_split_column(frame: pd.DataFrame, path: Path, what: str) -> None:
    """Every `split` value is train, val or test (errors name the line of a frame from
    `read_csv`)."""
    missing = frame["split"].isna().to_numpy()
    if missing.any():
        line = line_number(frame, int(np.flatnonzero(missing)[0]))
        raise RashomonError(
            f"{what} {path} line {line} has no split; give every row train, val or test"
        )
    values = frame["split"].astype(str)
    bad = sorted(set(values) - set(SPLITS))
    if bad:
        line = line_number(frame, int(np.flatnonzero(~values.isin(SPLITS).to_numpy())[0]))
        raise RashomonError(
            f"{what} {path}: unknown split value(s) {bad} (first on line {line}); use train, "
            "val, test"
        )


def check_split_index(index: pd.Series, n: int, split: str, what: str) -> None:
    """The `index` values of one split's rows must be 0..n-1, each once: the image's position
    within its split (not a row number of the whole file, not 1-based)."""
    values = pd.to_numeric(index, errors="coerce").to_numpy(dtype=float)
    if np.isnan(values).any() or (values != np.rint(values)).any():
        raise RashomonError(
            f"{what}: split {split!r} has non-integer index value(s); index is the image's "
            f"0-based position within its split (0..{n - 1})"
        )
    values = values.astype(np.int64)
    if len(values) != n:
        raise RashomonError(
            f"{what} has {len(values)} rows for split {split!r} but the task has {n} images; "
            f"give one row per image with index 0..{n - 1}"
        )
    if np.array_equal(np.sort(values), np.arange(n)):
        return
    uniq, counts = np.unique(values, return_counts=True)
    missing = np.setdiff1d(np.arange(n), values)
    outside = uniq[(uniq < 0) | (uniq >= n)]
    problems = []
    if len(outside):
        problems.append(f"{len(outside)} outside 0..{n - 1}, e.g. {outside[0]}")
    if (counts > 1).any():
        problems.append(f"{int((counts > 1).sum())} repeated, e.g. {uniq[counts > 1][0]}")
    if len(missing):
        problems.append(f"{len(missing)} image(s) without a row, e.g. {missing[0]}")
    hint = ""
    if np.array_equal(np.sort(values), np.arange(1, n + 1)):
        hint = " (they start at 1: subtract 1)"
    elif values.min() > 0 and np.array_equal(np.sort(values) - values.min(), np.arange(n)):
        hint = f" (they start at {values.min()}: number each split from 0, not the whole file)"
    raise RashomonError(
        f"{what}: the {n} rows of split {split!r} have index {values.min()}..{values.max()} "
        f"({'; '.join(problems)}) but must be 0..{n - 1}, one per image in split order{hint}"
    )
