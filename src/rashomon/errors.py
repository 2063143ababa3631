"""One exception type for problems a user can fix; the CLI prints its message on one line."""

from __future__ import annotations

import errno
import os


class RashomonError(Exception):
    """A bad input or state, described in one line that names the problem and the fix."""


def require(condition: bool, message: str) -> None:
    """Raise `RashomonError(message)` unless `condition` holds."""
    if not condition:
        raise RashomonError(message)


ERROR_CHARS = 300  # a one-line error longer than this is cut


def one_line(exc: BaseException, limit: int = ERROR_CHARS) -> str:
    """An exception on one line: the message of a RashomonError, else 'Type: message'; cut to
    `limit` characters."""
    text = str(exc) if isinstance(exc, RashomonError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Writes that fail for lack of space or permission: the user can fix these, so they get a
# one-line RashomonError naming the path, not a bare OSError.
WRITE_ERRNOS = {
    errno.ENOSPC: ("no space left on the device", "free space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space"),
    errno.EACCES: ("permission denied", "make it writable"),
    errno.EPERM: ("permission denied", "make it writable"),
    errno.EROFS: ("the file system is read-only", "use a writable location"),
}


def write_error(exc: OSError, path: str | os.PathLike | None = None) -> RashomonError | None:
    """The one-line error for a write that failed for lack of space or permission (`exc`),
    naming `path` (default the exception's file) and the fix; None for any other OSError."""
    if exc.errno not in WRITE_ERRNOS:
        return None
    what, fix = WRITE_ERRNOS[exc.errno]
    where = path if path is not None else exc.filename
    target = f"writing {os.fspath(where)}" if where is not None else "a write"
    return RashomonError(
        f"{target} failed: {what}; {fix} (or give another run directory) and re-run the "
        "command: finished stages are kept"
    )
