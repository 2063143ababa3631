"""The resolved configuration of a run: pydantic models, loaded from YAML and overridden by flags.

The resolved config is saved in the run directory; each stage's input hash is computed from the
sections it reads, so changing a late stage's options never invalidates earlier stages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from rashomon.errors import RashomonError


class Section(BaseModel):
    """A config section: unknown keys are errors; `identity` is what a stage hash reads."""

    model_config = ConfigDict(extra="forbid")
    # Fields that bound how a stage runs (working memory) but never what it computes: left out
    # of the stage hash, so changing them does not redo a finished stage.
    operational: ClassVar[frozenset[str]] = frozenset()

    def identity(self) -> dict[str, Any]:
        """The fields that determine a stage's outputs."""
        return self.model_dump(exclude=set(self.operational))


class DataConfig(Section):
    """The `data` section: the task to load (a MedMNIST name or a folder of images) and its
    attribute CSV."""

    # A MedMNIST name, or a folder of images with a label CSV: a folder is stored as an absolute
    # path, so the run's commands find it from any working directory.
    dataset: str = "pneumoniamnist"
    dataset_as_given: str | None = None  # the folder as the user typed it (for display)
    root: str | None = None  # default: $RASHOMON_DATA, else the medmnist default root
    size: int = 28
    attributes_csv: str | None = None
    # Folder tasks only. `labels`: the label CSV, a bare name looked up in the folder (default
    # labels.csv). `channels`: 1 or 3; default from the images (all grey → 1, else 3).
    labels: str | None = None
    channels: Literal[1, 3] | None = None
    # Load a test split with more than 1 % of its images also in train or val (leakage).
    allow_overlap: bool = False
    # Where the files are found is not what they are: stages check the files' content
    # fingerprint instead (rashomon.run.data_fingerprint). allow_overlap only lets them load.
    operational: ClassVar[frozenset[str]] = frozenset({"root", "allow_overlap", "dataset_as_given"})

    @model_validator(mode="after")
    def _absolute_paths(self) -> DataConfig:
        # Relative paths name files from where the command runs: stored absolute, a later
        # command from another folder reads the same files (a bare label name stays a name in
        # the folder).
        from rashomon.data.task import absolute

        if Path(self.dataset).expanduser().is_dir():
            resolved = absolute(self.dataset)
            if resolved != self.dataset:
                self.dataset_as_given = self.dataset_as_given or self.dataset
                self.dataset = resolved
        if self.labels and len(Path(self.labels).parts) > 1:
            self.labels = absolute(self.labels)
        if self.attributes_csv:
            self.attributes_csv = absolute(self.attributes_csv)
        return self

    def label_file(self) -> str | None:
        """The label CSV a folder task reads, as an absolute path (None for MedMNIST): the same
        file however `labels` names it (unset, a bare name or a path)."""
        if not Path(self.dataset).expanduser().is_dir():
            return None
        from rashomon.data.folder import label_csv_path
        from rashomon.data.task import absolute

        return absolute(label_csv_path(self.dataset, self.labels))

    def identity(self) -> dict[str, Any]:
        """The section as a stage hash reads it: a folder dataset and its CSVs by name, not path."""
        out = super().identity()
        folder = Path(self.dataset).expanduser()
        out["dataset"] = "folder" if folder.is_dir() else self.dataset.lower()
        for key in ("attributes_csv", "labels"):
            if out.get(key):
                out[key] = Path(out[key]).name
        for name in ("labels", "channels"):  # unset folder options leave old hashes unchanged
            if out[name] is None:
                del out[name]
        return out

    def loader_options(self) -> dict[str, Any]:
        """Keyword arguments of `rashomon.load_task(self.dataset, ...)` (seed aside)."""
        return {
            "root": self.root,
            "size": self.size,
            "attributes_csv": self.attributes_csv,
            "labels": self.labels,
            "channels": self.channels,
            "allow_overlap": self.allow_overlap,
        }


