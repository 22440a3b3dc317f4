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


_IMPORTED = time.time()


def process_age() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere since this module
    was imported, which misses the interpreter's own start-up)."""
    import os

    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # field 22: start time
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time() - _IMPORTED
