"""User data: a folder of images and a label CSV `path,label,split[,attribute columns]`.

- The label file is `<folder>/labels.csv` unless `labels` names another: a bare name is looked up
  in the folder (`labels-binary.csv`), a path is used as given. Image paths in it are relative to
  the folder.
- Class names come from a classes file beside the label file, one name per line in label order:
  for `labels-X-Y.csv` the first of `classes-X-Y.txt`, `classes-X.txt`, `classes.txt` that
  exists (the longest matching suffix wins, so `labels-binary-medfair.csv` takes
  `classes-binary.txt` when there is no `classes-binary-medfair.txt`); for another name
  `name.csv`, `classes-name.txt` then `classes.txt`.
- Channels follow the images unless given: 1 when every image is grey (a one-band mode, or three
  equal bands), else 3 (grey images then repeat their band).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from PIL import Image

from rashomon.data.groups import (
    RESERVED,
    add_attributes_from_frame,
    add_derived_attributes,
    plan_attribute,
    reserved_plans,
)
from rashomon.data.medmnist import split_from_arrays
from rashomon.data.task import Task, TaskKind, absolute
from rashomon.data.validate import (
    SPLITS,
    check_class_balance,
    check_split_column,
    check_split_overlap,
    image_values_to_uint8,
    line_number,
    read_csv,
)
from rashomon.errors import RashomonError

REQUIRED = ("path", "label", "split")
HEADER = "path,label,split"
DEFAULT_LABELS = "labels.csv"
LABEL_GLOB = "labels*.csv"
GREY_MODES = frozenset({"1", "L", "LA", "La"})


def label_csv_path(folder: str | Path, labels: str | Path | None = None) -> Path:
    """The label CSV of a folder task: `labels.csv`, a bare name in the folder, or a path."""
    folder = Path(folder).expanduser()
    if labels is None:
        return folder / DEFAULT_LABELS
    path = Path(labels).expanduser()
    if not path.is_absolute() and len(path.parts) == 1:
        return folder / path
    return path


def _missing_label_csv(path: Path, folder: Path) -> RashomonError:
    found = sorted(p.name for p in folder.glob(LABEL_GLOB)) if folder.is_dir() else []
    fix = f"label files in {folder}: {', '.join(found)}" if found else "write path,label,split rows"
    return RashomonError(f"label CSV {path} does not exist; {fix}")


def classes_file_candidates(csv_path: Path) -> list[Path]:
    """Classes files that may name the classes of `csv_path`, most specific first."""
    stem = csv_path.stem
    if stem.startswith("labels"):
        rest = stem[len("labels") :]
        cuts = [m.start() for m in re.finditer(r"[-_.]", rest)] + [len(rest)]
        suffixes = sorted({rest[:c] for c in cuts}, key=len, reverse=True)
        names = [f"classes{s}.txt" for s in suffixes]
    else:
        names = [f"classes-{stem}.txt", "classes.txt"]
    return [csv_path.with_name(n) for n in dict.fromkeys(names)]


def classes_file(csv_path: Path) -> Path | None:
    """The classes file of a label CSV (see the module docstring), or None."""
    return next((p for p in classes_file_candidates(csv_path) if p.is_file()), None)


def read_class_names(path: Path) -> tuple[str, ...]:
    """One class name per non-blank line, in label order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RashomonError(f"cannot read classes file {path} ({exc}); save it as UTF-8") from exc
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise RashomonError(f"classes file {path} is empty; write one class name per line")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RashomonError(
            f"classes file {path} names {repeated[0]!r} more than once; give each class one line"
        )
    return names


def read_label_frame(folder: Path, csv_path: Path, check_images: bool = True) -> pd.DataFrame:
    """The label CSV with its columns, split values and (optionally) image paths checked."""
    if not csv_path.is_file():
        raise _missing_label_csv(csv_path, folder)
    frame = read_csv(csv_path, "label CSV", HEADER)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise RashomonError(f"{csv_path} lacks column(s) {missing}; it needs {HEADER}")
    check_split_column(frame, csv_path, "label CSV")
    for s in SPLITS:
        if not (frame["split"] == s).any():
            raise RashomonError(f"{csv_path} has no {s!r} rows; every split needs images")
    if frame["path"].isna().any():
        row = line_number(frame, int(np.flatnonzero(frame["path"].isna().to_numpy())[0]))
        raise RashomonError(f"{csv_path} line {row} has no path; give every row an image path")
    if check_images:
        absent = [p for p in frame["path"] if not (folder / p).is_file()]
        if absent:
            raise RashomonError(
                f"{len(absent)} image(s) in {csv_path} are missing from {folder}, e.g. "
                f"{absent[0]}; fix the paths or the folder"
            )
    return frame  # indexed by line number - 2 (`line_number`)


