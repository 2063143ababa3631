"""Run directories and stages.

A run directory holds the resolved config, the environment (package versions, seeds) and one
folder per finished stage. A stage writes into `<stage>.tmp-<pid>/`, which is renamed to
`<stage>/` only when the stage succeeds; its completion record is written last. A record holds
the hash of the config sections the stage reads, the fingerprint of the data files it reads
(without patient attributes for train and sample: `DataIdentity`), the ids of the upstream
stages' records it read and the size and sha256 of every file it wrote, so a stage is current
only when its config, its data, every stage it read and its own files are unchanged. Re-running
skips current stages; `--force` redoes them from their inputs; an interrupted stage leaves only
a temporary folder, removed on the next run, and earlier stages intact.

`config.yaml` is written when a stage commits (the config the finished stages ran under), never
by a command that fails before finishing one. One process at a time works in a run directory:
`run_lock` holds an exclusive lock on `<run>/.lock` for the whole command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from rashomon import schema as S
from rashomon.config import RunConfig, dump_config, load_config
from rashomon.context import StageContext
from rashomon.data.task import Task
from rashomon.decide.stage import run_decide_stage
from rashomon.errors import RashomonError, write_error
from rashomon.evaluate.stage import run_evaluate_stage
from rashomon.models.stage import run_train_stage
from rashomon.report.stage import run_report_stage
from rashomon.sets.stage import run_sample_stage
from rashomon.validate import run_validate_stage

__all__ = [
    "STAGES",
    "STAGE_ORDER",
    "Stage",
    "StageContext",
    "DataIdentity",
    "adopt_stage",
    "check_run_dir",
    "data_fingerprint",
    "data_identity",
    "prepare_run_dir",
    "run_lock",
    "run_pipeline",
    "run_stage",
    "stage_files",
    "stage_is_current",
    "stage_status",
]


def _always(cfg: RunConfig) -> bool:
    return True


def _never(cfg: RunConfig) -> bool:
    return False


def _sample_reads_attributes(cfg: RunConfig) -> bool:
    """A set source that trains networks group-balanced (the retrain source's
    `choices: {group_balanced: [sex]}`) reads a patient attribute; no other does."""
    return "group_balanced" in json.dumps(cfg.sample.identity(), default=str)


@dataclass(frozen=True)
class Stage:
    """One stage: its function, the config sections it reads, the stages whose outputs it reads, its
    help."""

    name: str
    run: Callable[[StageContext], None]  # the stage function
    sections: tuple[str, ...]  # config sections the stage reads (its input identity)
    after: tuple[str, ...]  # stages whose outputs it reads
    help: str
    # Finished stages it reads when they are there (the report's validity section reads
    # validate): not required, but a new run of one makes this stage out of date.
    optional: tuple[str, ...] = ()
    # Whether the stage reads patient attributes (attribute CSV, a label CSV's columns beyond
    # path,label,split): when not, they are left out of its identity (`DataIdentity.task`).
    reads_attributes: Callable[[RunConfig], bool] = _always

    def data(self, identity: DataIdentity, cfg: RunConfig) -> str:
        """The fingerprint of the data this stage reads."""
        return identity.full if self.reads_attributes(cfg) else identity.task

    def config_hash(self, cfg: RunConfig) -> str:
        """The hash of the config sections this stage reads."""
        return cfg.section_hash(*self.sections, attributes=self.reads_attributes(cfg))


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "train",
            run_train_stage,
            ("train",),
            (),
            "train the MAP model",
            reads_attributes=_never,
        ),
        Stage(
            "sample",
            run_sample_stage,
            ("train", "sample"),
            ("train",),
            "build the model set and predict val/test",
            reads_attributes=_sample_reads_attributes,
        ),
        Stage(
            "evaluate",
            run_evaluate_stage,
            ("train", "sample", "evaluate"),
            ("train", "sample"),
            "multiplicity and desiderata across the Rashomon set",
        ),
        Stage(
            "decide",
            run_decide_stage,
            ("train", "sample", "evaluate", "decide"),
            ("train", "sample", "evaluate"),
            "best-in-set selection, ensembles with abstention, LSI",
        ),
        Stage(
            "report",
            run_report_stage,
            ("train", "sample", "evaluate", "decide"),
            ("train", "sample", "evaluate", "decide"),
            "the HTML report",
            optional=("validate",),
        ),
        Stage(
            "validate",
            run_validate_stage,
            ("train", "sample", "validity"),
            ("train", "sample"),
            "retrain K seeds and measure how much of their multiplicity the set finds",
        ),
    )
}
# What `rashomon run` does by default; validate (K retrained networks) only when asked.
STAGE_ORDER = ("train", "sample", "evaluate", "decide", "report")
CONFIG_FILE = S.CONFIG
RECORDS_FILE = S.RECORDS
ENV_FILE = S.ENVIRONMENT
LOCK_FILE = S.LOCK
HASH_CACHE_FILE = ".file-hashes.json"


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
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise (write_error(exc, path) or exc) from exc


def read_records(run_dir: Path) -> dict[str, dict]:
    """The run's stage records; an unreadable stages.json is a one-line error with the fix."""
    return S.stage_records(run_dir)


