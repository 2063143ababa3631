"""Public entry points that pick the right loader."""

from __future__ import annotations

from pathlib import Path

from rashomon.data.files import is_folder_dataset
from rashomon.data.groups import load_attribute_csv
from rashomon.data.medmnist import load_medmnist
from rashomon.data.task import Task
from rashomon.errors import RashomonError


def load_task(
    name: str | Path,
    root: str | Path | None = None,
    size: int = 28,
    *,
    seed: int = 0,
    attributes_csv: str | Path | None = None,
    labels: str | Path | None = None,
    channels: int | None = None,
    allow_overlap: bool = False,
) -> Task:
    """Load a task by MedMNIST name, or a folder of images (`name` a directory with a label CSV).

    `root` is the data folder of MedMNIST files (default: $RASHOMON_DATA, else the medmnist
    default root). `attributes_csv` adds patient attributes (`split,index,<attribute>...`).
    Folder tasks only: `labels` picks the label CSV (a bare name is looked up in the folder;
    default `labels.csv`) and `channels` (1 or 3) overrides the channels read from the images
    (default: 1 when every image is grey, else 3). `task.files` lists every file read;
    `rashomon.data.data_files` lists the same without loading. Images found in two splits are
    counted with a warning; more than 1 % of the test split also in train or val is an error
    unless `allow_overlap`.
    """
    if is_folder_dataset(name):
        from rashomon.data.folder import load_folder

        task = load_folder(
            name,
            labels=labels,
            size=size,
            channels=channels,
            seed=seed,
            allow_overlap=allow_overlap,
        )
    else:
        for option, value in (("labels", labels), ("channels", channels)):
            if value is not None:
                raise RashomonError(
                    f"{option}={value!r} applies to folder tasks, but {str(name)!r} is a "
                    f"MedMNIST dataset (it keeps its own {option}); drop {option} or pass a folder"
                )
        task = load_medmnist(
            str(name), root=root, size=size, seed=seed, allow_overlap=allow_overlap
        )
    if attributes_csv is not None:
        load_attribute_csv(task, attributes_csv)
    return task
