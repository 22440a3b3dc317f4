"""``python -m fg3dgs``: the command line, where the ``fg3dgs`` script is not installed."""

import sys

from .cli import main

sys.exit(main())