def parse_labels(frame: pd.DataFrame, csv_path: Path) -> tuple[np.ndarray, TaskKind, int]:
    """Labels [N] (or [N, L] 0/1), the task kind and the number of classes (labels) they imply.
    Empty, non-numeric and fractional labels are errors naming the line."""
    col = frame["label"]
    if col.isna().any():
        line = line_number(frame, int(np.flatnonzero(col.isna().to_numpy())[0]))
        raise RashomonError(f"{csv_path} line {line} has no label; give every image a label")
    text = col.astype(str).str.strip()
    if text.str.contains("|", regex=False).any():
        parts = [t.split("|") for t in text]
        widths = {len(p) for p in parts}
        if len(widths) > 1:
            i = next(i for i, p in enumerate(parts) if len(p) != len(parts[0]))
            line, first = line_number(frame, i), line_number(frame, 0)
            raise RashomonError(
                f"{csv_path} line {line} has {len(parts[i])} multilabel values but line {first} "
                f"has {len(parts[0])}; give every image the same |-separated 0/1 list"
            )
        values = pd.to_numeric(pd.Series([v for p in parts for v in p]), errors="coerce")
        labels = values.to_numpy(dtype=float).reshape(len(parts), -1)
        kind: TaskKind = "multilabel"
    else:
        labels = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        kind = "multiclass"
    flat = labels.reshape(len(labels), -1)
    bad = np.isnan(flat).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RashomonError(
            f"{csv_path} line {line_number(frame, i)}: label {text.iloc[i]!r} is not a class "
            "index; labels are integers 0..C-1 (names go in a classes.txt beside the label file)"
        )
    frac = (flat != np.rint(flat)).any(axis=1)
    if frac.any():
        i = int(np.flatnonzero(frac)[0])
        raise RashomonError(
            f"{csv_path} line {line_number(frame, i)}: label {text.iloc[i]!r} is fractional; "
            "labels are whole class indices 0..C-1 (or |-separated 0/1 for multilabel): fix the "
            "label file"
        )
    if (flat < 0).any():
        i = int(np.flatnonzero((flat < 0).any(axis=1))[0])
        raise RashomonError(
            f"{csv_path} line {line_number(frame, i)}: negative label {text.iloc[i]!r}; use 0..C-1"
        )
    labels = labels.astype(np.int64)
    if kind == "multilabel":
        return labels, kind, labels.shape[1]
    n_out = max(int(labels.max()) + 1, 2)
    return labels, ("binary" if n_out == 2 else "multiclass"), n_out


def folder_class_names(
    csv_path: Path, kind: TaskKind, n_out: int
) -> tuple[tuple[str, ...], Path | None]:
    """Class names from the classes file (and that file), else "0", "1", ... (and None)."""
    path = classes_file(csv_path)
    if path is None:
        return tuple(str(i) for i in range(n_out)), None
    names = read_class_names(path)
    if len(names) != n_out:
        what = "labels" if kind == "multilabel" else "classes"
        implied = "values per row" if kind == "multilabel" else f"labels 0..{n_out - 1}"
        raise RashomonError(
            f"classes file {path} names {len(names)} {what} but {csv_path.name} has {n_out} "
            f"({implied}); give one name per line in label order (for labels-X.csv, in "
            "classes-X.txt)"
        )
    return names, path


def check_classes_used(
    labels: np.ndarray, kind: TaskKind, n_out: int, csv_path: Path, classes_path: Path | None
) -> None:
    """Without a classes file, every class index 0..C-1 must label some image: labels 1/2 are
    otherwise read as 3 classes, class 0 empty in every split (1-based labels, or a gap left
    by a dropped class). A classes file that names the empty class says it is meant."""
    if kind == "multilabel" or classes_path is not None:
        return
    found = np.unique(labels)
    absent = np.setdiff1d(np.arange(n_out), found)
    if not len(absent) or len(found) < 2:  # a single class: check_class_balance says so
        return
    shown = ", ".join(str(int(v)) for v in found[:10]) + (", ..." if len(found) > 10 else "")
    if np.array_equal(found, np.arange(1, n_out)):
        fix = f"relabel 1..{n_out - 1} to 0..{n_out - 2}"
    else:
        fix = f"relabel them to 0..{len(found) - 1}"
    names = classes_file_candidates(csv_path)[-1].name
    raise RashomonError(
        f"{csv_path}: class {int(absent[0])} has no image in any split (labels found: {shown}); "
        f"labels are 0-based class indices: {fix} or name every class, the empty one too, in "
        f"{names} beside the label file"
    )


