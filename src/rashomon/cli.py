"""`rashomon` command line: a thin layer over the Python API and the staged run."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rashomon.errors import RashomonError, write_error

app = typer.Typer(
    help="Audit predictive multiplicity and desiderata (fairness, robustness, calibration) "
    "across Rashomon sets of medical imaging models, sampled from one trained network with "
    "(Riemannian) Laplace approximations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": os.environ.get("RASHOMON_DEBUG") == "1"}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = _state["debug"] or debug


def guarded(fn):
    """One-line errors and a non-zero exit instead of tracebacks (unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted: finished stages are kept; re-run the command to resume")
            raise typer.Exit(130) from None
        except RashomonError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Exception as exc:  # unexpected: still one line by default
            if _state["debug"]:
                raise
            # a full disk or a permission error on a write that no writer named: the user's fix
            known = write_error(exc) if isinstance(exc, OSError) else None
            if known is not None:
                err_console.print(f"[red]error:[/red] {known}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            err_console.print(
                f"[red]error:[/red] {type(exc).__name__}: {exc} (re-run with --debug for the "
                "traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


# --------------------------------------------------------------------------- config flags
#
# A flag that sets one config field is declared once, here, in a group; a command takes groups
# with `@with_flags(...)` and receives the flags that were given as one mapping of dotted
# config fields (`overrides`) for `load_config`.


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets the config field `key` (`--name`, from the parameter)."""

    name: str
    key: str
    option: Any  # Annotated[type | None, typer.Option(...)]
    # value -> dotted overrides; default {key: value}
    expand: Callable[[Any], dict[str, Any]] | None = None

    def overrides(self, value: Any) -> dict[str, Any]:
        """The dotted config overrides this flag's `value` sets."""
        return self.expand(value) if self.expand else {self.key: value}


def _group(
    panel: str | None, *rows: tuple, expand: Mapping[str, Callable] | None = None
) -> tuple[Flag, ...]:
    """Flags from rows (name, config key, type, help[, option declarations]) shown under
    `panel` in --help; `expand` maps a flag name to its own value -> overrides function."""
    flags = []
    for name, key, kind, text, *decls in rows:
        option = typer.Option(*decls, help=text, rich_help_panel=panel)
        flags.append(Flag(name, key, Annotated[kind | None, option], (expand or {}).get(name)))
    return tuple(flags)


def source_option_values(items: list[str]) -> dict[str, Any]:
    """`-o KEY=VALUE` items as {KEY: VALUE}, VALUE read as YAML; one-line errors."""
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RashomonError(f"--option {item!r} is not KEY=VALUE; write e.g. -o prior=grid")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or type(exc).__name__).split())
            raise RashomonError(
                f"--option {item!r}: the value is not valid YAML ({problem}); quote it, e.g. "
                f"-o '{key.strip()}=\"...\"'"
            ) from exc
    return out


def _source_options_overrides(items: list[str]) -> dict[str, Any]:
    return {f"sample.options.{k}": v for k, v in source_option_values(items).items()}


def _source_help() -> str:
    from rashomon.sets.registry import source_names

    return f"Model set source: {', '.join(source_names())} (any registered source)."


def _alias(name: str, kind: Any, text: str, *decls: str) -> tuple:
    """A common source option as a flag: the same as `-o NAME=VALUE` (the source's options
    model alone checks it)."""
    return (name, f"sample.options.{name}", kind, f"{text} The same as -o {name}=VALUE.", *decls)


