"""Patient attributes: read from a CSV, or derived (`intensity`, `random`) when a task has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rashomon.data.task import GroupAttribute, Task, absolute
from rashomon.data.validate import check_split_column, check_split_index, read_csv
from rashomon.errors import RashomonError

SPLITS = ("train", "val", "test")
DERIVED = ("intensity", "random")


def intensity_tertiles(task: Task) -> tuple[float, float]:
    """Cut points of mean image intensity, taken on the training split only."""
    means = task.train.x.mean(dim=(1, 2, 3)).numpy()
    lo, hi = np.quantile(means, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def add_derived_attributes(task: Task, seed: int = 0) -> None:
    """Add `intensity` (tertile of mean intensity, an acquisition proxy) and `random`
    (a seeded 50/50 split, the null control for fairness gaps) to every split."""
    lo, hi = intensity_tertiles(task)
    rng = np.random.default_rng(seed)
    for s in SPLITS:
        split = task.split(s)
        means = split.x.mean(dim=(1, 2, 3))
        split.groups["intensity"] = (means > lo).long() + (means > hi).long()
        split.groups["random"] = torch.from_numpy(rng.integers(0, 2, len(split)).astype(np.int64))
    task.attributes["intensity"] = GroupAttribute(
        "intensity",
        ("low", "mid", "high"),
        derived=True,
        description="tertile of mean image intensity (cut points from train); an acquisition proxy",
    )
    task.attributes["random"] = GroupAttribute(
        "random",
        ("a", "b"),
        derived=True,
        description="seeded random 50/50 split; null control: its fairness gaps measure noise",
    )


def encode_levels(values: pd.Series, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map attribute values to int codes; levels sorted so codes are stable across splits."""
    if values.isna().any():
        raise RashomonError(f"attribute {name!r} has empty values; fill them or drop the column")
    levels = tuple(sorted(values.astype(str).unique()))
    lookup = {v: i for i, v in enumerate(levels)}
    return values.astype(str).map(lookup).to_numpy(np.int64), levels


def add_attributes_from_frame(
    task: Task,
    frame: pd.DataFrame,
    columns: list[str],
    what: str = "attribute CSV",
    origin: str = "CSV",
) -> None:
    """Attach attribute columns of a frame with `split` and `index` columns (one row per image).
    `what` names the frame's file in errors, `origin` (a file name) in the descriptions."""
    for s in SPLITS:
        check_split_index(frame.loc[frame["split"] == s, "index"], len(task.split(s)), s, what)
    frame = frame.assign(index=pd.to_numeric(frame["index"]).astype(np.int64))
    for col in columns:
        if col in task.attributes:
            raise RashomonError(f"attribute {col!r} already exists; rename the column")
        _, levels = encode_levels(frame[col], col)
        if len(levels) < 2:
            raise RashomonError(f"attribute {col!r} has a single value; it cannot split groups")
        lookup = {v: i for i, v in enumerate(levels)}
        for s in SPLITS:
            rows = frame[frame["split"] == s].sort_values("index")
            codes = rows[col].astype(str).map(lookup).to_numpy(np.int64)
            task.split(s).groups[col] = torch.tensor(codes, dtype=torch.int64)
        task.attributes[col] = GroupAttribute(
            col, levels, derived=False, description=f"from {origin}"
        )


def load_attribute_csv(task: Task, path: str | Path) -> None:
    """Read patient attributes from a CSV with columns `split,index,<attribute>...`."""
    path = Path(path)
    if not path.exists():
        raise RashomonError(f"attribute CSV {path} does not exist; check the path")
    frame = read_csv(path, "attribute CSV", "split,index,<attribute>...")
    missing = {"split", "index"} - set(frame.columns)
    if missing:
        raise RashomonError(
            f"attribute CSV {path} lacks column(s) {sorted(missing)}; "
            "it needs split,index and one column per attribute"
        )
    columns = [c for c in frame.columns if c not in ("split", "index")]
    if not columns:
        raise RashomonError(f"attribute CSV {path} has no attribute columns besides split,index")
    check_split_column(frame, path, "attribute CSV")
    add_attributes_from_frame(task, frame, columns, what=f"attribute CSV {path}", origin=path.name)
    task.files = (*task.files, absolute(path))
