"""Patient attributes: read from a CSV, or derived (`intensity`, `random`) when a task has none."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rashomon.data.task import GroupAttribute, Task, absolute
from rashomon.data.validate import (
    DataWarning,
    check_split_column,
    check_split_index,
    read_csv,
)
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


# Which columns of a CSV become patient attributes, and how (decided per column, `plan_attribute`):
# - more than MAX_LEVELS distinct values: a number is binned into tertiles of the train split
#   (three bands); anything else is an identifier or free text, not an attribute;
# - a single value, or a group with fewer than MIN_GROUP patients in some split, is not an
#   attribute: its rates (accuracy, TPR, ...) on a handful of patients are noise, and its gaps
#   would read max minus min over them (a singleton group gives an accuracy gap of 1.0).
MAX_LEVELS = 10
MIN_GROUP = 10
RESERVED = ("index",)  # the position within a split; a label CSV's own `index` is not read


@dataclass(frozen=True)
class AttributePlan:
    """What one CSV column becomes: an attribute with `levels` and an int `codes` per row of the
    frame (aligned to its index), or nothing (`levels` empty). `note` says why when the column
    is not taken as it is (binned, or skipped)."""

    column: str
    levels: tuple[str, ...] = ()
    codes: pd.Series | None = None
    note: str = ""
    description: str = ""

    @property
    def taken(self) -> bool:
        """Whether the column becomes an attribute (it has levels)."""
        return bool(self.levels)


def encode_levels(values: pd.Series, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map attribute values to int codes; levels sorted so codes are stable across splits (by
    value for numbers, so 9 comes before 10)."""
    if values.isna().any():
        raise RashomonError(f"attribute {name!r} has empty values; fill them or drop the column")
    text = values.astype(str)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        order = dict(zip(text, numbers, strict=True))
        levels = tuple(sorted(order, key=lambda v: (order[v], v)))
    else:
        levels = tuple(sorted(text.unique()))
    lookup = {v: i for i, v in enumerate(levels)}
    return text.map(lookup).to_numpy(np.int64), levels


