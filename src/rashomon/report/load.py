"""Read a run directory into one object the report sections draw from.

Stages train, sample and evaluate are required (a missing one is a RashomonError naming the
command to run); every file inside a stage, and the whole decide stage, is optional: a missing
table leaves its section with a note saying which stage or option produces it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rashomon.errors import RashomonError

REQUIRED_STAGES = ("train", "sample", "evaluate")

# file key -> (stage, file name)
TABLES = {
    "history": ("train", "history.csv"),
    "per_model": ("sample", "per_model.csv"),
    "survival": ("sample", "survival.csv"),
    "metrics": ("evaluate", "metrics.csv"),
    "per_model_val": ("evaluate", "per_model_val.csv"),
    "per_model_test": ("evaluate", "per_model_test.csv"),
    "per_sample": ("evaluate", "per_sample.csv"),
    "multiplicity": ("evaluate", "multiplicity.csv"),
    "convergence": ("evaluate", "convergence.csv"),
    "robustness": ("evaluate", "robustness.csv"),
    "selection": ("decide", "selection.csv"),
    "pareto": ("decide", "pareto.csv"),
    "ensembles": ("decide", "ensembles.csv"),
    "patients": ("decide", "patients.csv"),
    "lsi": ("decide", "lsi.csv"),
    "notes": ("decide", "notes.csv"),  # what the decide stage skipped, and why
}


# Accepted spellings of the columns the report reads: table -> {alias: canonical name}. The
# canonical names are the ones docs/run-directory.md and tests/fake_run.py use; the aliases are
# the names of the library functions that produce the tables (rashomon.metrics, rashomon.decide).
ALIASES: dict[str, dict[str, str]] = {
    "per_sample": {
        "sample": "index",
        "sample_index": "index",
        "true_label": "label",
        "y": "label",
        "ref_label": "map_pred",
        "map_label": "map_pred",
        "ref_prob": "map_prob",
        "map_prob_1": "map_prob",
        "vpr_low": "vpr_min",
        "vpr_high": "vpr_max",
        "vpr_low_1": "vpr_min",
        "vpr_high_1": "vpr_max",
        "n_flips": "flips",
        "flip_share": "flip_rate",
    },
    "patients": {
        "sample": "index",
        "sample_index": "index",
        "true_label": "label",
        "map_label": "map_pred",
        "ref_label": "map_pred",
    },
    "lsi": {"sample": "index", "sample_index": "index"},
    "selection": {
        "test_gain": "gain",
        "gain_ci_low": "gain_low",
        "gain_ci_high": "gain_high",
        "spearman_rho": "spearman",
        "chosen": "selected_model",
        "chosen_val": "selected_val",
        "chosen_test": "selected_test",
    },
    "ensembles": {"covered_accuracy": "accuracy_covered"},
}


def normalize_table(key: str, df: pd.DataFrame) -> pd.DataFrame:
    """Rename aliased columns to the canonical names and add the columns the report derives."""
    renames = {a: c for a, c in ALIASES.get(key, {}).items() if a in df and c not in df}
    df = df.rename(columns=renames)
    if key == "per_sample":
        df = _per_sample_columns(df)
    elif key == "selection" and "direction" not in df and "higher_is_better" in df:
        df["direction"] = np.where(df["higher_is_better"].astype(bool), "max", "min")
        df = df.drop(columns="higher_is_better")
    return df


def _per_sample_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Add `arbitrary` (some model of the set flips the MAP label) and, for multilabel tables
    whose columns are prefixed `label<l>.`, the per-patient worst case over labels."""
    # One block per column after read_csv of a 14-label table: consolidate before adding
    # columns, or pandas warns that the frame is highly fragmented on every report.
    df = df.copy()
    if "disagreement" not in df:
        for col in ("disagreement", "capacity", "flip_rate"):
            parts = [c for c in df.columns if c.startswith("label") and c.endswith("." + col)]
            if parts:
                df[col] = df[parts].max(axis=1)
        amb = [c for c in df.columns if c.startswith("label") and c.endswith(".ambiguous")]
        if amb:
            df["ambiguous"] = df[amb].astype(bool).any(axis=1)
    if "arbitrary" not in df:
        for col in ("flips", "flip_rate"):
            if col in df:
                df["arbitrary"] = df[col].to_numpy(float) > 0
                break
        else:
            if "ambiguous" in df:
                df["arbitrary"] = df["ambiguous"].astype(str).str.lower().isin(["true", "1"])
            elif "disagreement" in df:
                df["arbitrary"] = df["disagreement"].to_numpy(float) > 0
    return df