# --------------------------------------------------------------------------- data identity


@dataclass(frozen=True)
class DataIdentity:
    """Content fingerprints of the run's data files. `full`: every file the task reads, patient
    attributes included. `task`: without them (the attribute CSV left out, a folder task's label
    CSV by its path, label and split columns): what the stages that never read an attribute
    (train, sample) depend on, so adding or editing attributes leaves them current."""

    full: str
    task: str


def data_identity(
    cfg: RunConfig, run_dir: Path | None = None, verify: bool = False
) -> DataIdentity:
    """Both fingerprints of the run's data files (each file read once); `verify` re-hashes the
    large files too instead of trusting their cached digest (`--verify-data`)."""
    from rashomon.data.files import data_files, is_folder_dataset
    from rashomon.fingerprint import digests_fingerprint, file_digests

    d = cfg.data
    files = data_files(
        d.dataset, root=d.root, size=d.size, labels=d.labels, attributes_csv=d.attributes_csv
    )
    attributes = files[-1:] if d.attributes_csv is not None else []  # data_files lists it last
    cache = Path(run_dir) / HASH_CACHE_FILE if run_dir is not None else None
    digests = file_digests(files, cache, verify)
    left_out = {str(p.resolve()) for p in attributes}
    task = {p: v for p, v in digests.items() if p not in left_out}
    if is_folder_dataset(d.dataset):
        from rashomon.data.folder import label_columns_digest, label_csv_path

        csv = label_csv_path(d.dataset, d.labels).resolve()
        task[str(csv)] = label_columns_digest(csv)
    return DataIdentity(full=digests_fingerprint(digests), task=digests_fingerprint(task))


def data_fingerprint(cfg: RunConfig, run_dir: Path | None = None, verify: bool = False) -> str:
    """Fingerprint of the content of every data file the run's task reads (`verify`: as in
    `data_identity`)."""
    return data_identity(cfg, run_dir, verify).full


def task_loader(cfg: RunConfig) -> Callable[[], Task]:
    def load() -> Task:
        from rashomon.api import load_task

        return load_task(cfg.data.dataset, seed=cfg.seed, **cfg.data.loader_options())

    return load


# --------------------------------------------------------------------------- locking


