"""``python -m fg3dgs``: the command line, where the ``fg3dgs`` script is not installed."""

from .cli import run

run()