DATA_FLAGS = _group(
    "Data",
    ("dataset", "data.dataset", str, "MedMNIST name, or a folder of images with a label CSV."),
    ("data_root", "data.root", str, "Folder of MedMNIST npz files (default $RASHOMON_DATA)."),
    ("size", "data.size", int, "Image size: 28, 64, 128 or 224 (folders: any, resized)."),
    ("attributes", "data.attributes_csv", str, "CSV of patient attributes: split,index,<attr>…"),
    (
        "labels",
        "data.labels",
        str,
        "Folder tasks: the label CSV, a file or a name in the folder (default labels.csv).",
    ),
    ("channels", "data.channels", int, "Folder tasks: 1 (grey) or 3 (RGB); default from images."),
)
TRAIN_FLAGS = _group(
    "Training",
    ("arch", "train.arch", str, "Architecture: cnn-small, cnn, resnet18, mlp (or --model)."),
    (
        "model",
        "train.arch",
        str,
        "Your own network instead of --arch: pkg.module:function (a builder; trained here unless "
        "--weights is given) or a file of a whole network saved with torch.save (audited as is).",
    ),
    ("weights", "train.weights", str, "Trained weights (a state dict) of --model: no training."),
    ("last_layer", "train.last_layer", str, "Name of --model's final nn.Linear (default: found)."),
    ("width", "train.width", float, "Width multiplier (arch cnn)."),
    ("dropout", "train.dropout", float, "Dropout before the head (dropout sets)."),
    ("activation", "train.activation", str, "relu, tanh or gelu."),
    ("epochs", "train.epochs", int, "Maximum training epochs."),
    ("lr", "train.lr", float, "Learning rate."),
    ("seed", "seed", int, "Seed fixing every draw."),
)
SAMPLE_FLAGS = _group(
    "Model set",
    ("source", "sample.source", str, _source_help()),
    (
        "option",
        "sample.options",
        list[str],
        "A source option KEY=VALUE (VALUE read as YAML), repeatable: -o prior=grid.",
        "--option",
        "-o",
    ),
    ("models", "sample.models", int, "Number of models M in the set."),
    _alias("subset", str, "Weights that vary: last_layer, all, subnetwork."),
    _alias("hessian", str, "Laplace Hessian: diag, kron, full, lowrank."),
    _alias("prior", str, "Prior precision: marglik, grid or a number."),
    _alias("kind", str, "nn (sampled networks) or glm (linearized)."),
    _alias("linearized", bool, "Riemannian: linearized network.", "--linearized/--exact"),
    ("epsilon", "sample.epsilon", float, "Rashomon ε (relative validation loss)."),
    ("max_memory", "sample.max_memory", str, "Memory budget for predictions, e.g. 4GB."),
    expand={"option": _source_options_overrides},
)
DEVICE_FLAGS = _group(None, ("device", "device", str, "cpu or cuda."))
FLAGS = {
    f.name: f for group in (DATA_FLAGS, TRAIN_FLAGS, SAMPLE_FLAGS, DEVICE_FLAGS) for f in group
}
# Flags that set one field two ways: giving both is an error, not a silent winner.
EXCLUSIVE = (("arch", "model"),)