def ensure_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RashomonError(
            f"cannot write to {run_dir} ({exc.strerror}); choose another run directory (--out "
            "of rashomon run)"
        ) from exc


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None: it exists)."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this process; a second process gets a one-line error naming
    the holder. The lock is the kernel's (flock): it goes away with the process, even on kill -9.

    A command that creates the run directory and fails before any stage finished removes the
    folders it created, so a refused command leaves nothing behind."""
    created = _first_missing(Path(run_dir).absolute())
    ensure_writable(run_dir)
    f = open(run_dir / LOCK_FILE, "a+")
    held = False
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RashomonError(
                f"{run_dir} is in use by {holder}; wait for it to finish, or work in another "
                "run directory"
            ) from None
        held = True
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} ({' '.join(Path(a).name for a in sys.argv[:2])})")
        f.flush()
        yield
    except BaseException:
        if held and created is not None and not (run_dir / RECORDS_FILE).exists():
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        # Only the holder clears the record: a refused contender leaves the holder's in place.
        if held:
            with contextlib.suppress(OSError):
                f.seek(0)
                f.truncate()
        f.close()


# --------------------------------------------------------------------------- preparing

# Files a command writes in a run directory before its first stage finishes: a folder holding
# only these (or nothing) is a new run, not someone else's folder.
RUN_SCAFFOLD = frozenset({LOCK_FILE, ENV_FILE, HASH_CACHE_FILE})


def check_run_dir(run_dir: Path, new_run: bool, config_given: bool = False) -> None:
    """Refuse, before writing anything, a directory a command must not work in: a folder that
    is not a run (a data folder); a run whose config.yaml is gone (its stages would be redone
    under the defaults) unless a config is given; a missing or empty one unless `new_run`
    (`rashomon run` and `train` start runs, the later stages need one)."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_FILE).exists():
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise RashomonError(f"{run_dir} is a file, not a run directory; give a run directory")
    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if (run_dir / RECORDS_FILE).exists() or any((run_dir / s).is_dir() for s in STAGES):
        if config_given:
            return
        raise RashomonError(
            f"{run_dir} holds finished stages but no {CONFIG_FILE}; restore it (the config those "
            "stages ran under) or give that config with --config, so no stage is redone under "
            "the defaults"
        )
    foreign = [n for n in entries if n not in RUN_SCAFFOLD and ".tmp-" not in n]
    if foreign:
        raise RashomonError(
            f"{run_dir} is not a run directory (no {CONFIG_FILE}; it holds {foreign[0]!r}"
            f"{' and more' if len(foreign) > 1 else ''}); give a new or empty folder for a run"
        )
    if not new_run:
        state = "does not exist" if not run_dir.exists() else f"has no {CONFIG_FILE}"
        raise RashomonError(
            f"{run_dir} is not a run directory (it {state}); start the run first with "
            f"`rashomon run --out {run_dir}` or `rashomon train {run_dir}`"
        )


def _other_experiment(old: RunConfig, new: RunConfig) -> str | None:
    """What makes `new` another experiment than `old` (None: the same): the dataset (a name, or
    the same folder wherever it is given from), its label file (however it is named), the image
    size or the seed. Where the data files live (data.root) and their content are checked by the
    fingerprint instead."""
    a, b = old.data, new.data

    def where(dataset: str) -> str:
        p = Path(dataset).expanduser()
        return str(p.resolve()) if p.is_dir() else dataset.lower()

    if where(a.dataset) != where(b.dataset):
        return f"another dataset ({a.dataset}; this command: {b.dataset})"
    if a.label_file() != b.label_file():
        return f"another label file ({a.label_file()}; this command: {b.label_file()})"
    if a.size != b.size:
        return f"another image size ({a.size}; this command: {b.size})"
    if old.seed != new.seed:
        return f"another seed ({old.seed}; this command: {new.seed})"
    return None


def prepare_run_dir(run_dir: Path, cfg: RunConfig, resume_only: bool = False) -> None:
    """Create the run directory and save the environment; refuse a directory holding a run of
    another dataset, label file, size or seed (its stages belong to another experiment). Other
    sections may change: stages depending on them re-run."""
    ensure_writable(run_dir)
    cfg_file = run_dir / CONFIG_FILE
    if cfg_file.exists():
        other = _other_experiment(load_config(cfg_file), cfg)
        if other is not None:
            raise RashomonError(
                f"{run_dir} holds a run of {other}; give a new run directory (rashomon run "
                "--out) or delete that one"
            )
    for stale in run_dir.glob("*.tmp-*"):  # left by an interrupted stage
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "seed": cfg.seed,
        "device": cfg.device,
    }
    write_text_atomic(run_dir / ENV_FILE, json.dumps(env, indent=2))


# --------------------------------------------------------------------------- status


def stage_files(run_dir: Path, name: str) -> dict[str, dict[str, Any]]:
    """Every file of a finished stage's folder: {path in the folder: {size, sha256}}, the list
    its record keeps so that a missing, truncated or overwritten file is found."""
    from rashomon.fingerprint import file_digests

    folder = Path(run_dir) / name
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    digests = file_digests(paths, Path(run_dir) / HASH_CACHE_FILE, small_file=0)
    return {
        p.relative_to(folder).as_posix(): {
            "size": p.stat().st_size,
            "sha256": digests[str(p.resolve())],
        }
        for p in paths
    }


