"""Retrained model sets: K networks trained independently, differing by seed (initialisation and
data order) and optionally by other development choices. The expensive ground truth.

Each model's checkpoint is cached under `<cache_dir>/<training key>/seed_<s>[_<choice>].pt`
(default cache_dir ~/.cache/rashomon/retrain, or $RASHOMON_CACHE/retrain), so an interrupted run
resumes and a later run of the same training reuses the models. The key (`training_key`) is the
content of what training reads (`Task.fingerprint`: train/val images and labels), the
architecture as content (`arch_identity`: a user's builder by its source) and every option of
`rashomon.models.train.train`, defaults filled in: a model is reused only when retraining it
would give the same network.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rashomon.data.task import Task
from rashomon.errors import RashomonError
from rashomon.models.registry import Classifier
from rashomon.sets.base import ModelSet, task_description


def default_cache_dir() -> Path:
    """The retrain cache: $RASHOMON_CACHE/retrain, else ~/.cache/rashomon/retrain."""
    root = os.environ.get("RASHOMON_CACHE")
    return Path(root) / "retrain" if root else Path.home() / ".cache" / "rashomon" / "retrain"


# Bumped when training's arithmetic changes, so that networks trained before are not reused.
TRAINING_VERSION = 2
# Arguments of `train` that change how it runs, never the network it returns.
NOT_TRAINING_OPTIONS = frozenset(
    {"task", "device", "progress", "history", "snapshots", "saved_states"}
)


def training_options(epochs: int | None, train_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every option of `rashomon.models.train.train` (arch and seed aside), defaults filled in,
    so that an option left at its default and the same option given explicitly are one key."""
    from rashomon.models.train import train

    params = inspect.signature(train).parameters
    unknown = set(train_kwargs) - set(params)
    if unknown:
        raise RashomonError(
            f"unknown training option(s) {sorted(unknown)}; train() takes "
            f"{sorted(set(params) - NOT_TRAINING_OPTIONS - {'arch', 'seed'})}"
        )
    out = {
        name: p.default
        for name, p in params.items()
        if name not in NOT_TRAINING_OPTIONS | {"arch", "seed", "epochs"}
    }
    out.update({k: v for k, v in train_kwargs.items() if k not in NOT_TRAINING_OPTIONS})
    out["epochs"] = epochs
    out["arch_options"] = dict(out.get("arch_options") or {})
    return out


def training_key(task: Task, arch: str, epochs: int | None, train_kwargs: dict[str, Any]) -> str:
    """Identity of one training recipe on one task's data (the retrain cache's folder name)."""
    from rashomon.models.external import arch_identity
    from rashomon.models.train import resolve_class_weights

    options = training_options(epochs, train_kwargs)
    # the weights themselves, so that "auto" and an explicit `true` that weigh alike are one key
    weight = resolve_class_weights(task, options["class_weights"])
    options["class_weights"] = None if weight is None else [float(v) for v in weight]
    balanced = options.get("group_balanced")
    payload = {
        "version": TRAINING_VERSION,
        "data": task.fingerprint(groups=[balanced] if balanced else []),
        "arch": arch_identity(arch),
        "train": options,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _variant(choices: dict[str, Sequence[Any]], k: int) -> dict[str, Any]:
    """Model k's development choices: each option cycles through its listed values."""
    return {key: list(values)[k % len(values)] for key, values in choices.items()}


def trained_networks(
    task: Task,
    seeds: Sequence[int],
    arch: str = "cnn-small",
    epochs: int | None = 20,
    *,
    choices: Mapping[str, Sequence[Any]] | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = False,
    **train_kwargs: Any,
) -> tuple[list[Classifier], dict[str, Any]]:
    """One network per seed, trained like the MAP model (`rashomon.models.train.train`) or
    loaded from the checkpoint cache (`<cache>/<config hash>/seed_<s>[_<choice>].pt`), so no
    configuration is ever trained twice. Network k takes `choices` value k mod len."""
    from rashomon.models.train import load_checkpoint, save_checkpoint, train

    choices = dict(choices or {})
    for key, values in choices.items():
        if not list(values):
            raise RashomonError(f"choices[{key!r}] lists no value; give at least one")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / training_key(task, arch, epochs, train_kwargs)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RashomonError(f"cannot create cache folder {folder} ({exc.strerror})") from exc
    nets, reused, seconds, cost = [], 0, 0.0, 0.0
    from tqdm.auto import tqdm

    # One bar over the networks (each training run shows its own epoch bar beneath it).
    for i, s in enumerate(tqdm(list(seeds), desc="retrain", disable=not progress)):
        variant = _variant(choices, i)
        tag = "".join(f"_{a}-{b}" for a, b in sorted(variant.items()))
        path = folder / f"seed_{s}{tag}.pt"
        if path.exists():
            model, saved = load_checkpoint(path, device="cpu")
            reused += 1
            cost += float(saved.get("train_seconds") or "nan")
        else:
            start = time.perf_counter()
            model = train(
                task,
                arch,
                epochs,
                s,
                device=device,
                progress=progress,
                **{**train_kwargs, **variant},
            )
            took = time.perf_counter() - start
            seconds += took
            cost += took
            save_checkpoint(model, path, task, variant=variant, train_seconds=round(took, 2))
        nets.append(model.cpu().eval())
    meta: dict[str, Any] = {
        "seeds": [int(s) for s in seeds],
        "epochs": epochs,
        "choices": choices,
        "cache": str(folder),
        "reused": reused,
        "train_seconds": round(seconds, 2),
        # what training every network took when it was trained (NaN when a cached one did not
        # record it): the set's cost, whether it was trained now or read from the cache
        "trained_seconds": round(cost, 2),
    }
    return nets, meta


def retrain(
    task: Task,
    models: int = 10,
    arch: str = "cnn-small",
    epochs: int | None = 20,
    *,
    seed: int = 0,
    base: Classifier | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    progress: bool = False,
    **train_kwargs: Any,
) -> ModelSet:
    """`models` networks trained with seeds seed, seed+1, … (`trained_networks`), as one set.

    `choices` varies other options per model, e.g. {"augment": [False, True]} (model k takes
    value k mod len). `base` is θ* for distances (default: the first model). `train_kwargs` go to
    `train` (lr, weight_decay, arch_options, ...). Checkpoints are cached and reused.
    """
    if not isinstance(models, int) or models <= 0:
        raise RashomonError(
            f"the number of retrained models must be a positive integer, got {models!r}"
        )
    nets, meta = trained_networks(
        task,
        range(seed, seed + models),
        arch,
        epochs,
        choices=choices,
        cache_dir=cache_dir,
        device=device,
        progress=progress,
        **train_kwargs,
    )
    return ModelSet.from_models(
        nets,
        base=base.cpu() if base is not None else None,
        source="retrain",
        task=task_description(task),
        meta=meta,
    )