def _read_image(path: Path, size: int, channels: int | None) -> np.ndarray:
    """One image resized to size × size: [H, W] for channels 1, [H, W, 3] for 3; for None, [H, W]
    when its mode is grey, else [H, W, 3]."""
    try:
        with Image.open(path) as opened:
            img: Image.Image = opened
            if img.mode in ("I", "F") or img.mode.startswith("I;16"):
                # PIL's convert("L") clips wide values at 255; validate them as for npz images
                arr = image_values_to_uint8(np.asarray(img), f"the pixels of {path}")
                img = Image.fromarray(arr)
            target = {1: "L", 3: "RGB"}.get(channels or 0) or (
                "L" if img.mode in GREY_MODES else "RGB"
            )
            out = img.convert(target).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(out, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise RashomonError(f"cannot read image {path} ({exc}); fix or remove its CSV row") from exc


def _is_grey(image: np.ndarray) -> bool:
    return image.ndim == 2 or bool(
        (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    )


def read_images(
    paths: list[Path], size: int, channels: int | None = None
) -> tuple[np.ndarray, int]:
    """uint8 images [N, H, W] (1 channel) or [N, H, W, 3] and their channel count; `channels`
    None decides it from the images (all grey → 1, any colour → 3)."""
    if channels not in (None, 1, 3):
        raise RashomonError(f"channels must be 1 or 3, got {channels}; or leave it unset")
    images = [_read_image(p, size, channels) for p in paths]
    if channels is None:
        channels = 1 if all(_is_grey(im) for im in images) else 3
        if channels == 1:
            images = [im if im.ndim == 2 else im[..., 0] for im in images]
        else:
            images = [im if im.ndim == 3 else np.repeat(im[..., None], 3, axis=2) for im in images]
    return np.stack(images), channels


def attribute_columns(frame: pd.DataFrame) -> tuple[tuple[str, ...], list[str]]:
    """The label CSV's columns beyond path,label,split: those left unread for their reserved
    name (`index`), and the candidate attributes (`rashomon.data.groups.plan_attribute`)."""
    reserved = tuple(c for c in RESERVED if c in frame.columns)
    extra = [c for c in frame.columns if c not in (*REQUIRED, *RESERVED)]
    return reserved, extra


def folder_files(folder: str | Path, labels: str | Path | None = None) -> list[Path]:
    """The files `load_folder` reads, in order, without decoding an image: the label CSV, its
    classes file (when there is one) and every image."""
    folder = Path(folder).expanduser()
    csv_path = label_csv_path(folder, labels)
    frame = read_label_frame(folder, csv_path, check_images=False)
    _, kind, n_out = parse_labels(frame, csv_path)
    _, classes_path = folder_class_names(csv_path, kind, n_out)
    files = [csv_path] + ([classes_path] if classes_path else [])
    return [Path(absolute(p)) for p in (*files, *(folder / p for p in frame["path"]))]


def label_columns_digest(csv_path: Path) -> str:
    """sha256 of a label CSV's path, label and split columns, row by row, as written: what
    training reads of it. Its other columns are patient attributes, which only the stages from
    evaluate on read, so editing one changes this digest only when a row's image, label or split
    changes (`rashomon.run.DataIdentity`)."""
    import hashlib

    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RashomonError(
            f"label CSV {csv_path} is not a readable CSV ({exc}); save it as UTF-8 CSV with the "
            f"header {HEADER}"
        ) from exc
    kept = frame[[c for c in REQUIRED if c in frame.columns]]
    return hashlib.sha256(kept.to_csv(index=False).encode()).hexdigest()


def load_folder(
    folder: str | Path,
    labels: str | Path | None = None,
    size: int = 28,
    channels: int | None = None,
    seed: int = 0,
    name: str | None = None,
    allow_overlap: bool = False,
) -> Task:
    """Load images listed in a label CSV (default `<folder>/labels.csv`) as a Task.

    `label` holds class indices 0..C-1, or for multilabel tasks a `|`-separated list of 0/1
    values. Extra columns become patient attributes (real, `derived=False`) where they can be
    measured (`rashomon.data.groups.plan_attribute`). An image in two splits (the same path,
    or the same pixels) is counted (`check_split_overlap`; `allow_overlap` lets a test split
    with more than 1 % of train or val images load). See the module docstring for the label
    file, the classes file and the channels.
    """
    folder = Path(folder).expanduser()
    if int(size) != size or size < 1:
        raise RashomonError(f"size must be a positive number of pixels, got {size}; e.g. 28")
    csv_path = label_csv_path(folder, labels)
    frame = read_label_frame(folder, csv_path)
    y, kind, n_out = parse_labels(frame, csv_path)
    class_names, classes_path = folder_class_names(csv_path, kind, n_out)
    check_classes_used(y, kind, n_out, csv_path, classes_path)
    reserved, extra = attribute_columns(frame)
    frame["index"] = frame.groupby("split").cumcount()
    paths = [folder / p for p in frame["path"]]
    images, channels = read_images(paths, size, channels)
    splits = {}
    for s in SPLITS:
        rows = np.flatnonzero((frame["split"] == s).to_numpy())  # positions in `images`
        splits[s] = split_from_arrays(images[rows], y[rows], kind, n_out, what=f"{csv_path} {s}")
    check_class_balance({s: splits[s].y.numpy() for s in SPLITS}, kind, n_out, class_names)
    names = {s: frame.loc[frame["split"] == s, "path"].astype(str).tolist() for s in SPLITS}
    raws = {s: cast(np.ndarray, splits[s].raw) for s in SPLITS}  # split_from_arrays keeps raw
    check_split_overlap(raws, csv_path.name, allow_overlap, names)
    files = [csv_path] + ([classes_path] if classes_path else []) + paths
    task = Task(
        name=name or Path(absolute(folder)).name,
        kind=kind,
        num_classes=n_out,
        class_names=class_names,
        size=int(size),
        source=str(csv_path),
        files=tuple(absolute(p) for p in files),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
    )
    add_derived_attributes(task, seed=seed)
    if extra or reserved:
        add_attributes_from_frame(
            task,
            frame,
            extra,
            what=f"label CSV {csv_path}",
            origin=csv_path.name,
            reserved=reserved,
            always_note=True,
        )
    return task


def label_files(folder: Path) -> list[Path]:
    """The `labels*.csv` files of a folder whose header has path, label and split."""
    found = []
    # labels.csv, the default, first
    for path in sorted(
        Path(folder).glob(LABEL_GLOB), key=lambda p: (p.name != DEFAULT_LABELS, p.name)
    ):
        try:
            columns = pd.read_csv(path, nrows=0).columns
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError):
            continue
        if all(c in columns for c in REQUIRED):
            found.append(path)
    return found


def find_folder_tasks(root: str | Path) -> list[Path]:
    """Folder tasks at `root` or one level below it."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    return [p for p in candidates if label_files(p)]


def describe_attributes(frame: pd.DataFrame, origin: str) -> dict[str, list[str]]:
    """`attributes`: the label CSV's columns that loading takes as patient attributes;
    `attribute_notes`: one line per column binned or not taken, with why."""
    reserved, extra = attribute_columns(frame)
    plans = [plan_attribute(frame, c, origin) for c in extra] + reserved_plans(reserved)
    return {
        "attributes": [p.column for p in plans if p.taken],
        "attribute_notes": [p.note for p in plans if p.note],
    }


def describe_folder(folder: str | Path) -> list[dict]:
    """One summary per label file of a folder task, reading only the CSVs and classes files:
    label file, kind, class names, split sizes, attribute columns, missing images, or the error
    that loading it would raise."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise RashomonError(f"{folder} is not a folder; pass a folder with a labels.csv")
    files = label_files(folder)
    if not files:
        raise RashomonError(
            f"{folder} has no label CSV (labels*.csv with columns {HEADER}); write one"
        )
    out = []
    for csv_path in files:
        entry: dict = {"folder": str(folder), "labels": csv_path.name}
        try:
            frame = read_label_frame(folder, csv_path, check_images=False)
            y, kind, n_out = parse_labels(frame, csv_path)
            names, classes_path = folder_class_names(csv_path, kind, n_out)
            check_classes_used(y, kind, n_out, csv_path, classes_path)
            missing = sum(not (folder / p).is_file() for p in frame["path"])
            entry.update(
                kind=kind,
                classes=list(names),
                classes_file=classes_path.name if classes_path else None,
                sizes={s: int((frame["split"] == s).sum()) for s in SPLITS},
                **describe_attributes(frame, csv_path.name),
                missing_images=int(missing),
            )
        except RashomonError as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out
