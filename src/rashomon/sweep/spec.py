"""What a sweep is: the sweep file, its grid of cells and the sweep directory's layout.

A sweep file holds a base config (the RunConfig schema, inline or the path of a config file) and
a grid over dotted config keys. Every combination of grid values is one cell; each cell is an
ordinary run directory under `<out>/cells/<name>`, its name derived from its grid values, so
`rashomon run`, `rashomon report` and `rashomon compare` work on it directly.

    name: capacity
    base: {data: {dataset: breastmnist}, train: {arch: cnn, epochs: 10}}
    grid:
      train.width: [0.25, 0.5, 1, 2]
      seed: [0, 1, 2]
      set:                       # a bundle axis: each value sets several keys together
        - {label: ll-kron, sample.subset: last_layer, sample.hessian: kron}
        - {label: all-diag, sample.subset: all, sample.hessian: diag}
    stages: [train, sample, evaluate]   # default: every stage
    resources: {num_cpus: 1, num_gpus: 0}   # reserved per cell
    max_memory: 8GB              # shared by the cells running at once (default: sample's default)
    reuse_workers: false         # true: one Ray worker runs several cells (faster start)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rashomon.config import RunConfig, load_config, read_yaml_mapping
from rashomon.errors import RashomonError

# The sweep directory: <out>/status.csv, <out>/sweep.csv, <out>/sweep.html and one run directory
# per cell under <out>/cells/, each with its cell.log (and error.txt when it failed).
CELLS_DIR = "cells"
STATUS_FILE = "status.csv"
TABLE_FILE = "sweep.csv"
REPORT_FILE = "sweep.html"
CELL_LOG = "cell.log"
CELL_ERROR = "error.txt"
CELL_LOCK = ".sweep.lock"
# status.csv columns that are not grid values
STATUS_ONLY = ("status", "error", "seconds", "peak_rss_mb", "run_dir")


class Resources(BaseModel):
    """What one sweep cell asks of Ray: CPUs and GPUs."""

    model_config = ConfigDict(extra="forbid")
    num_cpus: float = 1.0
    num_gpus: float = 0.0


class SweepSpec(BaseModel):
    """The sweep file."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    base: dict[str, Any] | str = Field(default_factory=dict)
    grid: dict[str, Any] = Field(default_factory=dict)
    stages: list[str] | None = None
    resources: Resources = Field(default_factory=Resources)
    max_memory: str | None = None
    # Reuse Ray workers across cells: saves the start-up (imports) of each cell, but a worker
    # keeps what its earlier cells allocated. Default: a fresh worker per cell.
    reuse_workers: bool = False


@dataclass
class Cell:
    """One grid point: its name, its axis labels, the dotted overrides and the resolved config."""

    name: str
    labels: dict[str, Any]
    overrides: dict[str, Any]
    cfg: RunConfig | None = None
    error: str = ""  # set when the config itself is invalid: the cell fails without a task
    columns: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading the sweep


def load_sweep(path: str | Path) -> tuple[SweepSpec, dict[str, Any]]:
    """Read a sweep file; returns the spec and the base config as a raw mapping."""
    path = Path(path)
    raw = read_yaml_mapping(path, "sweep file", "a mapping with 'base' and 'grid'")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise RashomonError(f"sweep file {path}, field {where!r}: {err['msg']}") from exc
    base = spec.base
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        if not base_path.exists():
            raise RashomonError(f"base config {base_path} named in {path} does not exist")
        base = yaml.safe_load(base_path.read_text()) or {}
    if spec.stages is not None:
        from rashomon.run import STAGES

        unknown = [s for s in spec.stages if s not in STAGES]
        if unknown:
            raise RashomonError(
                f"sweep file {path}: unknown stage(s) {unknown}; choose from {list(STAGES)}"
            )
    load_config(None, _flatten(base))  # the base alone must be a valid run config
    return spec, base


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 2}} → {"train.epochs": 2} (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _axis_values(axis: str, values: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(label, dotted overrides) for every value of one grid axis."""
    if not isinstance(values, list):
        values = [values]
    if not values:
        raise RashomonError(f"grid axis {axis!r} has no values; give at least one")
    out = []
    for v in values:
        if isinstance(v, Mapping):  # bundle axis: several keys set together
            v = dict(v)
            label = v.pop("label", None)
            if not v:
                raise RashomonError(f"grid axis {axis!r} has an empty bundle; give dotted keys")
            if label is None:
                label = "-".join(_label_text(x) for x in v.values())
            out.append((str(label), {str(k): x for k, x in v.items()}))
        else:
            if "." not in axis and axis not in RunConfig.model_fields:
                raise RashomonError(
                    f"grid axis {axis!r} is not a config key; use a dotted key such as "
                    "'train.arch', or give mappings of dotted keys as its values"
                )
            out.append((v, {axis: v}))
    return out


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if "/" in text:  # a dataset folder: its name says enough
        text = Path(text).name
    return re.sub(r"[^A-Za-z0-9.+=-]+", "", text) or "x"


def cell_name(labels: Mapping[str, Any]) -> str:
    """Directory name of a cell from its axis labels, e.g. 'arch-cnn_width-0.5_seed-0'."""
    shorts = {a: a.split(".")[-1] for a in labels}
    clashes = {s for s in shorts.values() if list(shorts.values()).count(s) > 1}
    parts = []
    for axis, label in labels.items():
        key = axis.replace(".", "-") if shorts[axis] in clashes else shorts[axis]
        parts.append(f"{key}-{_label_text(label)}")
    return "_".join(parts) or "base"


def expand_grid(spec: SweepSpec, base: Mapping[str, Any]) -> list[Cell]:
    """Every combination of grid values as a Cell with its resolved config (or its error)."""
    axes = {a: _axis_values(a, vals) for a, vals in spec.grid.items()}
    cells = []
    names: set[str] = set()
    for combo in itertools.product(*axes.values()) if axes else [()]:
        labels = {a: lab for a, (lab, _) in zip(axes, combo, strict=True)}
        overrides: dict[str, Any] = {}
        for _, ov in combo:
            overrides.update(ov)
        name = cell_name(labels)
        if name in names:
            raise RashomonError(
                f"two grid cells get the directory name {name!r}; give bundle values distinct "
                "'label's"
            )
        names.add(name)
        cell = Cell(name, labels, overrides, columns={**labels, **overrides})
        try:
            cell.cfg = _cell_config(base, overrides, name)
        except RashomonError as exc:
            cell.error = str(exc)
        cells.append(cell)
    return cells


def _cell_config(base: Mapping[str, Any], overrides: Mapping[str, Any], name: str) -> RunConfig:
    flat = _flatten(base)
    flat["name"] = name  # the grid may still set its own
    flat.update(overrides)
    # A folder dataset given relative to where the sweep starts: made absolute here, so that
    # Ray workers (which may start elsewhere) read the same folder.
    dataset = flat.get("data.dataset")
    if isinstance(dataset, str) and Path(dataset).expanduser().is_dir():
        flat["data.dataset"] = str(Path(dataset).expanduser().resolve())
    return load_config(None, flat)
