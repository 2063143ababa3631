"""One exception type for problems a user can fix; the CLI prints its message on one line."""


class RashomonError(Exception):
    """A bad input or state, described in one line that names the problem and the fix."""


def require(condition: bool, message: str) -> None:
    """Raise `RashomonError(message)` unless `condition` holds."""
    if not condition:
        raise RashomonError(message)
