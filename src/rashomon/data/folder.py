"""User data: a folder of images and a CSV `path,label,split[,attribute columns]`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rashomon.data.groups import add_attributes_from_frame, add_derived_attributes
from rashomon.data.medmnist import split_from_arrays
from rashomon.data.task import Task
from rashomon.errors import RashomonError

REQUIRED = ("path", "label", "split")


def _read_image(path: Path, size: int, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise RashomonError(f"cannot read image {path} ({exc}); fix or remove its CSV row") from exc


def load_folder(
    folder: str | Path,
    csv: str | Path | None = None,
    size: int = 28,
    channels: int = 1,
    seed: int = 0,
    name: str | None = None,
) -> Task:
    """Load images listed in a CSV (default `<folder>/labels.csv`) as a Task.

    `label` holds class indices 0..C-1, or for multilabel tasks a `|`-separated list of 0/1
    values. Extra columns become patient attributes.
    """
    folder = Path(folder)
    csv_path = Path(csv) if csv is not None else folder / "labels.csv"
    if not csv_path.exists():
        raise RashomonError(f"label CSV {csv_path} does not exist; write path,label,split rows")
    frame = pd.read_csv(csv_path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise RashomonError(f"{csv_path} lacks column(s) {missing}; it needs path,label,split")
    bad_split = sorted(set(frame["split"]) - {"train", "val", "test"})
    if bad_split:
        raise RashomonError(f"{csv_path}: unknown split value(s) {bad_split}; use train, val, test")
    for s in ("train", "val", "test"):
        if not (frame["split"] == s).any():
            raise RashomonError(f"{csv_path} has no {s!r} rows; every split needs images")
    absent = [p for p in frame["path"] if not (folder / p).exists()]
    if absent:
        raise RashomonError(
            f"{len(absent)} image(s) in {csv_path} are missing from {folder}, e.g. {absent[0]}; "
            "fix the paths or the folder"
        )
    multilabel = frame["label"].astype(str).str.contains(r"\|").any()
    if multilabel:
        labels = np.stack([np.array(str(v).split("|"), dtype=np.int64) for v in frame["label"]])
        kind, n_out = "multilabel", labels.shape[1]
    else:
        try:
            labels = frame["label"].astype(np.int64).to_numpy()
        except ValueError as exc:
            raise RashomonError(f"{csv_path}: labels must be integers 0..C-1") from exc
        n_out = int(labels.max()) + 1
        kind = "binary" if n_out <= 2 else "multiclass"
        n_out = max(n_out, 2)
        if labels.min() < 0:
            raise RashomonError(f"{csv_path}: negative label {labels.min()}; use 0..C-1")
    splits = {}
    frame = frame.reset_index(drop=True)
    frame["index"] = frame.groupby("split").cumcount()
    for s in ("train", "val", "test"):
        rows = frame.index[frame["split"] == s].to_numpy()
        images = np.stack([_read_image(folder / frame.at[i, "path"], size, channels) for i in rows])
        splits[s] = split_from_arrays(images, labels[rows], kind, n_out)
    task = Task(
        name=name or folder.name,
        kind=kind,
        num_classes=n_out,
        class_names=tuple(str(i) for i in range(n_out)),
        size=size,
        source=str(csv_path),
        **splits,
    )
    add_derived_attributes(task, seed=seed)
    extra = [c for c in frame.columns if c not in (*REQUIRED, "index")]
    if extra:
        add_attributes_from_frame(task, frame, extra)
    return task
