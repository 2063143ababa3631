"""The resolved configuration of a run: pydantic models, loaded from YAML and overridden by flags.

The resolved config is saved in the run directory; each stage's input hash is computed from the
sections it reads, so changing a late stage's options never invalidates earlier stages.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rashomon.errors import RashomonError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Fields that bound how a stage runs (working memory) but never what it computes: left out
    # of the stage hash, so changing them does not redo a finished stage.
    operational: ClassVar[frozenset[str]] = frozenset()

    def identity(self) -> dict[str, Any]:
        """The fields that determine a stage's outputs."""
        return self.model_dump(exclude=set(self.operational))


class DataConfig(Section):
    dataset: str = "pneumoniamnist"
    root: str | None = None  # default: $RASHOMON_DATA, else the medmnist default root
    size: int = 28
    attributes_csv: str | None = None


class TrainSection(Section):
    """MAP training (`rashomon.models.train.train`): ``steps`` optimizer steps of ``batch_size``
    images with a cosine learning-rate schedule, unless ``epochs`` is given (then at most that
    many epochs); checkpoint selection on the smoothed validation loss (``select_window``
    epochs; ``patience`` epochs past its minimum stop training). None = derived from the plan."""

    arch: str = "cnn-small"
    width: float | None = None  # width multiplier, for arch "cnn"
    activation: str | None = None
    dropout: float | None = None
    epochs: int | None = None  # None: whole epochs holding `steps` optimizer steps
    steps: int = 1000
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = 1e-4
    batch_size: int = 64
    patience: int | None = None
    select_window: int | None = None
    class_weights: bool = False
    augment: bool = False

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
        opts = {"width": self.width, "activation": self.activation, "dropout": self.dropout}
        return {k: v for k, v in opts.items() if v is not None}


class SampleSection(Section):
    source: Literal["laplace", "riemannian", "retrain", "dropout"] = "laplace"
    models: int = 1000
    subset: str = "last_layer"  # last_layer | all | subnetwork
    hessian: str = "kron"  # diag | kron | full | lowrank
    prior: str = "marglik"  # marglik | grid | a number
    kind: Literal["nn", "glm"] = "nn"
    temperature: float = 1.0
    linearized: bool = False  # riemannian only
    retrain_models: int = 10  # retrain source: K seeds
    epsilons: list[float] = Field(default_factory=lambda: [0.005, 0.01, 0.02, 0.05])
    epsilon: float = 0.02  # the ε the audit uses
    on: Literal["loss", "accuracy"] = "loss"
    max_memory: str | None = None  # e.g. "4GB"; default a safe share of RAM/VRAM
    operational: ClassVar[frozenset[str]] = frozenset({"max_memory"})

    @field_validator("models", "retrain_models")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("the number of models must be positive")
        return v


class EvaluateSection(Section):
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
    corruptions: list[str] | None = None  # default: the dataset's MedMNIST-C list; [] = none
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    attacks: list[str] = Field(default_factory=lambda: ["fgsm", "pgd"])
    attack_epsilons: list[float] = Field(default_factory=lambda: [0.0, 1 / 255, 2 / 255, 4 / 255])
    threshold: float = 0.5
    target_sensitivity: float = 0.9
    bootstrap: int = 1000
    robustness_images: int | None = None  # seeded subset of test images for corruptions
    robustness_models: int = 100  # cap for sets whose body varies (each model is a full forward)
    whitebox_models: int = 20  # models attacked with their own gradients (the rest: transfer)
    attack_images: int | None = 256  # seeded subset of test images for attacks


class DecideSection(Section):
    ensemble_sizes: list[int] = Field(default_factory=lambda: [1, 3, 5, 10, 20])
    agreement: list[float] = Field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    alpha: float = 0.05
    constrained_baseline: bool = True
    constrained_method: Literal["reweight", "penalty"] = "reweight"
    constrained_attribute: str | None = None  # default: the first real attribute, else intensity
    pareto_epsilon: float = 0.01
    lsi: bool = True


class RunConfig(Section):
    name: str | None = None
    seed: int = 0
    device: str = "cpu"
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    sample: SampleSection = Field(default_factory=SampleSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    decide: DecideSection = Field(default_factory=DecideSection)

    def section_hash(self, *sections: str) -> str:
        """Hash of the named sections (plus seed and data), the identity of a stage's inputs;
        operational fields such as the memory budget are left out."""
        payload = {"seed": self.seed, "data": self.data.identity()}
        payload.update({s: getattr(self, s).identity() for s in sections})
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _format_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"config field {where!r}: {err['msg']}"


def read_yaml_mapping(path: str | Path, what: str, expected: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; one-line errors name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise RashomonError(f"{what} {path} does not exist; check the path")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RashomonError(f"{what} {path} is not valid YAML: {exc}") from exc
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
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise RashomonError(
            _format_validation_error(exc) + "; fix the config file or flag"
        ) from exc


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
