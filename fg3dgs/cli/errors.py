"""How a command fails for the user: one line, ``fg3dgs CMD: error: MESSAGE``, and exit 2
(``cli.main`` prints it)."""

from __future__ import annotations


class CommandError(ValueError):
    """Arguments that argparse cannot check on its own: a combination of options, or a
    value measured against the data (the message says what to change)."""


def for_the_user(exc: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether ``exc`` is reported as one line rather than a traceback: the package's own
    errors (the ValueErrors it defines, each raised with a message saying what is wrong) and
    the built-in ones a command adds (its ``reports``: ValueError where its library raises
    plain ones). The module name decides, so nothing is imported here: an error raised
    before torch loaded leaves it unloaded."""
    own = isinstance(exc, ValueError) and any(
        cls.__module__.startswith("fg3dgs.") for cls in type(exc).__mro__)
    return own or isinstance(exc, extra)
