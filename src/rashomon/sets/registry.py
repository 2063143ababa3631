"""The source registry: every way of building a model set is one module that registers a name,
an options model and a builder; `sample.source` (CLI `--source`) picks one by name.

The interface, checked by `register_source` when a source registers:

- the options model is a `SourceOptions` subclass (pydantic; unknown options are errors). It is
  the one place a source's options are declared, defaulted and documented, and it answers what
  the generic sample stage asks of a source: does the set aim at the audit's ε
  (`aims_at_epsilon`, then `with_epsilon` gives it the run's ε), which fields of its set's `meta`
  go into `sample/summary.json` (`summary_keys`), and what to change when too few models are
  within ε (`narrower_set_advice`);
- the builder is a `Builder`: ``builder(model, task, options, context)`` returning a `ModelSet`,
  or a `Posterior` whose ``.sample(models, seed=...)`` gives one. `options` is the source's
  options, validated and resolved once (`resolve_options`) and also carried by `context`, a
  `BuildContext` with what every source may need (seed, number of models, device, memory budget,
  the audit's ε and criterion, the MAP model's training).

Built-in sources are the modules of `rashomon.sets.sources`, one per source, named like the
source; a module registers itself when imported. Other packages register through the
`rashomon.sources` entry-point group (the way pytest finds plugins): the entry point's name is
the source name and its value a module that calls `register_source` on import, or a builder.

This module imports no torch: the CLI lists source names in `--help` without loading them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from rashomon.errors import RashomonError

if TYPE_CHECKING:
    from typing import Self

    from torch import nn

    from rashomon.data.task import Task
    from rashomon.sets.base import ModelSet

ENTRY_POINT_GROUP = "rashomon.sources"
BUILTIN_PACKAGE = "rashomon.sets.sources"
BUILDER_PARAMETERS = ("model", "task", "options", "context")

UNKNOWN_SOURCE = "unknown set source {name!r}; choose one of: {names}"
BAD_OPTION = "source {name!r}: {problem}; its options are: {fields}"
NOT_A_SET = (
    "source {name!r} returned {got}, not a ModelSet or an object with .sample(models, seed); "
    "fix its builder"
)


class SourceOptions(BaseModel):
    """Base of every source's options model: unknown fields are errors, not silently ignored.

    A subclass declares the source's options as pydantic fields (type, default, range) and may
    override the methods below; the sample stage calls nothing else of it."""

    model_config = ConfigDict(extra="forbid")
    # Keys of the built set's `meta` that the sample stage records in sample/summary.json.
    summary_keys: ClassVar[tuple[str, ...]] = ()

    def aims_at_epsilon(self) -> bool:
        """True when the set depends on the audit's ε (it is built to fill the Rashomon set);
        such options have a `target_epsilon` field, None meaning the audit's ε."""
        return False

    def with_epsilon(self, epsilon: float) -> Self:
        """These options as a run with audit ε `epsilon` builds with: a source that aims at ε
        and was given no `target_epsilon` gets `epsilon`. Part of the options, so that the set is
        rebuilt when ε changes."""
        if not self.aims_at_epsilon():
            return self
        if "target_epsilon" not in type(self).model_fields:
            raise RashomonError(
                f"{type(self).__name__} aims at ε but has no target_epsilon field; declare "
                "`target_epsilon: float | None = None` in the options model"
            )
        if self.target_epsilon is not None:  # type: ignore[attr-defined]
            return self
        return self.model_copy(update={"target_epsilon": float(epsilon)})

    def summary(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of a built set's `meta` recorded in sample/summary.json (`summary_keys`)."""
        return {k: v for k, v in meta.items() if k in self.summary_keys}

    def narrower_set_advice(self) -> str:
        """What to change when too few models are within ε (the end of a one-line error)."""
        return "options that keep the set's models closer to the trained model"


@dataclass(frozen=True)
class BuildContext:
    """What a builder gets besides the model and the task: the run's settings, resolved once."""

    seed: int = 0
    models: int = 1000  # models in the set (M)
    device: str = "cpu"
    max_memory: str | int | None = None
    progress: bool = False
    # The audit's ε and criterion: the Rashomon filter's and the sample record's. A source that
    # aims at ε reads its own `options.target_epsilon` (`SourceOptions.with_epsilon`).
    epsilon: float = 0.02
    on: str = "loss"
    # The MAP model's training class weights: the Rashomon filter's loss is the class-weighted
    # NLL it was trained on (rashomon.sets.rashomon.model_scores); None when unweighted.
    class_weight: tuple[float, ...] | None = None
    # The MAP model's training: {"arch", "epochs", "fit_options"}; sources that train networks
    # (retrain, multimode, swag) train theirs the same way.
    train: Mapping[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    # The source's options, validated and resolved (`resolve_options`); set by build_model_set.
    options: SourceOptions | None = None


@runtime_checkable
class Posterior(Protocol):
    """What a builder may return instead of a set: an object that draws one."""

    def sample(self, models: int, seed: int = 0) -> ModelSet:
        """A ModelSet of `models` models drawn with `seed`."""


class Builder(Protocol):
    """A source's builder: the set of `context.models` models around `model` on `task`."""

    def __call__(
        self, model: nn.Module, task: Task, options: Any, context: BuildContext
    ) -> ModelSet | Posterior:
        """The set (or a posterior that draws one) of the source around `model` on `task`."""


@dataclass(frozen=True)
class SetSource:
    """A registered set source: its name, builder, options model and description."""

    name: str
    builder: Builder
    options_model: type[SourceOptions]
    description: str = ""

    def option_fields(self) -> list[str]:
        """The names of the source's options."""
        return list(self.options_model.model_fields)


_REGISTRY: dict[str, SetSource] = {}


def _check_options_model(name: str, options_model: Any) -> None:
    if isinstance(options_model, type) and issubclass(options_model, SourceOptions):
        return
    what = getattr(options_model, "__name__", repr(options_model))
    plain = isinstance(options_model, type) and issubclass(options_model, BaseModel)
    kind = "a plain pydantic model" if plain else "not an options model"
    raise RashomonError(
        f"the options model of source {name!r} ({what}) is {kind}; subclass "
        "rashomon.sets.SourceOptions, which gives the methods the sample stage calls"
    )


def _check_builder(name: str, builder: Any) -> None:
    if not callable(builder):
        raise RashomonError(f"the builder of source {name!r} is not callable")
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    try:
        signature.bind(*BUILDER_PARAMETERS)
    except TypeError:
        raise RashomonError(
            f"the builder of source {name!r} takes {signature}; a builder takes "
            f"({', '.join(BUILDER_PARAMETERS)})"
        ) from None


def register_source(
    name: str,
    builder: Builder,
    options_model: type[SourceOptions] = SourceOptions,
    *,
    description: str = "",
    replace: bool = False,
) -> SetSource:
    """Register a set source under `name`: `builder` a `Builder` and `options_model` a
    `SourceOptions` subclass, both checked here (a one-line RashomonError when wrong).
    Registering a taken name is an error unless `replace=True` (or the same builder registers
    again, as on a module reload)."""
    if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
        raise RashomonError(f"source name {name!r} must be a word such as 'laplace' or 'my-set'")
    _check_builder(name, builder)
    _check_options_model(name, options_model)
    old = _REGISTRY.get(name)
    if old is not None and not replace and old.builder is not builder:
        same_place = getattr(old.builder, "__qualname__", None) == getattr(
            builder, "__qualname__", ""
        ) and getattr(old.builder, "__module__", None) == getattr(builder, "__module__", "")
        if not same_place:
            raise RashomonError(
                f"source {name!r} is already registered (by {old.builder.__module__}); pick "
                "another name or pass replace=True"
            )
    doc = description or (builder.__doc__ or "").strip().split("\n")[0]
    source = SetSource(name, builder, options_model, doc)
    _REGISTRY[name] = source
    return source


def unregister_source(name: str) -> None:
    """Remove a registered source (tests that register their own)."""
    _REGISTRY.pop(name, None)


def _builtin_module_names() -> list[str]:
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations))


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def source_names() -> list[str]:
    """Every source name known, without importing any source (for `--help`)."""
    names = {n.replace("_", "-") for n in _builtin_module_names()}
    names |= set(_entry_points()) | set(_REGISTRY)
    return sorted(names)


