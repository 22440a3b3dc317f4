"""``fg3dgs live``: the Live page alone, for one identity (a kiosk, local use)."""

from __future__ import annotations

import argparse
import os

from ..arguments import positive, whole_number
from ..pipeline.live import LiveLimits
from .parser import Command


def add_live_limits(p: argparse.ArgumentParser, kiosk: bool = False) -> None:
    """The Live page's limits, spelt the same by ``fg3dgs live`` and ``app.py``
    (:func:`live_limits` reads them back). ``kiosk``: ``fg3dgs live`` also takes its
    earlier spellings ``--idle`` and ``--max-seconds`` (in the app the latter is the
    longest upload)."""
    p.add_argument("--live-calls", type=whole_number(1), default=LiveLimits.calls,
                   metavar="N", help="live calls at once; each takes about one CPU core "
                                     f"at 256x256 (default {LiveLimits.calls})")
    p.add_argument("--live-idle", *(["--idle"] if kiosk else []), type=positive,
                   default=LiveLimits.idle_seconds, metavar="SECONDS",
                   help="seconds without speech that end a live call (default "
                        f"{LiveLimits.idle_seconds:g})")
    p.add_argument("--live-max", *(["--max-seconds"] if kiosk else []), type=positive,
                   default=LiveLimits.max_seconds, metavar="SECONDS",
                   help=f"a live call's longest, in seconds (default "
                        f"{LiveLimits.max_seconds:g})" + (
                        "; --max-seconds is its earlier spelling here (in app.py "
                        "--max-seconds is the longest upload)" if kiosk else ""))


def live_limits(args: argparse.Namespace, **more) -> LiveLimits:
    """The :class:`LiveLimits` of :func:`add_live_limits`' options (``more``: other
    fields)."""
    return LiveLimits(calls=args.live_calls, idle_seconds=args.live_idle,
                      max_seconds=args.live_max, **more)


def _live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--identity", default="astronaut-artic",
                   help="run folder or zoo id (default: astronaut-artic, as the app's)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="0.0.0.0 to serve the network")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                   help="port to serve on (default 7860 or $GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="a public gradio.live link")
    add_live_limits(p, kiosk=True)
    p.add_argument("--lookahead", type=whole_number(0), default=LiveLimits.lookahead_ms,
                   metavar="MS", help="make a frame once the speech reaches this far past "
                   "its end: less is sooner, with a mouth further from the exact render's "
                   f"(default {LiveLimits.lookahead_ms}; python -m fg3dgs.bench lookahead)")
    p.add_argument("--variant", choices=("base", "refined"), default="base",
                   help="mouth branch (default: base)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if it works)")
    p.add_argument("--threads", type=whole_number(1), default=1,
                   help="torch threads (default 1: each call renders on one core, and the "
                        "other cores are left to the other calls and the browser; 2 were "
                        "slower beside a browser on 2 cores, docs/benchmarks.md)")


def run_live(args: argparse.Namespace) -> int:
    """the Live page for one identity: speak into the microphone and it speaks along.

    Open the printed address in a browser, press Start and allow the microphone. Stop with
    Ctrl-C. The web app (python app.py) has the same page as its Live tab."""
    from ..live_page import serve  # (gradio: only this command needs it)

    serve(args.identity, live_limits(args, lookahead_ms=args.lookahead),
          args.host, args.port, args.share, args.device, args.variant, args.threads)
    return 0


COMMANDS = (Command("live", run_live, _live_options),)
