"""Tasks: MedMNIST npz files, user image folders, patient attributes."""

from rashomon.data.files import data_files
from rashomon.data.folder import describe_folder, find_folder_tasks, load_folder
from rashomon.data.groups import load_attribute_csv
from rashomon.data.medmnist import dataset_names, load_medmnist
from rashomon.data.task import GroupAttribute, Split, Task
from rashomon.data.validate import DataWarning

__all__ = [
    "DataWarning",
    "GroupAttribute",
    "Split",
    "Task",
    "data_files",
    "dataset_names",
    "describe_folder",
    "find_folder_tasks",
    "load_attribute_csv",
    "load_folder",
    "load_medmnist",
]
