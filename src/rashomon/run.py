"""Run directories and stages.

A run directory holds the resolved config, the environment (package versions, seeds) and one
folder per finished stage. A stage writes into `<stage>.tmp-<pid>/`, which is renamed to
`<stage>/` only when the stage succeeds, and its completion record (with the hash of the config
sections it reads) is written last. Re-running skips stages whose record matches; an interrupted
stage leaves only a temporary folder, removed on the next run, and earlier stages intact.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from rashomon.config import RunConfig, dump_config, load_config
from rashomon.errors import RashomonError


@dataclass(frozen=True)
class Stage:
    name: str
    target: str  # "module:function" taking a StageContext
    sections: tuple[str, ...]  # config sections the stage reads (its input identity)
    after: tuple[str, ...]  # stages whose outputs it reads
    help: str


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "train", "rashomon.models.stage:run_train_stage", ("train",), (), "train the MAP model"
        ),
        Stage(
            "sample",
            "rashomon.sets.stage:run_sample_stage",
            ("train", "sample"),
            ("train",),
            "build the model set and predict val/test",
        ),
        Stage(
            "evaluate",
            "rashomon.evaluate:run_evaluate_stage",
            ("train", "sample", "evaluate"),
            ("sample",),
            "multiplicity and desiderata across the Rashomon set",
        ),
        Stage(
            "decide",
            "rashomon.decide.stage:run_decide_stage",
            ("train", "sample", "evaluate", "decide"),
            ("evaluate",),
            "best-in-set selection, ensembles with abstention, LSI",
        ),
        Stage(
            "report",
            "rashomon.report.stage:run_report_stage",
            ("train", "sample", "evaluate", "decide"),
            ("decide",),
            "the HTML report",
        ),
    )
}
STAGE_ORDER = tuple(STAGES)
CONFIG_FILE = "config.yaml"
RECORDS_FILE = "stages.json"
ENV_FILE = "environment.json"


@dataclass
class StageContext:
    """What a stage function gets: the config, where to write, and access to earlier outputs."""

    cfg: RunConfig
    run_dir: Path
    out: Path  # temporary folder; renamed to run_dir/<stage> when the stage succeeds
    stage: str
    progress: bool = True
    console: Console = field(default_factory=Console)
    summary: dict[str, Any] = field(default_factory=dict)  # saved to summary.json, shown at end
    _task: Any = None

    @property
    def device(self) -> str:
        return self.cfg.device

    def task(self):
        """The run's Task, loaded once per stage."""
        if self._task is None:
            from rashomon.api import load_task

            d = self.cfg.data
            self._task = load_task(d.dataset, seed=self.cfg.seed, **d.loader_options())
        return self._task

    def path(self, stage: str, *parts: str) -> Path:
        """A finished output of an earlier stage; a clear error names the stage to run."""
        p = self.run_dir / stage
        if not p.is_dir():
            raise RashomonError(
                f"{self.run_dir} has no outputs of stage {stage!r}; run `rashomon {stage} "
                f"{self.run_dir}` (or `rashomon run`) first"
            )
        p = p.joinpath(*parts)
        if parts and not p.exists():
            raise RashomonError(
                f"{p} is missing; re-run stage {stage!r}: `rashomon {stage} {self.run_dir} --force`"
            )
        return p


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = [
        "rashomon",
        "torch",
        "torchvision",
        "laplace-torch",
        "medmnist",
        "medmnistc",
        "numpy",
        "scipy",
        "scikit-learn",
        "fairlearn",
        "pandas",
        "ray",
    ]
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def read_records(run_dir: Path) -> dict[str, dict]:
    f = run_dir / RECORDS_FILE
    return json.loads(f.read_text()) if f.exists() else {}


