"""Running a sweep: every cell as a Ray task (local Ray by default, a cluster with an address).

Cells that share a MAP model (same data, seed and train section: they differ only in the set,
evaluation or decision options) train it once: one cell trains it first, the others get a copy of
its `train/` folder. Cells whose requested stages are all current are skipped without launching
a task. A failing cell is recorded with its one-line error (traceback in its `error.txt`) and the
others go on. After the run, `<out>/status.csv` lists every cell and its status, `<out>/sweep.csv`
is the tidy table of every cell's results and `<out>/sweep.html` the sweep report.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from rashomon.cluster import start_ray
from rashomon.config import RunConfig
from rashomon.errors import RashomonError, one_line
from rashomon.sweep.collect import axis_studies, collect_sweep, headline_table
from rashomon.sweep.spec import (
    CELL_ERROR,
    CELL_LOCK,
    CELL_LOG,
    CELLS_DIR,
    REPORT_FILE,
    STATUS_FILE,
    TABLE_FILE,
    Cell,
    Resources,
    SweepSpec,
    expand_grid,
    load_sweep,
)

# --------------------------------------------------------------------------- finished cells


def cell_is_finished(run_dir: Path, cfg: RunConfig, stages: tuple[str, ...]) -> bool:
    """All requested stages current in the run directory. The memory budget a sweep hands each
    cell is not part of a stage's identity, so a cell finished under another budget is finished."""
    from rashomon.run import stage_is_current

    return all(stage_is_current(run_dir, cfg, s) for s in stages)


# --------------------------------------------------------------------------- the Ray task


def run_cell(
    run_dir: str, cfg: dict[str, Any], stages: list[str], force: bool, threads: int
) -> dict[str, Any]:
    """Run one cell's stages (the body of a Ray task); never raises: returns its status."""
    import resource

    import torch

    from rashomon.run import run_pipeline

    start = time.perf_counter()
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    # One process per cell: a worker left running by an interrupted sweep would otherwise
    # share the run directory (each run removes the other's temporary stage folder).
    lock = open(path / CELL_LOCK, "w")  # noqa: SIM115 - held until the cell ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return {
            "status": "failed",
            "error": f"{path} is being run by another process (an earlier, interrupted sweep?); "
            "wait for it to end or end it, then re-run",
            "seconds": 0.0,
            "peak_rss_mb": float("nan"),
        }
    (path / CELL_ERROR).unlink(missing_ok=True)
    torch.set_num_threads(max(1, threads))
    try:
        with open(path / CELL_LOG, "a") as log:
            console = Console(file=log, width=120, force_terminal=False)
            console.print(f"--- sweep cell started {time.strftime('%Y-%m-%dT%H:%M:%S')}")
            run_pipeline(
                path,
                RunConfig.model_validate(cfg),
                tuple(stages),
                force=force,
                progress=False,
                console=console,
            )
        status, error = "done", ""
    except Exception as exc:
        (path / CELL_ERROR).write_text(traceback.format_exc())
        status, error = "failed", one_line(exc)
    finally:
        lock.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "status": status,
        "error": error,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


# --------------------------------------------------------------------------- Ray


