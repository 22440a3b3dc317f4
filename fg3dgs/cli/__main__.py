"""``python -m fg3dgs.cli``: the command line, as ``python -m fg3dgs``."""

from . import run

run()