def tertile_bands(values: pd.Series, train: pd.Series) -> tuple[np.ndarray, tuple[str, ...], str]:
    """Codes and level names of `values` binned at the tertiles of `train` (ties may merge two
    bands): '<=a', '(a, b]', '>b'. Whole-number values (ages) get whole cut points, rounded
    down, which puts every value in the same band."""
    cuts = np.quantile(train.to_numpy(dtype=float), [1 / 3, 2 / 3])
    if np.array_equal(values, np.rint(values)):
        cuts = np.floor(cuts)
    cuts = np.unique(cuts)
    codes = np.searchsorted(cuts, values.to_numpy(dtype=float), side="left").astype(np.int64)
    inner = [f"({a:g}, {b:g}]" for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    levels = (f"<={cuts[0]:g}", *inner, f">{cuts[-1]:g}")
    return codes, levels, ", ".join(f"{c:g}" for c in cuts)


def plan_attribute(frame: pd.DataFrame, column: str, origin: str) -> AttributePlan:
    """Decide what `column` of a frame with a `split` column becomes (see MAX_LEVELS,
    MIN_GROUP). `origin` (a file name) goes into the description."""
    values = frame[column]
    if values.isna().any():
        line = int(frame.index[values.isna().to_numpy()][0]) + 2
        raise RashomonError(
            f"attribute {column!r} has empty values (first on line {line} of {origin}); fill "
            "them, or drop the column"
        )
    distinct = values.astype(str).unique()
    if len(distinct) < 2:
        return AttributePlan(
            column,
            note=f"{column} (a single value {distinct[0]!r}: it splits no one; drop the column "
            "or fill in its other values)",
        )
    note, description = "", f"from {origin}"
    numbers = pd.to_numeric(values, errors="coerce")
    if len(distinct) > MAX_LEVELS:
        if numbers.isna().any():
            return AttributePlan(
                column,
                note=f"{column} ({len(distinct)} distinct values, an identifier? group them "
                f"into at most {MAX_LEVELS} values to audit it)",
            )
        train = numbers[frame["split"] == "train"]
        codes, levels, cuts = tertile_bands(numbers, train)
        description = f"from {origin}, binned into tertiles of the train split (cut points {cuts})"
        note = f"{column} (binned: {len(distinct)} numeric values into {', '.join(levels)})"
    else:
        codes, levels = encode_levels(values, column)
    codes = pd.Series(codes, index=frame.index)
    for split in SPLITS:
        counts = np.bincount(codes[frame["split"] == split], minlength=len(levels))
        small = int(np.argmin(counts))
        if counts[small] < MIN_GROUP:
            return AttributePlan(
                column,
                note=f"{column} (group {levels[small]!r} has {int(counts[small])} patients in "
                f"{split}; at least {MIN_GROUP} in every group of every split are needed to "
                "measure it: merge its rare values or bin it)",
            )
    return AttributePlan(column, levels, codes, note, description)


def reserved_plans(columns: tuple[str, ...]) -> list[AttributePlan]:
    """Columns of a label CSV not read because of their name (`RESERVED`)."""
    return [
        AttributePlan(
            c,
            note=f"{c} (a reserved name: rows are placed by their order within each split; "
            "rename the column to audit it)",
        )
        for c in columns
    ]


def plans_note(plans: list[AttributePlan], origin: str) -> str:
    """One line: the columns taken as patient attributes and those not taken, with why."""
    taken = [p.note if p.taken and p.note else p.column for p in plans if p.taken]
    skipped = [p.note for p in plans if not p.taken]
    text = f"{origin}: patient attributes {', '.join(taken) or 'none'}"
    return text + (f"; not attributes: {'; '.join(skipped)}" if skipped else "")


def add_attributes_from_frame(
    task: Task,
    frame: pd.DataFrame,
    columns: list[str],
    what: str = "attribute CSV",
    origin: str = "CSV",
    reserved: tuple[str, ...] = (),
    required: bool = False,
    always_note: bool = False,
) -> list[AttributePlan]:
    """Attach the measurable attribute columns of a frame with `split` and `index` columns (one
    row per image; `plan_attribute` decides) and warn, on one line, which were taken and which
    not. `what` names the frame's file in errors, `origin` (a file name) in the descriptions
    and the note; `reserved` are columns of the file left unread because of their name;
    `required`: no measurable column is an error. The note is given when a column was binned or
    skipped, or `always_note` (a label CSV, whose extra columns become attributes unasked)."""
    for s in SPLITS:
        check_split_index(frame.loc[frame["split"] == s, "index"], len(task.split(s)), s, what)
    frame = frame.assign(index=pd.to_numeric(frame["index"]).astype(np.int64))
    for col in columns:
        if col in task.attributes:
            raise RashomonError(f"attribute {col!r} already exists; rename the column")
    plans = [plan_attribute(frame, col, origin) for col in columns]
    if required and not any(p.taken for p in plans):
        raise RashomonError(
            f"{what} has no attribute that can be measured: {'; '.join(p.note for p in plans)}"
        )
    for plan in plans:
        if not plan.taken or plan.codes is None:  # a taken plan has its codes
            continue
        for s in SPLITS:
            rows = frame[frame["split"] == s].sort_values("index")
            codes = plan.codes.loc[rows.index].to_numpy(np.int64)
            task.split(s).groups[plan.column] = torch.tensor(codes, dtype=torch.int64)
        task.attributes[plan.column] = GroupAttribute(
            plan.column, plan.levels, derived=False, description=plan.description
        )
    plans += reserved_plans(reserved)
    if always_note or any(p.note for p in plans):
        warnings.warn(plans_note(plans, origin), DataWarning, stacklevel=3)
    return plans


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
    add_attributes_from_frame(
        task, frame, columns, what=f"attribute CSV {path}", origin=path.name, required=True
    )
    task.files = (*task.files, absolute(path))


def measurable_attributes(
    task: Task, names: list[str], splits: tuple[str, ...] = ("val", "test")
) -> list[str]:
    """`names` less the attributes with a single group in one of `splits` (a gap between groups
    is undefined there), each skipped with a warning. The load-time rule (MIN_GROUP) keeps such
    CSV columns out; this catches the derived ones and tasks built by hand."""
    kept = []
    for name in names:
        for split in splits:
            codes = np.unique(task.split(split).groups[name].numpy())
            if len(codes) < 2:
                info = task.attributes.get(name)
                label = info.label if info else name
                level = info.levels[int(codes[0])] if info and len(codes) else "none"
                warnings.warn(
                    f"attribute {label} has one group in {split} ({level!r}); its gaps are "
                    "undefined there, so it is skipped (give that split patients of every group)",
                    DataWarning,
                    stacklevel=2,
                )
                break
        else:
            kept.append(name)
    return kept