class TrainSection(Section):
    """MAP training (`rashomon.models.train.train`): ``steps`` optimizer steps of ``batch_size``
    images with a cosine learning-rate schedule, unless ``epochs`` is given (then at most that
    many epochs); checkpoint selection on the smoothed validation loss (``select_window``
    epochs; ``patience`` epochs past its minimum stop training). None = derived from the plan."""

    # A registry architecture (cnn-small, cnn, resnet18, mlp), or the user's own network:
    # "pkg.module:function" (a builder) or a file of a whole network saved with torch.save.
    arch: str = "cnn-small"
    weights: str | None = None  # trained weights of the user's network: audit it, do not train
    last_layer: str | None = None  # the user's network's final nn.Linear (default: found)
    width: float | None = Field(None, gt=0)  # width multiplier, for arch "cnn"
    activation: str | None = None
    dropout: float | None = Field(None, ge=0, lt=1)
    epochs: StrictInt | None = None  # None: whole epochs holding `steps` optimizer steps
    steps: StrictInt = 1000
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: StrictInt = 64
    patience: StrictInt | None = None
    select_window: StrictInt | None = None
    # auto: inverse-frequency class weights when the training split is imbalanced (the most
    # frequent class at least rashomon.models.train.IMBALANCE_RATIO times the rarest)
    class_weights: bool | Literal["auto"] = "auto"
    augment: bool = False
    # Shares of the budget at which the training state is kept (train/states.pt) for
    # `--source fork`; [] keeps none. Not a training option: the MAP model is the same.
    snapshots: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 0.9])

    def identity(self) -> dict[str, Any]:
        """The section as a stage hash reads it, the given weights by content, not path."""
        # The weights' content, not their path, is what the train stage reads.
        out = super().identity()
        if self.weights:
            from rashomon.fingerprint import files_fingerprint

            out["weights"] = files_fingerprint([self.weights])
        if self.arch.endswith((".pt", ".pth")) or ":" in self.arch:
            # A user's network by its content: the builder's source, or the saved file
            from rashomon.models.external import arch_identity

            out["arch"] = arch_identity(self.arch)
        return out

    @field_validator("epochs")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("epochs must be at least 1")
        return v

    @field_validator("steps", "batch_size", "patience")
    @classmethod
    def _at_least_one(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("snapshots")
    @classmethod
    def _shares(cls, v: list[float]) -> list[float]:
        if any(not 0 <= f <= 1 for f in v):
            raise ValueError(f"snapshot shares must lie in [0, 1], got {v}")
        return sorted(set(v))

    @field_validator("select_window")
    @classmethod
    def _odd(cls, v: int | None) -> int | None:
        if v is not None and (v < 1 or v % 2 == 0):
            raise ValueError("must be a positive odd number of epochs")
        return v

    def fit_options(self) -> dict[str, Any]:
        """Keyword arguments of `rashomon.models.train.train` beyond arch, epochs and seed."""
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "patience": self.patience,
            "class_weights": self.class_weights,
            "augment": self.augment,
            "arch_options": self.arch_options(),
            "steps": self.steps,
            "schedule": self.schedule,
            "select_window": self.select_window,
        }

    def arch_options(self) -> dict[str, Any]:
        """The architecture options that were set (width, activation, dropout, last layer)."""
        opts = {
            "width": self.width,
            "activation": self.activation,
            "dropout": self.dropout,
            "last_layer": self.last_layer,
        }
        return {k: v for k, v in opts.items() if v is not None}

    @property
    def audits_given_model(self) -> bool:
        """The user's trained network is audited as given: no training."""
        return self.weights is not None or self.arch.endswith((".pt", ".pth"))


MAX_SENSIBLE_EPSILON = 1.0  # above this a relative ε admits models twice as bad: warn


class ConfigWarning(UserWarning):
    """A valid but probably unintended setting (shown once, the run goes on)."""


# Laplace's options were once flat fields of the sample section (`sample.subset: all`); configs
# and run directories written then still load: the fields move into `sample.options` once, when
# the config loads (`SampleSection._flat_options_into_options`).
LEGACY_FLAT_OPTIONS = ("subset", "hessian", "prior", "kind", "temperature", "linearized")


