"""One exception type for problems a user can fix; the CLI prints its message on one line."""


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