def _load(name: str) -> None:
    """Import the module that registers `name` (built-in module or entry point)."""
    module = name.replace("-", "_")
    if module in _builtin_module_names():
        importlib.import_module(f"{BUILTIN_PACKAGE}.{module}")
        return
    ep = _entry_points().get(name)
    if ep is None:
        return
    try:
        loaded = ep.load()
    except RashomonError:  # the plugin's own registration was refused: that line says why
        raise
    except Exception as exc:
        raise RashomonError(
            f"source {name!r} (entry point {ep.value}) failed to import: {exc}; fix or uninstall "
            "the package that provides it"
        ) from exc
    if name not in _REGISTRY and callable(loaded):
        register_source(name, loaded)


def get_source(name: str) -> SetSource:
    """The registered source `name`, importing its module on first use."""
    if name not in _REGISTRY:
        _load(name)
    if name not in _REGISTRY:
        raise RashomonError(UNKNOWN_SOURCE.format(name=name, names=", ".join(source_names())))
    return _REGISTRY[name]


def available_sources() -> list[str]:
    """Names of every source that can be used: built-in, entry points and registered ones."""
    for name in source_names():
        if name not in _REGISTRY:
            try:
                _load(name)
            except RashomonError:
                continue
    return sorted(_REGISTRY)


