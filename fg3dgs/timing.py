"""Where the time goes: wall time per named stage (the pipeline benchmark's breakdown)."""

from __future__ import annotations

import contextlib
import time


class StageClock:
    """Wall time per named stage, summed over calls; ``sync`` (e.g. torch.cuda.synchronize)
    runs at every boundary so that asynchronous GPU work is charged to its stage."""

    def __init__(self, sync=None):
        self.seconds: dict[str, float] = {}
        self._sync = sync or (lambda: None)
        self._t0: dict[str, float] = {}

    def start(self, name: str) -> None:
        self._sync()
        self._t0[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        self._sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - \
            self._t0.pop(name)

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)


class _NoClock(StageClock):
    def start(self, name):
        pass

    def stop(self, name):
        pass


NO_CLOCK = _NoClock()      # the default: measures nothing