def prepare_run_dir(run_dir: Path, cfg: RunConfig, resume_only: bool = False) -> None:
    """Create the run directory and save the resolved config and environment.

    An existing run directory with a different data section or seed is refused: its stages
    belong to another experiment. Other sections may change: stages depending on them re-run.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RashomonError(
            f"cannot write to {run_dir} ({exc.strerror}); choose another --out directory"
        ) from exc
    cfg_file = run_dir / CONFIG_FILE
    if cfg_file.exists():
        old = load_config(cfg_file)
        if old.data != cfg.data or old.seed != cfg.seed:
            raise RashomonError(
                f"{run_dir} holds a run of another dataset or seed; use a new --out directory "
                "or delete that one"
            )
    for stale in run_dir.glob("*.tmp-*"):  # left by an interrupted stage
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    write_text_atomic(cfg_file, dump_config(cfg))
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "seed": cfg.seed,
        "device": cfg.device,
    }
    write_text_atomic(run_dir / ENV_FILE, json.dumps(env, indent=2))


def stage_is_current(run_dir: Path, cfg: RunConfig, name: str) -> bool:
    rec = read_records(run_dir).get(name)
    stage = STAGES[name]
    return (
        rec is not None
        and rec.get("hash") == cfg.section_hash(*stage.sections)
        and (run_dir / name).is_dir()
    )


def _resolve(target: str) -> Callable[[StageContext], None]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_stage(
    run_dir: Path,
    cfg: RunConfig,
    name: str,
    force: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any] | None:
    """Run one stage unless it is current; returns its summary (None when skipped)."""
    console = console or Console()
    if not force and stage_is_current(run_dir, cfg, name):
        console.print(f"[dim]✓ {name}: up to date, skipped (use --force to redo)[/dim]")
        return None
    stage = STAGES[name]
    for dep in stage.after:
        if not (run_dir / dep).is_dir():
            raise RashomonError(
                f"stage {name!r} needs stage {dep!r}, which has not run in {run_dir}; "
                f"run `rashomon {dep} {run_dir}` or `rashomon run`"
            )
    tmp = run_dir / f"{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    ctx = StageContext(cfg, run_dir, tmp, name, progress=progress, console=console)
    console.print(f"[bold]▶ {name}[/bold]: {stage.help}")
    start = time.perf_counter()
    try:
        _resolve(stage.target)(ctx)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    ctx.summary.setdefault("seconds", round(seconds, 2))
    (tmp / "summary.json").write_text(json.dumps(ctx.summary, indent=2, default=str))
    _commit_stage(run_dir, cfg, name, tmp, {"seconds": round(seconds, 2)})
    return ctx.summary


def _commit_stage(
    run_dir: Path, cfg: RunConfig, name: str, tmp: Path, record: dict[str, Any]
) -> None:
    """Rename a stage's finished temporary folder into place and write its completion record."""
    final = run_dir / name
    # Later stages read this one's outputs: drop their records so they re-run.
    records = read_records(run_dir)
    for later in STAGE_ORDER[STAGE_ORDER.index(name) + 1 :]:
        records.pop(later, None)
    old = run_dir / f"{name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    records[name] = {
        "hash": cfg.section_hash(*STAGES[name].sections),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **record,
    }
    write_text_atomic(run_dir / RECORDS_FILE, json.dumps(records, indent=2))


def adopt_stage(source: Path, run_dir: Path, cfg: RunConfig, name: str) -> None:
    """Copy a finished stage from another run directory whose inputs are the same (the MAP model
    shared by the cells of a sweep), so it is computed once; the record names where it came from."""
    if not stage_is_current(source, cfg, name):
        raise RashomonError(
            f"{source} has no current {name!r} stage for this config; run it there first"
        )
    prepare_run_dir(run_dir, cfg)
    tmp = run_dir / f"{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source / name, tmp)
    seconds = read_records(source)[name].get("seconds")
    _commit_stage(run_dir, cfg, name, tmp, {"seconds": seconds, "copied_from": str(source)})


def run_pipeline(
    run_dir: Path,
    cfg: RunConfig,
    stages: tuple[str, ...] = STAGE_ORDER,
    force: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Prepare the run directory and run the stages in order."""
    prepare_run_dir(run_dir, cfg)
    return {s: run_stage(run_dir, cfg, s, force, progress, console) for s in stages}
