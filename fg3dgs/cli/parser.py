"""The commands' parsers: each adds its options when first used, and the options that
several commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

Options = Callable[[argparse.ArgumentParser], None]

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


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """render's and demo's flags for how a render runs."""
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="also print where the time "
                   "went: start-up, audio features, networks, rasterization, fusion, encoding")
    p.add_argument("--no-verify", action="store_true", help="skip the identity's sha256 "
                   "checks (for developers editing weights in place)")