def concurrent_slots(resources: Resources, cluster: Mapping[str, float]) -> int:
    """How many cells the cluster runs at once given each cell's reservation."""
    slots = math.inf
    if resources.num_cpus > 0:
        slots = min(slots, cluster.get("CPU", 0) // resources.num_cpus)
    if resources.num_gpus > 0:
        slots = min(slots, cluster.get("GPU", 0) // resources.num_gpus)
    if slots == 0:
        raise RashomonError(
            f"each cell asks for {resources.num_cpus} CPU and {resources.num_gpus} GPU but the "
            f"cluster has {cluster.get('CPU', 0)} CPU and {cluster.get('GPU', 0)} GPU; lower "
            "'resources' in the sweep file or start Ray with more (--num-cpus/--num-gpus)"
        )
    return int(slots) if slots != math.inf else 1


def cell_memory_budget(spec: SweepSpec, slots: int, cluster: Mapping[str, float]) -> str | None:
    """`sample.max_memory` for each cell: the shared budget split over the cells that run at
    once. Without `max_memory` in the sweep file the sample stage's default share of RAM is
    taken of the cluster's memory. GPU cells get no default: each picks its share of free VRAM
    when it starts, so give `max_memory` when several share one GPU."""
    from rashomon.memory import DEFAULT_RAM_SHARE, MIN_BUDGET, parse_bytes

    if spec.max_memory is not None:
        total = parse_bytes(spec.max_memory)
    elif spec.resources.num_gpus > 0:
        return None
    else:
        total = int(cluster.get("memory", 0) * DEFAULT_RAM_SHARE)
        if total <= 0:
            return None
    per_cell = max(MIN_BUDGET, total // max(1, slots))
    return f"{per_cell // 10**6}MB"  # whole MB: the same budget gives the same config hash


# --------------------------------------------------------------------------- the sweep


def run_sweep(
    sweep_yaml: Path,
    out: Path | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    address: str | None = None,
    progress: bool = True,
    force: bool = False,
    console: Console | None = None,
) -> pd.DataFrame:
    """Run every cell of a sweep as a Ray task and return the status table (one row per cell:
    its grid values, run_dir, status done|skipped|failed, error, seconds, peak_rss_mb).

    Cells whose stages are all current are skipped without a task; a failing cell is recorded
    with its one-line error and does not stop the others. Writes OUT/status.csv, the tidy table
    OUT/sweep.csv and the report OUT/sweep.html. A local Ray is started with `num_cpus` /
    `num_gpus` (default: all of this machine) unless `address` names a running cluster.
    """
    console = console or Console()
    sweep_yaml = Path(sweep_yaml)
    spec, base = load_sweep(sweep_yaml)
    out = Path(out) if out is not None else Path("sweeps") / (spec.name or sweep_yaml.stem)
    from rashomon.run import STAGE_ORDER

    stages = tuple(spec.stages) if spec.stages else STAGE_ORDER
    cells = expand_grid(spec, base)
    (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)

    status: dict[str, dict[str, Any]] = {}
    todo: list[Cell] = []
    for cell in cells:
        run_dir = out / CELLS_DIR / cell.name
        row = {
            "cell": cell.name,
            **cell.columns,
            "run_dir": str(run_dir),
            "status": "pending",
            "error": "",
            "seconds": float("nan"),
            "peak_rss_mb": float("nan"),
        }
        status[cell.name] = row
        if cell.error:
            row.update(status="failed", error=cell.error)
        elif not force and cell.cfg is not None and cell_is_finished(run_dir, cell.cfg, stages):
            row["status"] = "skipped"
        else:
            todo.append(cell)
    skipped = sum(r["status"] == "skipped" for r in status.values())
    invalid = sum(r["status"] == "failed" for r in status.values())
    console.print(
        f"sweep {out}: {len(cells)} cells, {skipped} finished (skipped), {invalid} invalid, "
        f"{len(todo)} to run; stages {', '.join(stages)}"
    )
    for row in status.values():
        if row["status"] == "failed":
            console.print(f"[red]✗ {row['cell']}[/red]: {row['error']}", highlight=False)

    if todo:
        _run_cells(
            todo,
            status,
            out,
            spec,
            stages,
            force,
            num_cpus,
            num_gpus,
            address,
            progress,
            console,
            cells,
        )

    table = pd.DataFrame(list(status.values()))
    _write_csv(table, out / STATUS_FILE)
    tidy = collect_sweep(out)
    _write_csv(tidy, out / TABLE_FILE)
    write_sweep_report(out, table, tidy, axes=list(spec.grid))
    counts = table["status"].value_counts().to_dict()
    console.print(
        f"sweep {out}: done {counts.get('done', 0)}, skipped {counts.get('skipped', 0)}, "
        f"failed {counts.get('failed', 0)}; table {out / TABLE_FILE}, report {out / REPORT_FILE}"
    )
    return table


def _run_cells(
    todo, status, out, spec, stages, force, num_cpus, num_gpus, address, progress, console, cells
) -> None:
    import ray

    started = start_ray(num_cpus, num_gpus, address)
    try:
        cluster = ray.cluster_resources()
        slots = concurrent_slots(spec.resources, cluster)
        budget = cell_memory_budget(spec, slots, cluster)
        # A fresh worker per cell returns its memory and keeps a crash local (max_calls=0:
        # unlimited reuse).
        max_calls = 0 if spec.reuse_workers else 1
        remote = ray.remote(max_calls=max_calls, max_retries=0)(run_cell).options(
            num_cpus=spec.resources.num_cpus, num_gpus=spec.resources.num_gpus
        )
        threads = max(1, int(spec.resources.num_cpus))

        def launch(batch, batch_stages, table) -> dict:
            refs = {}
            for cell in batch:
                cfg = cell.cfg
                if budget is not None and cfg.sample.max_memory is None:
                    cfg = cfg.model_copy(
                        update={"sample": cfg.sample.model_copy(update={"max_memory": budget})}
                    )
                run_dir = str(out / CELLS_DIR / cell.name)
                ref = remote.remote(
                    run_dir, cfg.model_dump(mode="json"), list(batch_stages), force, threads
                )
                refs[ref] = cell.name
                table[cell.name]["status"] = "queued"
            return refs

        console.print(
            f"ray: {cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU; {slots} cells "
            f"at once; per-cell memory budget {budget or 'default'}"
        )
        trained: set[str] = set()  # cells whose train stage is done by the shared step
        if "train" in stages:
            trained = _train_shared_maps(
                todo, cells, status, out, force, progress, console, launch, slots
            )
        plain = [c for c in todo if c.name not in trained and status[c.name]["status"] != "failed"]
        rest = [c for c in todo if c.name in trained and status[c.name]["status"] != "failed"]
        after_train = tuple(s for s in stages if s != "train")
        refs = launch(plain, stages, status)
        if after_train:
            refs.update(launch(rest, after_train, status))
        else:
            for c in rest:
                status[c.name]["status"] = "done"
        _wait(refs, status, slots, progress, console)
    finally:
        if started:
            ray.shutdown()


def _train_shared_maps(todo, cells, status, out, force, progress, console, launch, slots) -> set:
    """Train each MAP model once for all the cells that share it (same data, seed and train
    section: the cells differ only in the set, evaluation or decision), then copy it into those
    cells. Returns the names of the cells whose train stage is now in place; a cell whose
    shared MAP training failed is marked failed with that error."""
    from rashomon.run import adopt_stage, stage_is_current

    train_key = {c.name: c.cfg.section_hash("train") for c in cells if c.cfg is not None}
    groups: dict[str, list[Cell]] = {}
    for cell in todo:
        groups.setdefault(train_key[cell.name], []).append(cell)
    # group -> the cell holding its MAP model: one finished in any cell of the sweep (a skipped
    # one too) serves the whole group; otherwise a group of several trains it in its first cell.
    sources: dict[str, Cell] = {}
    if not force:
        for c in cells:
            key = train_key.get(c.name)
            if key in groups and key not in sources:
                if stage_is_current(out / CELLS_DIR / c.name, c.cfg, "train"):
                    sources[key] = c
    leaders = []
    for key, members in groups.items():
        if key not in sources and len(members) > 1:
            sources[key] = members[0]
            leaders.append(members[0])
    if leaders:
        shared = sum(len(groups[k]) for k, c in sources.items() if c in leaders)
        console.print(f"training {len(leaders)} MAP model(s) once for {shared} cells")
        table = {c.name: dict(status[c.name]) for c in leaders}
        _wait(launch(leaders, ("train",), table), table, slots, progress, console)
        for c in leaders:
            if table[c.name]["status"] == "failed":
                for member in groups[train_key[c.name]]:
                    status[member.name].update(
                        status="failed", error=f"MAP training failed: {table[c.name]['error']}"
                    )
    placed = set()
    for key, source in sources.items():
        source_dir = out / CELLS_DIR / source.name
        for member in groups[key]:
            if status[member.name]["status"] == "failed" or member.cfg is None:  # no config: failed
                continue
            run_dir = out / CELLS_DIR / member.name
            try:
                if member.name != source.name and (
                    force or not stage_is_current(run_dir, member.cfg, "train")
                ):
                    adopt_stage(source_dir, run_dir, member.cfg, "train")
                placed.add(member.name)
            except (RashomonError, OSError) as exc:
                status[member.name].update(status="failed", error=one_line(exc))
    return placed


def _wait(refs, status, slots, progress, console) -> None:
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = len(refs)
    counts = {"done": 0, "failed": 0}

    def describe() -> str:
        pending = len(refs)
        running = min(pending, slots)
        return (
            f"done {counts['done']} · failed {counts['failed']} · running {running} · "
            f"queued {pending - running}"
        )

    bar = Progress(
        TextColumn("cells"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=False,
    )
    with bar:
        task_id = bar.add_task(describe(), total=total)
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for ref in ready:
                    name = refs.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the worker died (killed for memory, crashed)
                        result = {"status": "failed", "error": one_line(exc)}
                    status[name].update(result)
                    counts[result["status"]] += 1
                    if result["status"] == "done":
                        bar.console.print(f"[green]✓ {name}[/green] ({result['seconds']} s)")
                    else:
                        bar.console.print(
                            f"[red]✗ {name}[/red]: {result['error']}", highlight=False
                        )
                    bar.advance(task_id)
                bar.update(task_id, description=describe())
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_csv(tmp, index=False)
    tmp.replace(path)


def write_sweep_report(
    out: Path, status: pd.DataFrame, tidy: pd.DataFrame, axes: list[str]
) -> Path:
    """Write OUT/sweep.html: every cell's status, the headline numbers per cell and each of them
    against every numeric grid axis. Returns its path."""
    from rashomon.report.sweep_page import render_sweep_page

    keys = [a for a in axes if a in status.columns]
    head = headline_table(tidy, ["cell", *keys])
    studies = axis_studies(head, keys) if len(head.columns) > 1 + len(keys) else {}
    page = render_sweep_page(status, head, studies, keys, title=f"rashomon sweep: {Path(out).name}")
    path = Path(out) / REPORT_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