def flag_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted config fields that the given flags (`values`: flag name -> value, None when
    not given) set; two flags setting one field differently is a one-line error."""
    for pair in EXCLUSIVE:
        given = [name for name in pair if values.get(name) is not None]
        if len(given) > 1:
            flags = " and ".join(f"--{n.replace('_', '-')}" for n in given)
            raise RashomonError(
                f"{flags} both set {FLAGS[pair[0]].key}; give one of them (--model for your own "
                "network, --arch for a built-in architecture)"
            )
    out: dict[str, Any] = {}
    setter: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        for key, item in FLAGS[name].overrides(value).items():
            if key in out and out[key] != item:
                raise RashomonError(
                    f"--{setter[key].replace('_', '-')} and --{name.replace('_', '-')} both set "
                    f"{key} ({out[key]!r}, {item!r}); give one of them"
                )
            out[key], setter[key] = item, name
    return out


def with_flags(*groups: tuple[Flag, ...]) -> Callable:
    """Give a command the flags of `groups` in place of its `overrides` parameter; the command
    receives `overrides`, the config fields the given flags set (`flag_overrides`)."""
    flags = [f for group in groups for f in group]

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn, eval_str=True)
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name != "overrides":
                params.append(p)
                continue
            params += [
                inspect.Parameter(
                    f.name, p.POSITIONAL_OR_KEYWORD, default=None, annotation=f.option
                )
                for f in flags
            ]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name, None) for f in flags}
            return fn(*args, overrides=flag_overrides(values), **kwargs)

        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


ConfigArg = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config; flags override it.")
]
DataRoot = Annotated[
    str | None, typer.Option(help="Folder of MedMNIST npz files (default $RASHOMON_DATA).")
]
Force = Annotated[bool, typer.Option("--force", help="Redo stages even if up to date.")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")]
VerifyData = Annotated[
    bool,
    typer.Option(
        "--verify-data",
        help="Re-hash every data file, not only those up to 1 MiB: sees an edit to a large file "
        "that kept its size and mtime (cp -p, rsync -t), at the cost of reading all the data.",
    ),
]
Overrides = dict[str, Any]  # replaced by the flags of `with_flags`


def _csv(value: str) -> list[str]:
    """A comma-separated flag value as a list; 'none' is the empty list."""
    return [] if value == "none" else [v.strip() for v in value.split(",") if v.strip()]


def _resolve(config: Path | None, overrides: Overrides, run_dir: Path | None = None):
    """The command's config: `config`, else the run's config.yaml, else the defaults, with the
    flags' `overrides`; a new corruption list is checked here, before anything is saved."""
    from rashomon.config import check_corruptions, load_config

    saved = run_dir / "config.yaml" if run_dir is not None else None
    if saved is None or not saved.exists():
        cfg = load_config(config, overrides)
        check_corruptions(cfg)
        return cfg
    cfg = load_config(config or saved, overrides)
    old = load_config(saved)
    if cfg.evaluate.corruptions != old.evaluate.corruptions:
        check_corruptions(cfg)
    # `--labels labels.csv` on a run made without it names the same file: keep the run's
    # spelling, so its stages stay current.
    same_file = cfg.data.label_file() is not None and old.data.label_file() == cfg.data.label_file()
    if old.data.labels != cfg.data.labels and same_file:
        data = cfg.data.model_copy(update={"labels": old.data.labels})
        cfg = cfg.model_copy(update={"data": data})
    return cfg


def _show_summary(results: dict[str, dict | None], run_dir: Path, cfg: Any) -> None:
    table = Table(title=f"rashomon run: {run_dir}", show_lines=False)
    table.add_column("stage")
    table.add_column("result")
    for stage, summary in results.items():
        if summary is None:
            table.add_row(stage, "[dim]up to date[/dim]")
            continue
        shown = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
        text = ", ".join(f"{k}={v}" for k, v in list(shown.items())[:8])
        table.add_row(stage, text)
    console.print(table)
    _show_headline(run_dir, cfg)


