"""The run directory's schema: stage folders, file names and the column names that more than
one module writes or reads. A name that crosses a module boundary is defined here, once.

See docs/run-directory.md for what each file holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from rashomon.errors import RashomonError

# --------------------------------------------------------------------------- files

CONFIG = "config.yaml"
RECORDS = "stages.json"
ENVIRONMENT = "environment.json"
SUMMARY = "summary.json"

CHECKPOINT = "model.pt"  # train/
HISTORY = "history.csv"  # train/
SET = "set.pt"  # sample/
PER_MODEL = "per_model.csv"  # sample/
SURVIVAL = "survival.csv"  # sample/
IN_SET = "in_set.npy"  # sample/


def probs_file(split: str) -> str:
    """sample/probs_<split>.npy: [M, N, C] float32 probabilities of every model."""
    return f"probs_{split}.npy"


def map_probs_file(split: str) -> str:
    """sample/map_probs_<split>.npy: [N, C] float32 probabilities of the MAP model."""
    return f"map_probs_{split}.npy"


# --------------------------------------------------------------------------- in_set@ε columns

IN_SET_PREFIX = "in_set@"
_IN_SET = re.compile(r"^in_set@(.+)$")


def in_set_column(epsilon: float) -> str:
    """The per_model.csv column marking the models within ε: `in_set@0.02`, `in_set@1`."""
    return f"{IN_SET_PREFIX}{float(epsilon):g}"


def parse_in_set_column(name: str) -> float | None:
    """ε of an `in_set@ε` column name; None for any other column."""
    m = _IN_SET.match(str(name))
    if not m:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def find_in_set_column(columns: Iterable[str], epsilon: float, where: str) -> str:
    """The column of `columns` for ε, matched as a number (`in_set@2e-2` is ε = 0.02); an error
    listing the ε values present otherwise."""
    found = {}
    for col in columns:
        eps = parse_in_set_column(col)
        if eps is not None:
            found[eps] = col
    for eps, col in found.items():
        if math.isclose(eps, float(epsilon), rel_tol=1e-9, abs_tol=1e-12):
            return col
    raise RashomonError(
        f"{where} has no Rashomon set at ε={float(epsilon):g} (it has "
        f"{[float(f'{e:g}') for e in sorted(found)]}); choose one of those or add ε to "
        "sample.epsilons and re-run the sample stage"
    )
