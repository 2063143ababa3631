"""Read a run directory into one object the report sections draw from.

Stages train, sample and evaluate are required (a missing one is a RashomonError naming the
command to run); ε, the set's source and its options come from the sample stage's summary.json
only (`rashomon.schema.sample_record`). Every file inside a stage, and the whole decide stage, is
optional: a missing table leaves its section with a note saying which stage or option produces
it. Tables are read under the names `rashomon.schema` defines; the only columns the report adds
are the ones `derive_columns` computes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon import schema as S
from rashomon.errors import RashomonError

REQUIRED_STAGES = ("train", "sample", "evaluate")

# The per-patient worst case over labels that a multilabel per_sample.csv gets (see
# `derive_columns`): column -> how the labels' values combine.
WORST_OVER_LABELS = {
    S.AMBIGUOUS: "any",
    S.DISAGREEMENT: "max",
    S.CAPACITY: "max",
    S.FLIP_RATE: "max",
}


def derive_columns(key: str, df: pd.DataFrame) -> pd.DataFrame:
    """The report's computed columns, all of them: a multilabel per_sample.csv (columns
    `label<l>.<name>`, no top-level ones) gets per patient the worst case over its labels,
    `ambiguous` (some label flips), `disagreement`, `capacity` and `flip_rate` (the largest),
    so that the summary and the patient sections read one column per patient whatever the
    task's kind. Every other table is used as written."""
    if key != "per_sample" or S.AMBIGUOUS in df:
        return df
    # One block per column after read_csv of a 14-label table: consolidate before adding
    # columns, or pandas warns that the frame is highly fragmented on every report.
    df = df.copy()
    for name, how in WORST_OVER_LABELS.items():
        parts = list(S.label_columns(df.columns, name).values())
        if parts:
            values = df[parts].astype(bool if how == "any" else float)
            df[name] = values.any(axis=1) if how == "any" else values.max(axis=1)
    return df


