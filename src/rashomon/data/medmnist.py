"""MedMNIST tasks from the official npz layout; missing files download through `medmnist`."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import cast

import numpy as np
import torch

from rashomon.data.groups import add_derived_attributes
from rashomon.data.task import Split, Task, TaskKind, absolute, images_to_tensor
from rashomon.data.validate import (
    check_class_balance,
    check_images,
    check_labels,
    check_split_overlap,
    float_unit_range,
)
from rashomon.errors import RashomonError

SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
DATA_ENV = "RASHOMON_DATA"


def dataset_info() -> dict[str, dict]:
    """The `medmnist` package's description of every dataset it knows (name -> task, label
    names, python_class, ...)."""
    from medmnist import INFO

    return INFO


def dataset_names() -> list[str]:
    """Every 2D MedMNIST dataset the installed `medmnist` package knows."""
    return sorted(name for name in dataset_info() if not name.endswith("3d"))


def task_kind(medmnist_task: str) -> TaskKind:
    """The TaskKind of a MedMNIST task name (ordinal regression counts as multiclass)."""
    if medmnist_task.startswith("multi-label"):
        return "multilabel"
    if medmnist_task == "binary-class":
        return "binary"
    return "multiclass"  # multi-class and ordinal-regression


def default_root() -> Path:
    """Where MedMNIST files are read: $RASHOMON_DATA when set, else medmnist's default root."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    from medmnist.info import DEFAULT_ROOT

    return Path(DEFAULT_ROOT)


def npz_filename(name: str, size: int) -> str:
    """The MedMNIST file name of `name` at image size `size` (28 px has no size suffix)."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def _download(name: str, size: int, root: Path) -> None:
    import medmnist

    cls = getattr(medmnist, dataset_info()[name]["python_class"])
    root.mkdir(parents=True, exist_ok=True)
    try:
        cls(split="test", download=True, root=str(root), size=size)
    except Exception as exc:  # network errors come in many types
        raise RashomonError(
            f"could not download {npz_filename(name, size)} ({type(exc).__name__}); offline, put "
            "the "
            f"official file at {root / npz_filename(name, size)} or set {DATA_ENV} to its folder"
        ) from exc


def load_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read and check the six arrays of the official layout."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise RashomonError(
            f"{path} is not a readable npz file ({exc}); delete it and download it again"
        ) from exc
    missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if missing:
        raise RashomonError(
            f"{path} lacks {', '.join(missing)}; a MedMNIST npz holds train/val/test "
            "_images and _labels"
        )
    for s in SPLITS:
        scalars = [k for k in (f"{s}_images", f"{s}_labels") if np.ndim(arrays[k]) == 0]
        if scalars:
            raise RashomonError(
                f"{path}: {scalars[0]} is a single value, not an array of images or labels; "
                "the file is damaged, replace it"
            )
        n_img, n_lab = len(arrays[f"{s}_images"]), len(arrays[f"{s}_labels"])
        if n_img != n_lab:
            raise RashomonError(
                f"{path}: {s} has {n_img} images but {n_lab} labels; the file is damaged, "
                "replace it"
            )
    return arrays


def split_from_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    kind: TaskKind,
    n_out: int,
    what: str = "split",
    size: int | None = None,
    unit_range: bool | None = None,
) -> Split:
    """A Split from raw arrays, validated (`rashomon.data.validate`): images become uint8
    (kept in `raw`) and float32 in [-1, 1] (`x`), labels int64. `what` names the split in
    errors (e.g. "breastmnist.npz train"); `size` is the required height and width."""
    raw = check_images(images, f"{what} images", size=size, unit_range=unit_range)
    y = check_labels(labels, kind, n_out, f"{what} labels")
    if len(y) != len(raw):
        raise RashomonError(f"{what}: {len(raw)} images but {len(y)} labels; give one label each")
    return Split(x=images_to_tensor(raw), y=torch.from_numpy(y), raw=raw)


def npz_path(name: str, root: str | Path | None = None, size: int = 28) -> Path:
    """Where the npz of a 2D MedMNIST dataset is (or would be downloaded to)."""
    name = name.lower()
    names = dataset_names()
    if name not in names:
        raise RashomonError(f"unknown dataset {name!r}; choose one of: {', '.join(names)}")
    if size not in SIZES:
        raise RashomonError(f"size {size} is not a MedMNIST size; use one of {SIZES}")
    folder = Path(root).expanduser() if root is not None else default_root()
    return folder / npz_filename(name, size)


def load_medmnist(
    name: str,
    root: str | Path | None = None,
    size: int = 28,
    seed: int = 0,
    allow_overlap: bool = False,
) -> Task:
    """Load a 2D MedMNIST dataset as a Task with the derived `intensity` and `random` attributes.
    Images in two splits are counted (`check_split_overlap`; `allow_overlap` lets a test split
    with more than 1 % of train or val images load)."""
    path = npz_path(name, root, size)
    name = name.lower()
    if not path.exists():
        _download(name, size, path.parent)
    if not path.exists():
        raise RashomonError(f"{path} is missing; download it or set {DATA_ENV} to its folder")
    arrays = load_npz_arrays(path)
    info = dataset_info()[name]
    kind = task_kind(info["task"])
    labels = info["label"]
    n_out = len(labels)
    class_names = tuple(labels[str(i)] for i in range(n_out))
    unit = float_unit_range([arrays[f"{s}_images"] for s in SPLITS])
    splits = {
        s: split_from_arrays(
            arrays[f"{s}_images"],
            arrays[f"{s}_labels"],
            kind,
            n_out,
            what=f"{path.name} {s}",
            size=size,
            unit_range=unit,
        )
        for s in SPLITS
    }
    check_class_balance({s: splits[s].y.numpy() for s in SPLITS}, kind, n_out, class_names)
    raws = {s: cast(np.ndarray, splits[s].raw) for s in SPLITS}  # split_from_arrays keeps raw
    check_split_overlap(raws, path.name, allow_overlap)
    task = Task(
        name=name,
        kind=kind,
        num_classes=n_out,
        class_names=class_names,
        size=size,
        source=str(path),
        files=(absolute(path),),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
    )
    add_derived_attributes(task, seed=seed)
    return task