def _show_headline(run_dir: Path, cfg: Any) -> None:
    """report/summary.txt when the report stage is current for `cfg`; otherwise a line saying
    the report is out of date and how to refresh it (its summary would describe other inputs)."""
    from rashomon.run import stage_status

    headline = run_dir / "report" / "summary.txt"
    if not headline.exists():
        return
    current, why = stage_status(run_dir, cfg, "report")
    if current:
        console.print(headline.read_text().strip())
        return
    console.print(
        f"[yellow]The report is out of date[/yellow] (it {why}), so its summary is not shown; "
        f"`rashomon run --out {run_dir}` redoes the stages that need it and refreshes it.",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@guarded
@with_flags(DATA_FLAGS, TRAIN_FLAGS, DEVICE_FLAGS, SAMPLE_FLAGS)
def run(
    config_file: Annotated[
        Path | None, typer.Argument(help="YAML config (optional); flags override it.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<name>).")] = None,
    overrides: Overrides = None,  # type: ignore[assignment]
    stages: Annotated[
        str | None, typer.Option(help="Comma-separated stages to run (default all).")
    ] = None,
    force: Force = False,
    no_progress: NoProgress = False,
    verify_data: VerifyData = False,
) -> None:
    """Run every stage: train, sample, evaluate, decide, report (finished stages are skipped).

    Stages whose inputs are unchanged are skipped, so an interrupted run resumes where it
    stopped; --force redoes them."""
    from rashomon.run import STAGE_ORDER, STAGES, check_run_dir, run_pipeline

    chosen: tuple[str, ...] = STAGE_ORDER
    if stages is not None:
        chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
        unknown = [s for s in chosen if s not in STAGES]
        if unknown or not chosen:
            given = f"unknown stage(s) {unknown}" if unknown else f"--stages {stages!r} names none"
            raise RashomonError(f"{given}; choose from {', '.join(STAGES)} (comma-separated)")
    cfg = _resolve(config_file, overrides, out)
    run_dir = out or cfg.default_run_dir()
    check_run_dir(run_dir, new_run=True, config_given=config_file is not None)
    results = run_pipeline(
        run_dir,
        cfg,
        chosen,
        force=force,
        progress=not no_progress,
        console=console,
        verify_data=verify_data,
    )
    _show_summary(results, run_dir, cfg)


def _stage_command(
    name: str,
    run_dir: Path,
    config: Path | None,
    overrides: Overrides,
    force: bool,
    no_progress: bool,
    verify_data: bool = False,
) -> None:
    from rashomon.run import check_run_dir, data_identity, prepare_run_dir, run_lock, run_stage

    # Only train starts a run; nothing is written in a folder that is not one.
    check_run_dir(run_dir, new_run=name == "train", config_given=config is not None)
    cfg = _resolve(config, overrides, run_dir)
    with run_lock(run_dir):
        prepare_run_dir(run_dir, cfg)
        data = data_identity(cfg, run_dir, verify=verify_data)
        summary = run_stage(
            run_dir, cfg, name, force=force, progress=not no_progress, console=console, data=data
        )
    _show_summary({name: summary}, run_dir, cfg)


RunDirArg = Annotated[Path, typer.Argument(help="Run directory.")]


@app.command()
@guarded
@with_flags(DATA_FLAGS, TRAIN_FLAGS, DEVICE_FLAGS)
def train(
    run_dir: RunDirArg,
    config: ConfigArg = None,
    overrides: Overrides = None,  # type: ignore[assignment]
    force: Force = False,
    no_progress: NoProgress = False,
    verify_data: VerifyData = False,
) -> None:
    """Train the MAP model into RUN_DIR/train (checkpoint, history, val/test scores)."""
    _stage_command("train", run_dir, config, overrides, force, no_progress, verify_data)


@app.command()
@guarded
@with_flags(SAMPLE_FLAGS, DEVICE_FLAGS)
def sample(
    run_dir: RunDirArg,
    config: ConfigArg = None,
    overrides: Overrides = None,  # type: ignore[assignment]
    force: Force = False,
    no_progress: NoProgress = False,
    verify_data: VerifyData = False,
) -> None:
    """Build the model set from the trained model and store val/test predictions."""
    _stage_command("sample", run_dir, config, overrides, force, no_progress, verify_data)


@app.command()
@guarded
@with_flags(DEVICE_FLAGS)
def evaluate(
    run_dir: RunDirArg,
    config: ConfigArg = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: multiplicity,performance,calibration,fairness,robustness."
        ),
    ] = None,
    groups: Annotated[str | None, typer.Option(help="Comma-separated attributes.")] = None,
    corruptions: Annotated[
        str | None, typer.Option(help="Comma-separated MedMNIST-C corruptions; 'none' for none.")
    ] = None,
    attacks: Annotated[str | None, typer.Option(help="Comma-separated: fgsm,pgd; 'none'.")] = None,
    overrides: Overrides = None,  # type: ignore[assignment]
    force: Force = False,
    no_progress: NoProgress = False,
    verify_data: VerifyData = False,
) -> None:
    """Multiplicity, performance, calibration, fairness and robustness across the set."""
    lists = {"metrics": metrics, "groups": groups, "corruptions": corruptions, "attacks": attacks}
    overrides.update({f"evaluate.{k}": _csv(v) for k, v in lists.items() if v is not None})
    _stage_command("evaluate", run_dir, config, overrides, force, no_progress, verify_data)