class SampleSection(Section):
    """The `sample` section: the set's source and its options, M, and the Rashomon filter's ε."""

    source: str = "laplace"  # any registered source: rashomon.sets.available_sources()
    models: int = 1000  # models the source builds (M), before the Rashomon filter
    # The source's own options, declared and defaulted by its options model (`-o KEY=VALUE`)
    options: dict[str, Any] = Field(default_factory=dict)
    epsilons: list[float] = Field(default_factory=lambda: [0.005, 0.01, 0.02, 0.05])
    epsilon: float = 0.02  # the ε the audit uses
    on: Literal["loss", "accuracy"] = "loss"
    max_memory: str | None = None  # e.g. "4GB"; default a safe share of RAM/VRAM
    operational: ClassVar[frozenset[str]] = frozenset({"max_memory"})
    # Fields that only filter a built set: changing them reuses the set and its predictions.
    filter_fields: ClassVar[frozenset[str]] = frozenset({"epsilon", "epsilons", "on"})
    _options: Any = PrivateAttr(default=None)  # the resolved options (`resolved_options`)

    @model_validator(mode="before")
    @classmethod
    def _flat_options_into_options(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data for k in LEGACY_FLAT_OPTIONS):
            return data
        data = dict(data)
        options = dict(data.get("options") or {})
        for name in LEGACY_FLAT_OPTIONS:
            value = data.pop(name, None)
            if value is None:
                continue
            if name in options and options[name] != value:
                raise ValueError(
                    f"sample.{name} = {value!r} and sample.options.{name} = {options[name]!r} "
                    "disagree; set one of them"
                )
            options[name] = value
        data["options"] = options
        return data

    @field_validator("models")
    @classmethod
    def _enough_models(cls, v: int) -> int:
        from rashomon.sets.rashomon import MIN_SET_MODELS

        if v < MIN_SET_MODELS:
            raise ValueError(
                f"a Rashomon set needs at least {MIN_SET_MODELS} models, got {v}; use --models "
                f"{MIN_SET_MODELS} or more (default 1000)"
            )
        return v

    @field_validator("max_memory")
    @classmethod
    def _memory_size(cls, v: str | None) -> str | None:
        if v is not None:
            from rashomon.memory import parse_bytes

            try:
                parse_bytes(v)
            except RashomonError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("epsilon")
    @classmethod
    def _epsilon_range(cls, v: float) -> float:
        if not v >= 0 or v == float("inf"):
            raise ValueError(f"epsilon must be a non-negative number, got {v}")
        if v > MAX_SENSIBLE_EPSILON:
            import warnings

            warnings.warn(
                f"epsilon {v:g} lets a model have {1 + v:g}x the MAP model's validation loss: "
                "the 'set' is nearly every model; a Rashomon set is usually ε ≤ 0.1",
                ConfigWarning,
                stacklevel=2,
            )
        return v

    @field_validator("epsilons")
    @classmethod
    def _epsilons_range(cls, v: list[float]) -> list[float]:
        bad = [e for e in v if not e >= 0 or e == float("inf")]
        if bad:
            raise ValueError(f"every epsilon must be a non-negative number, got {bad}")
        return v

    @model_validator(mode="after")
    def _resolve_options(self) -> SampleSection:
        # Once, when the config loads: a wrong source or option fails here, before any stage.
        from rashomon.sets.registry import resolve_options

        self._options = resolve_options(self.source, self.options, self.epsilon)
        return self

    @property
    def resolved_options(self) -> Any:
        """The source's options model instance the set is built with: `options` validated, and
        for a source that aims at ε, the audit's ε as its target unless one is given."""
        return self._options

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any:
        """A copy; one with `update` is validated anew, so the resolved options follow the
        fields."""
        # The resolved options follow from the fields: a copy with changes is validated anew.
        if not update:
            return super().model_copy(deep=deep)
        return type(self).model_validate({**self.model_dump(), **update})

    def identity(self) -> dict[str, Any]:
        """The section as a stage hash reads it, with the source's resolved options."""
        # The resolved options, so `-o hessian=kron` and the default kron are the same stage.
        out = super().identity()
        out["options"] = self.resolved_options.model_dump(mode="json")
        return out

    def set_identity(self) -> dict[str, Any]:
        """What the set and its predictions depend on: the identity without the filter fields
        (an ε-aimed source's ε is in its resolved options)."""
        return {k: v for k, v in self.identity().items() if k not in self.filter_fields}


