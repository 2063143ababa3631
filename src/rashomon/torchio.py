"""Saving and loading the project's torch files: atomic writes, one-line errors on reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rashomon.errors import RashomonError, write_error


def save_atomic(payload: Any, path: str | Path) -> None:
    """Write to a temporary name, then rename, so a crash never leaves half a file. A full
    disk or a permission error is a one-line RashomonError naming `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise (write_error(exc, path) or exc) from exc


def load_payload(path: str | Path, what: str, make_it: str) -> Any:
    """Load a torch file written by `save_atomic`; `what` names it in errors ("checkpoint"),
    `make_it` is the command that (re)creates it ("run `rashomon train`")."""
    path = Path(path)
    if not path.exists():
        raise RashomonError(f"{what} {path} does not exist; {make_it} first")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RashomonError(f"{what} {path} is unreadable ({exc}); {make_it} again") from exc