def _files_problem(run_dir: Path, name: str, rec: dict[str, Any]) -> str | None:
    """Why a finished stage's files are not the ones it wrote (None when they are): a file its
    record lists is missing, or its size or content changed. Content is read again only for a
    file whose size or mtime changed since it was last hashed (`.file-hashes.json`). Records
    written before stages listed their files are not checked."""
    from rashomon.fingerprint import file_digests

    listed = rec.get("files")
    if not isinstance(listed, dict):
        return None
    folder = Path(run_dir) / name
    for rel, meta in listed.items():
        try:
            size = (folder / rel).stat().st_size
        except OSError:
            return f"lost its file {name}/{rel}"
        if size != meta.get("size"):
            return f"has a file changed since it wrote it ({name}/{rel})"
    digests = file_digests(
        [folder / rel for rel in listed], Path(run_dir) / HASH_CACHE_FILE, small_file=0
    )
    for rel, meta in listed.items():
        if digests.get(str((folder / rel).resolve())) != meta.get("sha256"):
            return f"has a file changed since it wrote it ({name}/{rel})"
    return None


def _present(records: dict[str, dict], name: str) -> str | None:
    """The record id of an optional input, None when that stage has not run."""
    return records.get(name, {}).get("id")


def stage_status(
    run_dir: Path, cfg: RunConfig, name: str, data: DataIdentity | None = None
) -> tuple[bool, str]:
    """(current?, why not): a stage is current when it has run with this config section hash
    and this data, its files are the ones it wrote, every stage it read is current and is the
    run it read (not redone since), and the optional stages it reads are the runs it read."""
    records = read_records(run_dir)
    data = data if data is not None else data_identity(cfg, run_dir)
    return _status(run_dir, cfg, name, data, records)


def _status(
    run_dir: Path,
    cfg: RunConfig,
    name: str,
    data: DataIdentity,
    records: dict[str, dict],
    memo: dict[str, tuple[bool, str]] | None = None,
) -> tuple[bool, str]:
    memo = {} if memo is None else memo
    if name not in memo:
        memo[name] = _status_of(run_dir, cfg, name, data, records, memo)
    return memo[name]


def _status_of(
    run_dir: Path,
    cfg: RunConfig,
    name: str,
    data: DataIdentity,
    records: dict[str, dict],
    memo: dict[str, tuple[bool, str]],
) -> tuple[bool, str]:
    rec = records.get(name)
    stage = STAGES[name]
    if rec is None or not (run_dir / name).is_dir():
        return False, "has not run"
    if rec.get("hash") != stage.config_hash(cfg):
        return False, "ran with another config"
    if rec.get("data") != stage.data(data, cfg):
        return False, "ran on other data (its data files changed)"
    problem = _files_problem(run_dir, name, rec)
    if problem is not None:
        return False, problem
    for dep in stage.after:
        ok, _ = _status(run_dir, cfg, dep, data, records, memo)
        if not ok:
            return False, f"read stage {dep!r}, which is out of date"
        if rec.get("inputs", {}).get(dep) != records[dep].get("id"):
            return False, f"read an earlier run of stage {dep!r} (redone since)"
    for dep in stage.optional:
        if rec.get("inputs", {}).get(dep) != _present(records, dep):
            return False, f"read another run of stage {dep!r} than the one the run now holds"
    return True, "up to date"


def stage_is_current(
    run_dir: Path, cfg: RunConfig, name: str, data: DataIdentity | None = None
) -> bool:
    """Whether stage `name` of the run is done with the current config and data."""
    return stage_status(run_dir, cfg, name, data)[0]


# --------------------------------------------------------------------------- running