class EvaluateSection(Section):
    """The `evaluate` section: metric groups, attributes, corruptions and attacks, bootstrap,
    extremes."""

    metrics: list[str] = Field(
        default_factory=lambda: [
            "multiplicity",
            "performance",
            "calibration",
            "fairness",
            "robustness",
        ]
    )
    groups: list[str] | None = None  # default: every attribute of the task
    # Acquisition attributes whose strata the other attributes' gaps are also computed within
    # (evaluate/within_stratum.csv); None: by name (view, scanner, site, device, intensity)
    acquisition: list[str] | None = None
    corruptions: list[str] | None = None  # default: the dataset's MedMNIST-C list; [] = none
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    attacks: list[str] = Field(default_factory=lambda: ["fgsm", "pgd"])
    attack_epsilons: list[float] = Field(default_factory=lambda: [0.0, 1 / 255, 2 / 255, 4 / 255])
    threshold: float = 0.5
    target_sensitivity: float = 0.9
    bootstrap: int = 1000
    robustness_images: int | None = None  # seeded subset of test images for corruptions
    robustness_models: int = 100  # cap for sets whose body varies (each model is a full forward)
    # Corrupt the validation split too (same seeded corruptions), so decide can select the most
    # robust model on validation and confirm it on test.
    robustness_selection: bool = True
    whitebox_models: int = 5  # models attacked with their own gradients (the rest: transfer)
    attack_images: int | None = 256  # seeded subset of test images for attacks
    # Exact last-layer extremes (rs.last_layer_extremes) for head-only sets of binary tasks:
    # "auto" computes them for small problems (evaluate.EXTREMES_AUTO_WORK, EXTREMES_AUTO_HEAD).
    extremes: Literal["auto", "on", "off"] = "auto"

    @field_validator("attacks")
    @classmethod
    def _known_attacks(cls, v: list[str]) -> list[str]:
        from rashomon.attacks import ATTACKS

        unknown = [a for a in v if a not in ATTACKS]
        if unknown:
            raise ValueError(f"unknown attack(s) {unknown}; choose from {', '.join(ATTACKS)}")
        return v


class DecideSection(Section):
    """The `decide` section: ensembles, selection, the constrained and threshold baselines, LSI."""

    ensemble_sizes: list[int] = Field(default_factory=lambda: [1, 3, 5, 10, 20])
    agreement: list[float] = Field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    alpha: float = 0.05
    constrained_baseline: bool = True
    constrained_method: Literal["reweight", "penalty"] = "reweight"
    constrained_attribute: str | None = None  # default: the first real attribute, else intensity
    pareto_epsilon: float = 0.01
    lsi: bool = True
    # Desiderata to select a model for (names as in decide/selection.csv, e.g. "tpr_gap:sex");
    # None: every desideratum of the task. Holm's correction runs over the ones selected for.
    select: list[str] | None = None
    # fairlearn's ThresholdOptimizer on the MAP model's (and each set member's) validation scores,
    # for binary tasks with an attribute: the post-processing baseline
    threshold_optimizer: bool = True
    threshold_constraint: Literal[
        "equalized_odds",
        "true_positive_rate_parity",
        "false_positive_rate_parity",
        "demographic_parity",
    ] = "equalized_odds"
    threshold_models: int = Field(50, ge=0)  # set members post-processed (Rashomon set + TO)


class ValiditySection(Section):
    """`rashomon validate`: K networks retrained like the MAP model, the set's ground truth."""

    models: int = 30  # retrained seeds (seed + 1 … seed + models)
    workers: int = Field(1, ge=1)  # local Ray workers training seeds in parallel
    address: str | None = None  # a Ray cluster ('auto' or host:port)
    cache_dir: str | None = None  # the retrain cache (default $RASHOMON_CACHE/retrain)
    operational: ClassVar[frozenset[str]] = frozenset({"workers", "address", "cache_dir"})

    @field_validator("models")
    @classmethod
    def _enough_for_halves(cls, v: int) -> int:
        from rashomon.validate import MIN_TRUTH_MODELS

        if v < MIN_TRUTH_MODELS:
            raise ValueError(
                f"the split-half ceiling needs at least {MIN_TRUTH_MODELS} retrained networks "
                f"within ε, got {v}; use --retrain {MIN_TRUTH_MODELS} or more (default 30)"
            )
        return v