@dataclass
class RunData:
    """A run directory as the report reads it: config, sample record, tables, summaries and
    checkpoint metadata."""

    run_dir: Path
    config: dict[str, Any]
    sample: S.SampleRecord
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> summary.json
    checkpoint: dict[str, Any] = field(default_factory=dict)  # model.pt metadata (no weights)
    stages: set[str] = field(default_factory=set)  # stages whose folder exists
    task: Any = None  # the Task, when its data could be loaded (for patient images)
    task_error: str = ""  # why the task could not be loaded
    # Optional stages whose figures are not those of the run's current stages: stage -> why
    # (`validate_staleness`); their sections say so instead of showing the figures.
    stale: dict[str, str] = field(default_factory=dict)

    def table(self, key: str) -> pd.DataFrame | None:
        """The table `key` (of `rashomon.schema.TABLES`), or None when the run lacks it."""
        return self.tables.get(key)

    def validate_table(self, file: str) -> pd.DataFrame | None:
        """A CSV of the validate stage's folder (`rashomon.validate` writes them; they are not
        among `rashomon.schema.TABLES`), or None when it is absent or empty."""
        path = self.run_dir / "validate" / file
        if not path.exists():
            return None
        try:
            return pd.read_csv(path, low_memory=False)
        except pd.errors.EmptyDataError:
            return None

    def missing_note(self, key: str) -> str:
        """Why table `key` is absent (HTML): its stage has not run, or its file is missing."""
        t = S.TABLES[key]
        if t.stage not in self.stages:
            cmd = f"rashomon {t.stage} RUN_DIR"
            return f"Stage <code>{t.stage}</code> has not run: run <code>{cmd}</code>."
        return f"<code>{t.stage}/{t.file}</code> is missing from this run."

    # --- the sample stage's record ----------------------------------------------------------
    @property
    def epsilon(self) -> float:
        """The audit's ε."""
        return self.sample.epsilon

    @property
    def on(self) -> str:
        """What the Rashomon filter compares models on (the sample record's `on`)."""
        return self.sample.on

    @property
    def task_info(self) -> dict[str, Any]:
        """The checkpoint's task description ({} when it has none)."""
        return self.checkpoint.get("task", {}) or {}

    @property
    def kind(self) -> str:
        """binary | multiclass | multilabel: the checkpoint's task, else per_sample.csv's layout."""
        kind = self.task_info.get("kind")
        if kind:
            return str(kind)
        ps = self.table("per_sample")
        if ps is not None and S.label_columns(ps.columns, S.AMBIGUOUS):
            return "multilabel"
        return "binary" if len(self.class_names) == 2 else "multiclass"

    @property
    def labels(self) -> dict[int, str]:
        """Multilabel runs: label index -> its name (the task's class names), for every label
        per_sample.csv holds; {} otherwise."""
        ps = self.table("per_sample")
        if ps is None:
            return {}
        found = S.label_columns(ps.columns, S.AMBIGUOUS)
        names = list(self.task_info.get("class_names") or [])
        return {lab: names[lab] if lab < len(names) else f"label {lab}" for lab in found}

    @property
    def class_names(self) -> list[str]:
        """Class names from the checkpoint, else 'class 0', 'class 1', … from per_sample.csv."""
        names = list(self.task_info.get("class_names") or [])
        if not names:
            ps = self.table("per_sample")
            n = int(ps[S.TRUE_LABEL].max()) + 1 if ps is not None and S.TRUE_LABEL in ps else 2
            names = [f"class {c}" for c in range(n)]
        return names

    @property
    def attributes(self) -> dict[str, dict[str, Any]]:
        """name -> {levels, derived, acquisition, description} of the attributes per_sample.csv
        holds codes for (from the checkpoint's task description; without one, its columns the
        schema does not define). `acquisition`: the attribute says how the image was taken
        (`acquisition_names`)."""
        ps = self.table("per_sample")
        attrs = {k: dict(v) for k, v in (self.task_info.get("attributes") or {}).items()}
        if ps is not None and not attrs:
            for c in S.TABLES["per_sample"].unexpected(ps.columns):
                if pd.api.types.is_integer_dtype(ps[c]):
                    levels = [str(v) for v in sorted(ps[c].unique())]
                    attrs[c] = {
                        "levels": levels,
                        "derived": c in ("intensity", "random"),
                        "description": "",
                    }
        if ps is not None:
            attrs = {k: v for k, v in attrs.items() if k in ps.columns}
        acquisition = self.acquisition_names(list(attrs))
        for name, info in attrs.items():
            info["acquisition"] = name in acquisition
        return attrs

    def acquisition_names(self, names: list[str]) -> list[str]:
        """The acquisition attributes among `names`, as the evaluate stage resolved them: the
        strata of evaluate/within_stratum.csv when it has rows, else config.yaml's
        `evaluate.acquisition`, else by name (`rashomon.metrics.acquisition.is_acquisition`)."""
        from rashomon.metrics.acquisition import is_acquisition

        ws = self.table("within_stratum")
        if ws is not None and len(ws):
            strata = set(ws[S.STRATUM_ATTRIBUTE].astype(str))
            return [n for n in names if n in strata]
        declared = (self.config.get("evaluate") or {}).get("acquisition")
        if declared is not None:
            return [n for n in names if n in set(declared)]
        return [n for n in names if is_acquisition(n)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / S.CONFIG
    if not path.exists():
        return {}
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}


