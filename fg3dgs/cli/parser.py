"""The commands: each declared once (:class:`Command`), its parser adding its options when
first used, and the options that several commands share."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Options = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

BACKEND_HELP = ("rasterizer: gsplat (CUDA GPU), cpu (ours), or auto: gsplat where a CUDA GPU "
                "works, else cpu (default)")


class CommandParser(argparse.ArgumentParser):
    """A command's parser that adds its option table (``options``, a function of the
    parser) when it first parses or prints help: a table may import its config module for
    the defaults, and only its own command should pay for that (synth's brings numba and
    scipy); ``fg3dgs --help`` needs none of them."""

    def __init__(self, *args, options: Options | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._table = options

    def _add_table(self) -> None:
        if self._table is not None:
            table, self._table = self._table, None
            table(self)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        self._add_table()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_table()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_table()
        return super().format_help()


@dataclass(frozen=True)
class Command:
    """One ``fg3dgs`` command: its name, the function that runs it, its option table (added
    when first used: :class:`CommandParser`) and ``reports``, the built-in errors it shows
    as one line like the package's own (errors.for_the_user).

    The help texts are the run function's docstring, written once beside what they
    describe: its first paragraph is the command's line in ``fg3dgs --help``, the rest the
    description in ``fg3dgs NAME --help`` (none where there is no rest)."""

    name: str
    run: Run
    options: Options
    reports: tuple[type[BaseException], ...] = ()

    def register(self, sub: argparse._SubParsersAction) -> None:
        # (python -OO drops docstrings: the commands are then listed without help)
        summary, _, rest = inspect.cleandoc(self.run.__doc__ or "").partition("\n\n")
        # one space between words: argparse fits the text to the terminal anyway
        p = sub.add_parser(self.name, options=self.options, help=" ".join(summary.split()),
                           description=" ".join(rest.split()) or None)
        p.set_defaults(func=self.run, reports=self.reports)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """render's and demo's flags for how a render runs."""
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="also print where the time "
                   "went: start-up, audio features, networks, rasterization, fusion, encoding")
    p.add_argument("--no-verify", action="store_true", help="skip the identity's sha256 "
                   "checks (for developers editing weights in place)")