class RunConfig(Section):
    """A run's whole configuration: name, seed, device and one section per stage."""

    name: str | None = None
    seed: StrictInt = Field(0, ge=0)
    device: str = "cpu"  # cpu, cuda or cuda:<index>; checked against this machine
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    sample: SampleSection = Field(default_factory=SampleSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    decide: DecideSection = Field(default_factory=DecideSection)
    validity: ValiditySection = Field(default_factory=ValiditySection)

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        check_device(v)
        return v

    def default_run_dir(self) -> Path:
        """runs/<name>, the name defaulting to <data>-<architecture>-seed<seed>."""
        data = Path(self.data.dataset).name
        if self.data.labels:  # e.g. ham10000-labels-binary: one folder per label file
            data = f"{data}-{Path(self.data.labels).stem}"
        arch = self.train.arch
        if ":" in arch or arch.endswith((".pt", ".pth")):  # the user's network: its name only
            arch = Path(arch.split(":")[-1]).stem.replace(".", "-")
        return Path("runs") / (self.name or f"{data}-{arch}-seed{self.seed}")

    def section_hash(self, *sections: str, attributes: bool = True) -> str:
        """Hash of the named sections (plus seed and data), the identity of a stage's inputs;
        operational fields such as the memory budget are left out, and so is the attribute CSV
        for a stage that reads no patient attribute (`attributes=False`: train, sample)."""
        data = self.data.identity()
        if not attributes:
            data["attributes_csv"] = None  # as a run without one: the same hash
        payload = {"seed": self.seed, "data": data}
        payload.update({s: getattr(self, s).identity() for s in sections})
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def check_corruptions(cfg: RunConfig) -> None:
    """Refuse corruption names the dataset's MedMNIST-C table lacks, even with robustness off
    (a typo is refused, not saved). Not a validator: reading the table imports medmnistc (tens
    of seconds), so commands call it when the list is new (`rashomon evaluate --corruptions`)."""
    if not cfg.evaluate.corruptions:
        return
    from rashomon.data.corruptions import corruption_names

    try:
        known = corruption_names(cfg.data.dataset)
    except RashomonError:  # medmnistc cannot be imported: the robustness stage says how to fix
        return
    unknown = [c for c in cfg.evaluate.corruptions if c not in known]
    if unknown:
        raise RashomonError(
            f"config field 'evaluate.corruptions': unknown corruption(s) {unknown} for "
            f"{Path(cfg.data.dataset).name}; choose from {', '.join(known)}, or none"
        )


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, naming what it has."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise ValueError(f"unknown device {device!r}; use cpu or cuda (cuda:<index>)")
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count()
        index = int(device.split(":")[1]) if ":" in device else 0
        if count == 0:
            raise ValueError(
                f"device {device!r} was asked for but this machine has no CUDA GPU; "
                "use --device cpu"
            )
        if index >= count:
            raise ValueError(
                f"device {device!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}"
            )
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' is not available here; use --device cpu")


def _format_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    # A message of ours already names the fix (after a ';'); pydantic's own ones do not.
    fix = "" if ";" in msg else "; fix the config file or flag"
    return f"config field {where!r}: {msg}{fix}"


def read_yaml_mapping(path: str | Path, what: str, expected: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; one-line errors name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise RashomonError(f"{what} {path} does not exist; check the path")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RashomonError(
            f"{what} {path} is not valid YAML{where}: {problem}; fix the file"
        ) from exc
    if not isinstance(raw, dict):
        raise RashomonError(f"{what} {path} must hold {expected}")
    return raw


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Read a YAML config (optional) and apply dotted overrides such as {"train.epochs": 5}."""
    raw = read_yaml_mapping(path, "config file", "a mapping of sections") if path else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: i + 1])
                raise RashomonError(
                    f"config field {where!r} is {node!r}, not a section of fields; write it as "
                    f"a mapping (e.g. {where}: {{{leaf}: ...}}) to set {dotted!r}"
                )
        node[leaf] = value
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise RashomonError(_format_validation_error(exc)) from exc


def dump_config(cfg: RunConfig) -> str:
    """The config as YAML text, fields in their declared order."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
