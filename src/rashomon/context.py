"""What a stage function gets: the config, where to write, and the run's earlier outputs.

Kept apart from `rashomon.run` (which orchestrates stages) so that stage modules depend on
this small contract, not on the orchestration above them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from rashomon.errors import RashomonError


@dataclass
class StageContext:
    cfg: Any  # rashomon.config.RunConfig
    run_dir: Path
    out: Path  # temporary folder; renamed to run_dir/<stage> when the stage succeeds
    stage: str
    progress: bool = True
    console: Console = field(default_factory=Console)
    summary: dict[str, Any] = field(default_factory=dict)  # saved to summary.json, shown at end
    loader: Callable[[], Any] | None = None  # loads the run's Task
    previous: dict[str, Any] | None = None  # this stage's record from its last finished run
    data: str = ""  # fingerprint of the data files (rashomon.run.data_fingerprint)
    _task: Any = None

    @property
    def device(self) -> str:
        return self.cfg.device

    def task(self) -> Any:
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