@app.command()
@guarded
@with_flags(DEVICE_FLAGS)
def decide(
    run_dir: RunDirArg,
    config: ConfigArg = None,
    overrides: Overrides = None,  # type: ignore[assignment]
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            help="Desideratum to select a model for on validation, e.g. tpr_gap:sex "
            "(repeatable; default every one of the task).",
        ),
    ] = None,
    force: Force = False,
    no_progress: NoProgress = False,
    verify_data: VerifyData = False,
) -> None:
    """Best-in-set selection (chosen on validation, confirmed on test), the constrained and
    post-processing baselines, ensembles with abstention and Laplace Sample Information."""
    if select:
        overrides["decide.select"] = [name for item in select for name in item.split(",") if name]
    _stage_command("decide", run_dir, config, overrides, force, no_progress, verify_data)


@app.command()
@guarded
def report(
    run_dir: RunDirArg,
    force: Force = False,
    no_progress: NoProgress = False,
    verify_data: VerifyData = False,
) -> None:
    """Write RUN_DIR/report/report.html (self-contained) with its PNGs and tables."""
    _stage_command("report", run_dir, None, {}, force, no_progress, verify_data)


@app.command()
@guarded
@with_flags(DEVICE_FLAGS)
def validate(
    run_dir: RunDirArg,
    retrain: Annotated[
        int | None, typer.Option(help="Networks to retrain like the MAP model (default 30).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Train seeds in parallel on a local Ray of N CPUs.")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="A running Ray cluster ('auto' or host:port).")
    ] = None,
    overrides: Overrides = None,  # type: ignore[assignment]
    force: Force = False,
    no_progress: NoProgress = False,
    verify_data: VerifyData = False,
) -> None:
    """Retrain K networks like the MAP model (cached, resumable) and measure how much of their
    multiplicity the run's set finds at the same number of models: flag recall and precision of
    K/2 of the set's models against half of the retrained ones, over the retrained set's own
    split-half ceiling; flip-rate agreement; ambiguity against the number of models. The report
    then shows a validity section."""
    given = {"validity.models": retrain, "validity.workers": workers, "validity.address": address}
    overrides.update({k: v for k, v in given.items() if v is not None})
    _stage_command("validate", run_dir, None, overrides, force, no_progress, verify_data)