def run_stage(
    run_dir: Path,
    cfg: RunConfig,
    name: str,
    force: bool = False,
    progress: bool = True,
    console: Console | None = None,
    data: DataIdentity | None = None,
) -> dict[str, Any] | None:
    """Run one stage unless it is current; returns its summary (None when skipped). Every
    stage it reads must be current: a stale one is an error naming the stage to redo. `force`
    redoes the stage from its inputs, reusing nothing of its previous run."""
    console = console or Console()
    data = data if data is not None else data_identity(cfg, run_dir)
    records = read_records(run_dir)
    memo: dict[str, tuple[bool, str]] = {}
    if not force and _status(run_dir, cfg, name, data, records, memo)[0]:
        console.print(f"[dim]✓ {name}: up to date, skipped (use --force to redo)[/dim]")
        return None
    stage = STAGES[name]
    for dep in stage.after:
        ok, why = _status(run_dir, cfg, dep, data, records, memo)
        if not ok:
            raise RashomonError(
                f"stage {name!r} reads stage {dep!r}, which {why}; run `rashomon {dep} "
                f"{run_dir}` first, or `rashomon run` to redo every stage that needs it"
            )
    # What a stage may reuse of its previous run (the sample stage's set, when only ε changed):
    # nothing under --force, nor from a run whose files are not the ones it wrote.
    previous = records.get(name)
    if force or (previous is not None and _files_problem(run_dir, name, previous) is not None):
        previous = None
    tmp = run_dir / f"{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    ctx = StageContext(
        cfg,
        run_dir,
        tmp,
        name,
        progress=progress,
        console=console,
        loader=task_loader(cfg),
        previous=previous,
        data=stage.data(data, cfg),
        attributes=stage.reads_attributes(cfg),
    )
    console.print(f"[bold]▶ {name}[/bold]: {stage.help}")
    start = time.perf_counter()
    try:
        stage.run(ctx)
    except OSError as exc:  # a full disk: name where the stage was writing
        shutil.rmtree(tmp, ignore_errors=True)
        raise (write_error(exc, exc.filename or tmp) or exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    ctx.summary.setdefault("seconds", round(seconds, 2))
    (tmp / S.SUMMARY).write_text(json.dumps(ctx.summary, indent=2, default=str))
    _commit_stage(run_dir, cfg, name, tmp, {"seconds": round(seconds, 2)}, data)
    return ctx.summary


def make_record(
    cfg: RunConfig,
    name: str,
    records: dict[str, dict],
    data: DataIdentity,
    run_dir: Path | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A completion record: what the stage read (config hash, data, upstream record ids) and,
    given the run directory, the files it wrote (`stage_files`)."""
    stage = STAGES[name]
    inputs = {dep: records.get(dep, {}).get("id") for dep in stage.after}
    inputs.update({dep: _present(records, dep) for dep in stage.optional})
    record = {
        "hash": stage.config_hash(cfg),
        "data": stage.data(data, cfg),
        "inputs": inputs,
        "id": uuid.uuid4().hex[:12],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    if run_dir is not None:
        record["files"] = stage_files(run_dir, name)
    return record


def _commit_stage(
    run_dir: Path,
    cfg: RunConfig,
    name: str,
    tmp: Path,
    record: dict[str, Any],
    data: DataIdentity,
) -> None:
    """Rename a stage's finished temporary folder into place, write its completion record and
    the config it ran under."""
    final = run_dir / name
    records = read_records(run_dir)
    old = run_dir / f"{name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    records[name] = make_record(cfg, name, records, data, run_dir, **record)
    write_text_atomic(run_dir / RECORDS_FILE, json.dumps(records, indent=2))
    write_text_atomic(run_dir / CONFIG_FILE, dump_config(cfg))


def adopt_stage(source: Path, run_dir: Path, cfg: RunConfig, name: str) -> None:
    """Copy a finished stage from another run directory whose inputs are the same (the MAP model
    shared by the cells of a sweep), so it is computed once; the record names where it came from."""
    data = data_identity(cfg, run_dir)
    if not stage_is_current(source, cfg, name, data):
        raise RashomonError(
            f"{source} has no current {name!r} stage for this config; run it there first"
        )
    with run_lock(run_dir):
        prepare_run_dir(run_dir, cfg)
        tmp = run_dir / f"{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source / name, tmp)
        seconds = read_records(source)[name].get("seconds")
        _commit_stage(
            run_dir, cfg, name, tmp, {"seconds": seconds, "copied_from": str(source)}, data
        )


def run_pipeline(
    run_dir: Path,
    cfg: RunConfig,
    stages: tuple[str, ...] = STAGE_ORDER,
    force: bool = False,
    progress: bool = True,
    console: Console | None = None,
    verify_data: bool = False,
) -> dict[str, dict[str, Any] | None]:
    """Lock and prepare the run directory and run the stages in order; `verify_data` re-hashes
    every data file (`data_fingerprint`)."""
    with run_lock(run_dir):
        prepare_run_dir(run_dir, cfg)
        data = data_identity(cfg, run_dir, verify=verify_data)
        return {s: run_stage(run_dir, cfg, s, force, progress, console, data) for s in stages}