@dataclass
class RunData:
    run_dir: Path
    config: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> summary.json
    checkpoint: dict[str, Any] = field(default_factory=dict)  # model.pt metadata (no weights)
    stages: set[str] = field(default_factory=set)  # stages whose folder exists
    task: Any = None  # the Task, when its data could be loaded (for patient images)
    task_error: str = ""  # why the task could not be loaded

    def table(self, key: str) -> pd.DataFrame | None:
        return self.tables.get(key)

    def missing_note(self, key: str) -> str:
        stage, name = TABLES[key]
        if stage not in self.stages:
            cmd = f"rashomon {stage} RUN_DIR"
            return f"Stage <code>{stage}</code> has not run: run <code>{cmd}</code>."
        return f"<code>{stage}/{name}</code> is missing from this run."

    # --- small accessors with the run's configured values -----------------------------------
    @property
    def epsilon(self) -> float | None:
        s = self.summaries.get("sample", {})
        eps = s.get("epsilon", self.config.get("sample", {}).get("epsilon"))
        return float(eps) if eps is not None else None

    @property
    def on(self) -> str:
        s = self.summaries.get("sample", {})
        return str(s.get("on", self.config.get("sample", {}).get("on", "loss")))

    @property
    def task_info(self) -> dict[str, Any]:
        return self.checkpoint.get("task", {}) or {}

    @property
    def class_names(self) -> list[str]:
        names = list(self.task_info.get("class_names") or [])
        if not names:
            ps = self.table("per_sample")
            n = int(ps["label"].max()) + 1 if ps is not None and "label" in ps else 2
            names = [f"class {c}" for c in range(n)]
        return names

    @property
    def attributes(self) -> dict[str, dict[str, Any]]:
        """name -> {levels, derived, description} of the attributes per_sample.csv holds codes for
        (from the checkpoint's task description; guessed from the columns if it has none)."""
        ps = self.table("per_sample")
        attrs = dict(self.task_info.get("attributes") or {})
        if ps is None:
            return attrs
        if not attrs:
            for c in ps.columns:
                if (
                    c not in KNOWN_PER_SAMPLE
                    and not c.startswith("vpr")
                    and pd.api.types.is_integer_dtype(ps[c])
                ):
                    levels = [str(v) for v in sorted(ps[c].unique())]
                    attrs[c] = {
                        "levels": levels,
                        "derived": c in ("intensity", "random"),
                        "description": "",
                    }
        return {k: v for k, v in attrs.items() if k in ps.columns}


KNOWN_PER_SAMPLE = {
    "index",
    "label",
    "map_pred",
    "map_prob",
    "disagreement",
    "capacity",
    "flips",
    "flip_rate",
    "self_consistency",
    "ambiguous",
    "arbitrary",
}


def find_column(df: pd.DataFrame, *names: str) -> str | None:
    """The first of `names` that `df` has (the stages' column names, with tolerated aliases)."""
    for n in names:
        if n in df.columns:
            return n
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
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
    data = RunData(run_dir=run_dir, config=_read_config(run_dir))
    data.stages = {p.name for p in run_dir.iterdir() if p.is_dir()}
    for key, (stage, name) in TABLES.items():
        path = run_dir / stage / name
        if path.exists():
            try:
                # One pass over the whole file, so a column is not typed chunk by chunk.
                data.tables[key] = normalize_table(key, pd.read_csv(path, low_memory=False))
            except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
                raise RashomonError(
                    f"{path} is unreadable ({exc}); re-run stage {stage!r} with "
                    f"`rashomon {stage} {run_dir} --force`"
                ) from exc
    if "per_sample" not in data.tables and "multiplicity" not in data.tables:
        raise RashomonError(
            f"{run_dir / 'evaluate'} has neither per_sample.csv nor multiplicity.csv; re-run "
            f"stage 'evaluate' with `rashomon evaluate {run_dir} --force`"
        )
    for stage in data.stages:
        s = _read_json(run_dir / stage / "summary.json")
        if s:
            data.summaries[stage] = s
    data.checkpoint = _read_checkpoint_meta(run_dir / "train" / "model.pt")
    if task is not None:
        data.task = task
    elif load_images:
        data.task, data.task_error = _load_task(data.config)
    return data


def _load_task(config: dict[str, Any]) -> tuple[Any, str]:
    """The run's Task from config.yaml's data section, for images; (None, reason) if it fails."""
    d = config.get("data") or {}
    if not d.get("dataset"):
        return None, "config.yaml names no dataset"
    try:
        from rashomon.api import load_task

        task = load_task(
            d["dataset"],
            root=d.get("root"),
            size=int(d.get("size", 28)),
            seed=int(config.get("seed", 0)),
            attributes_csv=d.get("attributes_csv"),
        )
    except Exception as exc:  # images are optional: say why they are absent
        return None, f"the images of {d['dataset']!r} could not be loaded ({exc})"
    return task, ""
