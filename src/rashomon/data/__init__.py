"""Tasks: MedMNIST npz files, user image folders, patient attributes."""

from rashomon.data.folder import load_folder
from rashomon.data.groups import load_attribute_csv
from rashomon.data.medmnist import dataset_names, load_medmnist
from rashomon.data.task import GroupAttribute, Split, Task

__all__ = [
    "GroupAttribute",
    "Split",
    "Task",
    "dataset_names",
    "load_attribute_csv",
    "load_folder",
    "load_medmnist",
]
