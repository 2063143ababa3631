"""What a stage function gets: the config, where to write, and the run's earlier outputs.

Kept apart from `rashomon.run` (which orchestrates stages) so that stage modules depend on
this small contract, not on the orchestration above them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console

from rashomon.errors import RashomonError

if TYPE_CHECKING:  # for annotations only: the Task's module loads torch
    from rashomon.data.task import Task


class StageConfig(Protocol):
    """The run's configuration as a stage reads it. `rashomon.config.RunConfig` is the one
    implementation; it sits above the stages (it checks source options through the set
    registry), so the stages name here what they read of it instead of importing it. Each
    section is a pydantic model of `rashomon.config`."""

    seed: int
    device: str
    data: Any
    train: Any
    sample: Any
    evaluate: Any
    decide: Any
    validity: Any

    def section_hash(self, *sections: str, attributes: bool = True) -> str:
        """The digest of the named config sections (a stage's input identity; `attributes`
        False leaves the patient attributes out)."""


@dataclass
class StageContext:
    """What a stage gets from the run: the config, the run directory, its output folder, the task
    and the previous stages' records."""

    cfg: StageConfig  # a rashomon.config.RunConfig
    run_dir: Path
    out: Path  # temporary folder; renamed to run_dir/<stage> when the stage succeeds
    stage: str
    progress: bool = True
    console: Console = field(default_factory=Console)
    summary: dict[str, Any] = field(default_factory=dict)  # saved to summary.json, shown at end
    loader: Callable[[], Task] | None = None  # loads the run's Task
    # this stage's record from its last finished run, for what it may reuse of it; None under
    # --force and when that run's files are not the ones it wrote
    previous: dict[str, Any] | None = None
    # fingerprint of the data files the stage reads (rashomon.run.DataIdentity: without the
    # patient attributes for a stage that reads none)
    data: str = ""
    attributes: bool = True  # whether the stage reads patient attributes (its identity has them)
    _task: Task | None = None

    @property
    def device(self) -> str:
        """The device the config names (cpu, cuda or cuda:<index>)."""
        return self.cfg.device

    def task(self) -> Task:
        """The run's Task, loaded once per stage."""
        if self._task is None:
            if self.loader is None:
                raise RashomonError(f"stage {self.stage!r} was given no task loader")
            self._task = self.loader()
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