def _read_checkpoint_meta(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # an unreadable checkpoint only costs the architecture line
        return {}
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    state = payload.get("state_dict") or {}
    meta["parameters"] = int(
        sum(
            int(np.prod(v.shape))
            for v in state.values()
            if hasattr(v, "shape") and v.dtype.is_floating_point
        )
    )
    return meta


def load_run(run_dir: Path, task: Any = None, load_images: bool = True) -> RunData:
    """Read every table of a run directory; raise RashomonError if a required stage is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RashomonError(f"run directory {run_dir} does not exist; check the path")
    for stage in REQUIRED_STAGES:
        if not (run_dir / stage).is_dir():
            raise RashomonError(
                f"{run_dir} has no outputs of stage {stage!r}; run `rashomon {stage} "
                f"{run_dir}` (or `rashomon run`) first"
            )
    data = RunData(run_dir=run_dir, config=_read_config(run_dir), sample=S.sample_record(run_dir))
    data.stages = {p.name for p in run_dir.iterdir() if p.is_dir()}
    for key, t in S.TABLES.items():
        path = t.path(run_dir)
        if path.exists():
            try:
                # One pass over the whole file, so a column is not typed chunk by chunk.
                data.tables[key] = derive_columns(key, pd.read_csv(path, low_memory=False))
            except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
                raise RashomonError(
                    f"{path} is unreadable ({exc}); re-run stage {t.stage!r} with "
                    f"`rashomon {t.stage} {run_dir} --force`"
                ) from exc
    if "per_sample" not in data.tables and "multiplicity" not in data.tables:
        raise RashomonError(
            f"{run_dir / 'evaluate'} has neither per_sample.csv nor multiplicity.csv; re-run "
            f"stage 'evaluate' with `rashomon evaluate {run_dir} --force`"
        )
    for stage in data.stages:
        s = _read_json(run_dir / stage / S.SUMMARY)
        if s:
            data.summaries[stage] = s
    if "validate" in data.summaries:
        why = validate_staleness(run_dir, data.sample, data.summaries["validate"])
        if why is not None:
            data.stale["validate"] = why
    data.checkpoint = _read_checkpoint_meta(run_dir / "train" / S.CHECKPOINT)
    if task is not None:
        data.task = task
    elif load_images:
        data.task, data.task_error = _load_task(data.config)
    return data


def validate_staleness(
    run_dir: Path, sample: S.SampleRecord, validate: dict[str, Any]
) -> str | None:
    """Why the validate stage's figures are not those of the run's current set (None when they
    are): it filtered the retrained networks at another ε than the sample stage's, it read an
    earlier run of the train or sample stage, or other data than the evaluate stage (the patient
    attributes its truth tables split by)."""
    import math

    epsilon = validate.get("epsilon")
    if epsilon is not None and not math.isclose(float(epsilon), float(sample.epsilon)):
        return (
            f"it ran at ε = {float(epsilon):g} while the set is now filtered at "
            f"ε = {float(sample.epsilon):g}"
        )
    records = S.stage_records(run_dir)
    rec = records.get("validate")
    if rec is None:
        return None  # a validate folder without a record: nothing to compare
    inputs = rec.get("inputs") or {}
    for dep in ("train", "sample"):
        if inputs.get(dep) != (records.get(dep) or {}).get("id"):
            return f"it read an earlier run of stage {dep!r}, redone since"
    evaluated = (records.get("evaluate") or {}).get("data")
    if evaluated is not None and rec.get("data") != evaluated:
        return "it ran on other data (the data files or patient attributes changed since)"
    return None


def _load_task(config: dict[str, Any]) -> tuple[Any, str]:
    """The run's Task from config.yaml's data section, for images; (None, reason) if it fails."""
    d = config.get("data") or {}
    if not d.get("dataset"):
        return None, "config.yaml names no dataset"
    try:
        from rashomon.api import load_task

        # Every data option of the config (rashomon.config.DataConfig.loader_options): the
        # label file and channels pick which patients and images the run's stages saw.
        task = load_task(
            d["dataset"],
            root=d.get("root"),
            size=int(d.get("size", 28)),
            seed=int(config.get("seed", 0)),
            attributes_csv=d.get("attributes_csv"),
            labels=d.get("labels"),
            channels=d.get("channels"),
            allow_overlap=bool(d.get("allow_overlap", False)),
        )
    except Exception as exc:  # images are optional: say why they are absent
        shown = d.get("dataset_as_given") or d["dataset"]
        return None, f"the images of {shown!r} could not be loaded ({exc})"
    return task, ""