def _problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"no option {where!r}"
    return f"option {where!r}: {str(err['msg']).removeprefix('Value error, ')}"


def source_options(name: str, values: Mapping[str, Any] | None = None) -> SourceOptions:
    """Validate `values` with source `name`'s options model; a wrong option is a one-line error
    naming the source and its valid fields."""
    source = get_source(name)
    try:
        return source.options_model.model_validate(dict(values or {}))
    except ValidationError as exc:
        fields = ", ".join(source.option_fields()) or "(none)"
        raise RashomonError(
            BAD_OPTION.format(name=name, problem=_problem(exc), fields=fields)
        ) from exc


def resolve_options(name: str, values: Mapping[str, Any] | None, epsilon: float) -> SourceOptions:
    """The options source `name` builds with in a run of audit ε `epsilon`: `values` validated
    by its options model (`source_options`), ε given to a source that aims at it
    (`SourceOptions.with_epsilon`). A run resolves them once, when its config loads."""
    return source_options(name, values).with_epsilon(epsilon)


def build_model_set(
    name: str,
    model: Any,
    task: Any,
    options: SourceOptions | Mapping[str, Any] | None,
    context: BuildContext,
) -> ModelSet:
    """Build source `name`'s set for `model` on `task`: a ModelSet of `context.models` models.

    `options`: the source's resolved options (as a run's config holds them), or a mapping of
    option values, resolved here against `context.epsilon` (Python callers). The builder gets
    them, and a context that carries them."""
    from rashomon.models.external import as_classifier
    from rashomon.sets.base import ModelSet, task_description

    source = get_source(name)
    # A user's own network (any nn.Module ending in an nn.Linear) becomes a Classifier here, so
    # every source sees `features`/`head` and a spec to save the set with.
    model = as_classifier(model, probe=task.val.x[:4], size=task.image_size)
    if not isinstance(options, source.options_model):
        values = options if isinstance(options, Mapping) else None
        options = resolve_options(name, values, context.epsilon)
    context = replace(context, options=options)
    out = source.builder(model, task, options, context)
    if not isinstance(out, ModelSet):
        if not isinstance(out, Posterior):
            raise RashomonError(NOT_A_SET.format(name=name, got=type(out).__name__))
        out = out.sample(context.models, seed=context.seed)
        if not isinstance(out, ModelSet):
            raise RashomonError(NOT_A_SET.format(name=name, got=type(out).__name__))
    if not out.task.get("kind"):  # the builder did not say what the set predicts
        out.task = task_description(task)
    return out
