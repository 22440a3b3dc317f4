"""The ``fg3dgs`` command line: a module per group of commands, each declaring its
commands (``COMMANDS``: :class:`~.parser.Command`) and running them (``run_*``); here the
parser, the one error handler and the console script."""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from .. import __version__
from . import data, evaluate, live, render, train, zoo
from .errors import CommandError, for_the_user
from .parser import Command, CommandParser

# The order ``fg3dgs --help`` lists the commands in, which is not the modules': a command
# missing here stops the parser being built (ORDER.index), so none is left out unseen
ORDER = ("demo", "synth", "preprocess", "train", "refine", "eval", "train-sync", "train-audio",
         "retarget", "speak", "render", "live", "zoo", "synth-check")


def commands() -> list[Command]:
    """Every command, in :data:`ORDER`."""
    return sorted((c for m in (data, evaluate, live, render, train, zoo) for c in m.COMMANDS),
                  key=lambda c: ORDER.index(c.name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fg3dgs", description="FG-3DGS: audio-driven 3D Gaussian talking heads. Train an "
        "identity from a portrait video (synth / preprocess / train / eval), render it "
        "speaking any audio (render), or pull one from the model zoo (zoo).",
        epilog="Each command has its own --help. The web app: python app.py in a checkout "
        "of the repository (it is also the Hugging Face Space).")
    parser.add_argument("--version", action="version", version=f"fg3dgs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for command in commands():
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_backend(args)
        with _one_line_warnings(), _terminate_as_interrupt():
            return args.func(args)
    except KeyboardInterrupt:          # (train catches its own: it saves the state first)
        pass
    except Exception as exc:
        if not _interrupt_behind(exc):
            if not for_the_user(exc, args.reports):
                raise
            print(f"fg3dgs {args.command}: error: {exc}", file=sys.stderr)
            return 2
    print(f"\nfg3dgs {args.command}: interrupted; unfinished outputs were not kept",
          file=sys.stderr)
    return 130


def _interrupt_behind(exc: BaseException) -> bool:
    """An interrupt that landed inside a compiled function comes out as the SystemError
    "returned a result with an exception set", chained to the KeyboardInterrupt."""
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return isinstance(exc, SystemError)
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (how ``timeout``, systemd and job schedulers stop a command) acts as Ctrl-C:
    Python's default would end the process at once, leaving half-written outputs behind
    and a training run unsaved. Only where SIGTERM has its default action, from the main
    thread; the caller's handler comes back after."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _check_backend(args: argparse.Namespace) -> None:
    if getattr(args, "backend", None) == "gsplat":
        # torch comes with the gsplat backend: only a command that asks for it pays
        from ..render.gsplat_backend import gsplat_status

        ok, why = gsplat_status()
        if not ok:
            raise CommandError(f"--backend gsplat is unavailable here: {why}; use --backend "
                               "cpu (or auto)")


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings as one line for people, not Python's "file:line: Category" and source line
    (the caller's format is restored after)."""
    python_format = warnings.formatwarning
    warnings.formatwarning = lambda message, *_a, **_k: f"fg3dgs: warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = python_format


def run() -> None:
    """The ``fg3dgs`` console script: :func:`main`, then exit. The objects alive at the end
    are frozen out of the garbage collector first: the interpreter's last collection over
    torch's and numba's objects would add about a second to every command. When only daemon
    threads are left, the exit handlers run and the process ends without the interpreter's
    teardown of every module (about 0.3 s more after a render, all of it in freeing torch's,
    numba's and LLVM's state, which the process's end frees anyway)."""
    code = main()
    gc.freeze()
    if all(t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        atexit._run_exitfuncs()        # what sys.exit would run: temporary folders, logging
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    sys.exit(code)