@app.command()
@guarded
def export(
    run_dir: RunDirArg,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model index of sample/per_model.csv (decide/selection.csv names the selected "
            "ones), or 'map' for the trained model.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint file to write, e.g. model.pt.")],
    outside: Annotated[
        bool, typer.Option("--outside", help="Allow a model outside the Rashomon set.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
) -> None:
    """Write one model of the run's set as a normal checkpoint (rs.load_checkpoint loads it; a
    state dict + architecture spec without rashomon; a user's own network also gets
    user_state_dict under its own parameter names)."""
    from rich.console import Console

    from rashomon.export import export_model

    origin = export_model(run_dir, model, out, outside=outside, force=force)
    where = "in" if origin["in_set"] else "OUTSIDE"
    Console().print(
        f"wrote {out}: model {origin['model']} of the {origin['source']} set ({where} the "
        f"Rashomon set at ε = {origin['epsilon']:g})"
    )


@app.command()
@guarded
def datasets(
    data_root: DataRoot = None,
    folder: Annotated[
        list[Path] | None,
        typer.Option(help="A folder task to describe (repeatable); default: those under the root."),
    ] = None,
) -> None:
    """List the MedMNIST datasets (is their 28 px file local?) and the folder tasks under the
    data root or given with --folder: label files, classes, split sizes, attribute columns."""
    from rich.markup import escape

    from rashomon.data.folder import describe_folder, find_folder_tasks
    from rashomon.data.medmnist import dataset_info, dataset_names, default_root, npz_filename

    root = Path(data_root).expanduser() if data_root else default_root()
    if not folder:
        table = Table(title=f"MedMNIST 2D datasets (data root {root})")
        for col in ("name", "task", "classes", "local"):
            table.add_column(col)
        info = dataset_info()
        for name in dataset_names():
            present = (root / npz_filename(name, 28)).exists()
            table.add_row(
                name, info[name]["task"], str(len(info[name]["label"])), "yes" if present else "no"
            )
        console.print(table)
    folders = list(folder) if folder else find_folder_tasks(root)
    if not folders:
        console.print(f"No folder tasks under {root} (a folder with labels*.csv and images).")
        return
    entries = [e for f in folders for e in describe_folder(f)]
    table = Table(title="Folder tasks (--dataset FOLDER --labels FILE)")
    for col in ("folder", "labels", "kind", "classes", "train", "val", "test", "attributes"):
        table.add_column(col)
    for e in entries:
        if "error" in e:
            row = (escape(e["folder"]), escape(e["labels"]), "[red]error[/red]", escape(e["error"]))
            table.add_row(*row, "", "", "", "")
            continue
        classes = e["classes"]
        shown = escape(", ".join(classes[:10]))
        shown += f", … ({len(classes)})" if len(classes) > 10 else ""
        if e["classes_file"]:
            shown += f" [dim]({e['classes_file']})[/dim]"
        if e["missing_images"]:
            shown += f" [red]{e['missing_images']} images missing[/red]"
        sizes = e["sizes"]
        attributes = escape(", ".join(e["attributes"])) or "-"
        if e.get("attribute_notes"):
            attributes += f" [dim]({escape('; '.join(e['attribute_notes']))})[/dim]"
        table.add_row(
            escape(e["folder"]),
            escape(e["labels"]),
            e["kind"],
            shown,
            str(sizes["train"]),
            str(sizes["val"]),
            str(sizes["test"]),
            attributes,
        )
    console.print(table)


@app.command()
@guarded
def sweep(
    sweep_file: Annotated[
        Path, typer.Argument(help="Sweep YAML: base config, grid over dotted keys, resources.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Sweep directory (default sweeps/<name>).")
    ] = None,
    num_cpus: Annotated[
        float | None, typer.Option(help="CPUs of the local Ray (default all).")
    ] = None,
    num_gpus: Annotated[
        float | None, typer.Option(help="GPUs of the local Ray (default all).")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="A running Ray cluster ('auto' or host:port).")
    ] = None,
    force: Force = False,
    no_progress: NoProgress = False,
) -> None:
    """Run a grid of runs as Ray tasks, one run directory per cell. Finished cells are skipped;
    a failed cell is reported with its error and the others go on. Writes OUT/status.csv,
    OUT/sweep.csv (one tidy table across cells) and OUT/sweep.html."""
    from rashomon.sweep import run_sweep

    status = run_sweep(
        sweep_file,
        out,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        address=address,
        progress=not no_progress,
        force=force,
        console=console,
    )
    if (status["status"] == "failed").any():
        raise typer.Exit(1)


@app.command()
@guarded
def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run directories with a finished sample stage, or sweeps.")
    ],
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Run directory of the retrained set (default: the run whose source is retrain)."
        ),
    ] = None,
    epsilon: Annotated[
        float | None, typer.Option(help="Matched ε for every set (default the truth's).")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for compare.csv, per_patient.csv, growth.csv, frontier.csv, compare.html."
        ),
    ] = Path("compare"),
    truth_seconds: Annotated[
        float | None,
        typer.Option(
            help="Seconds training the retrained set took, when its networks came from a cache "
            "that did not record it (for the cost-validity frontier).",
            min=0,
        ),
    ] = None,
) -> None:
    """Compare model sets with the retrained set (the ground truth) on the same test patients
    at one ε: size-matched flag agreement over the split-half ceiling, flip-rate agreement,
    ambiguity against the number of models, multiplicity, spread of each desideratum, cost
    against validity."""
    from rashomon.compare import run_compare

    run_compare(
        run_dirs, out, truth=truth, epsilon=epsilon, console=console, truth_seconds=truth_seconds
    )


def main() -> None:
    """The `rashomon` command (the typer app), with third-party deprecation noise filtered."""
    import warnings

    # laplace-torch's dependencies call torch.jit.script; the deprecation is theirs, not the user's.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    default_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        # The project's own warnings (a valid but probably unintended input) are one line.
        if category.__name__ in ("ConfigWarning", "DataWarning"):
            err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
        else:
            default_show(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)


if __name__ == "__main__":
    main()
